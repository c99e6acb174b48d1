namespace CovariateShift.Statistics;

/// <summary>
/// Moments of a set of finite values about a pivot: <see cref="Count"/>, <see cref="Sum"/> = sum of (x - pivot) and
/// <see cref="Squares"/> = sum of (x - pivot)^2. Keeping them about a value of the set (its first finite element, or the
/// mean) spares the variance the cancellation of E[x^2] - E[x]^2 when the mean is large next to the spread. The one
/// form both engines use (the CPU kernel per channel, the device pack per chunk and unit), with the one merge of
/// <see cref="Merge"/>.
/// </summary>
/// <param name="Count">Number of values.</param>
/// <param name="Pivot">The value the sums are taken about.</param>
/// <param name="Sum">Sum of (x - pivot).</param>
/// <param name="Squares">Sum of (x - pivot)^2.</param>
internal readonly record struct Moments(long Count, double Pivot, double Sum, double Squares)
{
    /// <summary>No values.</summary>
    public static Moments Empty => default;

    /// <summary>Moments given as a mean and a sum of squared deviations from it (about the mean: <see cref="Sum"/> = 0).</summary>
    public static Moments FromMean(long count, double mean, double m2) => new(count, mean, 0.0, m2);

    /// <summary>The mean; NaN without values.</summary>
    public double Mean => Count > 0 ? Pivot + Sum / Count : double.NaN;

    /// <summary>Sum of squared deviations from the mean.</summary>
    public double M2 => Count > 0 ? Math.Max(0.0, Squares - Sum * (Sum / Count)) : 0.0;

    /// <summary>The population variance; NaN without values.</summary>
    public double Variance
    {
        get
        {
            if (Count == 0) return double.NaN;
            double m = Sum / Count;
            return Math.Max(0.0, Squares / Count - m * m);
        }
    }

    /// <summary>
    /// Chan et al.'s merge of two sets' moments: n = n_a + n_b, mean = mean_a + delta n_b / n,
    /// M2 = M2_a + M2_b + delta^2 n_a n_b / n with delta = mean_b - mean_a (the result is about its mean). Moments about
    /// the same pivot simply add (the same merge written about their common pivot).
    /// </summary>
    public static Moments Merge(Moments a, Moments b)
    {
        if (b.Count == 0) return a;
        if (a.Count == 0) return b;
        long n = a.Count + b.Count;
        if (a.Pivot.Equals(b.Pivot)) return new Moments(n, a.Pivot, a.Sum + b.Sum, a.Squares + b.Squares);
        double meanA = a.Mean, delta = b.Mean - meanA;
        double mean = meanA + delta * ((double)b.Count / n);
        double m2 = a.M2 + b.M2 + delta * delta * ((double)a.Count * b.Count / n);
        return FromMean(n, mean, m2);
    }
}
