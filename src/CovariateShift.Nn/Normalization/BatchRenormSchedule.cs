using System.Globalization;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Warm-up of the Batch Renormalization clipping limits. With t the number of training forward passes the layer
/// has already done (its <c>num_batches_tracked</c> buffer) and p = min(1, t / <see cref="WarmupSteps"/>)
/// (p = 1 when <see cref="WarmupSteps"/> is 0):
/// r_max(t) = 1 + (<see cref="RMax"/> − 1)·p and d_max(t) = <see cref="DMax"/>·p.
/// The layer therefore starts as plain batch normalization (r_max = 1, d_max = 0) and relaxes linearly.
/// The defaults (3, 5, linear over 5000 steps) are an implementation default: Ioffe (2017) reaches r_max = 3 and
/// d_max = 5 with a different, hand-tuned ramp (from step 5k to 40k and 25k respectively).
/// </summary>
/// <param name="RMax">Final r_max ≥ 1.</param>
/// <param name="DMax">Final d_max ≥ 0.</param>
/// <param name="WarmupSteps">Training steps over which the limits grow linearly; 0 applies the final limits at once.</param>
public sealed record BatchRenormSchedule(double RMax = 3.0, double DMax = 5.0, long WarmupSteps = 5000)
{
    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and its value.</summary>
    internal void Validate()
    {
        if (!(RMax >= 1.0) || double.IsInfinity(RMax))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"batchRenorm.rMax must be a finite number >= 1, got {RMax}."));
        }

        if (!(DMax >= 0.0) || double.IsInfinity(DMax))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"batchRenorm.dMax must be a finite number >= 0, got {DMax}."));
        }

        if (WarmupSteps < 0)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"batchRenorm.warmupSteps must be >= 0, got {WarmupSteps}."));
        }
    }
}
