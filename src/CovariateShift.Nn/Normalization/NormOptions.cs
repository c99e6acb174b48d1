using System.Globalization;

namespace CovariateShift.Nn.Normalization;

/// <summary>Hyper-parameters of the normalization layers built by <see cref="Norms.Create"/>.</summary>
public sealed record NormOptions
{
    /// <summary>
    /// Group count G for <c>group</c> and <c>weight-std</c>; must divide the channel/feature count of every
    /// normalized layer. Null selects <see cref="Norms.DefaultGroups"/> per layer (the largest divisor of C that is ≤ 32).
    /// </summary>
    public int? Groups { get; init; }

    /// <summary>ε added to the variance (or mean square) inside the square root. Default 1e-5, as in PyTorch.</summary>
    public double Eps { get; init; } = 1e-5;

    /// <summary>
    /// Running-statistics momentum α of batch, batch-renorm and noisy-batch: running ← (1 − α)·running + α·batch.
    /// Default 0.1, as in PyTorch.
    /// </summary>
    public double Momentum { get; init; } = 0.1;

    /// <summary>Clipping-limit schedule of <c>batch-renorm</c>.</summary>
    public BatchRenormSchedule BatchRenorm { get; init; } = new();

    /// <summary>Noise distribution of <c>noisy-batch</c>.</summary>
    public NoisyBatchNormOptions NoisyBatch { get; init; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and its value.</summary>
    internal void Validate()
    {
        if (Groups is < 1)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"groups must be >= 1, got {Groups}."));
        }

        if (!(Eps > 0.0) || double.IsInfinity(Eps))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"eps must be a finite number > 0, got {Eps}."));
        }

        if (!(Momentum > 0.0 && Momentum <= 1.0))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"momentum must be in (0, 1], got {Momentum}."));
        }

        BatchRenorm.Validate();
        NoisyBatch.Validate();
    }
}
