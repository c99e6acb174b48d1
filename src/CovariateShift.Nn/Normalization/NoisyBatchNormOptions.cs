using System.Globalization;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Noise distribution of <see cref="NoisyBatchNorm"/> (Santurkar et al. 2018, Sec. 2.1). At every training step each
/// layer draws μ ~ U(−<see cref="MeanBound"/>, <see cref="MeanBound"/>) and σ ~ U(<see cref="ScaleLow"/>, <see cref="ScaleHigh"/>);
/// then every element of the batch-normalized activation a gets its own m ~ U(μ − <see cref="MeanJitter"/>, μ + <see cref="MeanJitter"/>)
/// and s ~ N(σ, <see cref="ScaleStd"/>²), and a ← s·a + m. The defaults are the paper's values.
/// </summary>
/// <param name="MeanBound">Half-width of the per-step mean range (paper: 0.5).</param>
/// <param name="ScaleLow">Lower end of the per-step scale range (paper: 1).</param>
/// <param name="ScaleHigh">Upper end of the per-step scale range (paper: 1.25).</param>
/// <param name="MeanJitter">Half-width of the per-element additive noise around μ (paper: 0.1).</param>
/// <param name="ScaleStd">Standard deviation of the per-element multiplicative noise around σ (paper: 0.1).</param>
public sealed record NoisyBatchNormOptions(
    double MeanBound = 0.5,
    double ScaleLow = 1.0,
    double ScaleHigh = 1.25,
    double MeanJitter = 0.1,
    double ScaleStd = 0.1)
{
    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and its value.</summary>
    internal void Validate()
    {
        RequireFiniteNonNegative(MeanBound, "meanBound");
        RequireFiniteNonNegative(MeanJitter, "meanJitter");
        RequireFiniteNonNegative(ScaleStd, "scaleStd");
        if (!double.IsFinite(ScaleLow) || !double.IsFinite(ScaleHigh) || ScaleLow > ScaleHigh)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"noisyBatch.scaleLow and noisyBatch.scaleHigh must be finite with scaleLow <= scaleHigh, got {ScaleLow} and {ScaleHigh}."));
        }
    }

    private static void RequireFiniteNonNegative(double value, string field)
    {
        if (!(value >= 0.0) || double.IsInfinity(value))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"noisyBatch.{field} must be a finite number >= 0, got {value}."));
        }
    }
}
