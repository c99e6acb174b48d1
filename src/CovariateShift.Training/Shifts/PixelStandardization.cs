namespace CovariateShift.Training.Shifts;

/// <summary>
/// How a data set's images relate to pixel space: standardized value x = (p − <see cref="Mean"/>) / <see cref="Std"/>,
/// where p is the pixel intensity scaled to [0, 1]. Domain shifts are defined on p and converted back to x.
/// </summary>
/// <param name="Mean">Mean pixel intensity (in [0, 1]) subtracted when the data set was standardized.</param>
/// <param name="Std">Standard deviation the centred pixels were divided by; finite and &gt; 0.</param>
public sealed record PixelStandardization(double Mean, double Std)
{
    /// <summary>The identity: images are already pixels in [0, 1].</summary>
    public static PixelStandardization None { get; } = new(0, 1);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when <see cref="Std"/> is not finite and positive or <see cref="Mean"/> is not finite.</summary>
    public void Validate()
    {
        if (!double.IsFinite(Mean))
            throw new ArgumentOutOfRangeException(nameof(Mean), Mean, $"The pixel mean must be finite; got {Mean}.");
        if (!(Std > 0) || !double.IsFinite(Std))
            throw new ArgumentOutOfRangeException(nameof(Std), Std, $"The pixel standard deviation must be finite and > 0; got {Std}.");
    }
}
