namespace CovariateShift.Tests.Support;

/// <summary>Independent reference computations in plain C# doubles (no code shared with the library).</summary>
internal static class Reference
{
    public static double[] Finite(IEnumerable<double> v) => v.Where(double.IsFinite).ToArray();

    public static double Mean(double[] v) => v.Sum() / v.Length;

    /// <summary>Population standard deviation, two-pass.</summary>
    public static double Std(double[] v)
    {
        var m = Mean(v);
        return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / v.Length);
    }

    /// <summary>numpy's default (linear) percentile of the values.</summary>
    public static double Percentile(double[] v, double q)
    {
        var s = v.OrderBy(x => x).ToArray();
        double h = (s.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, s.Length - 1);
        return s[lo] + (h - lo) * (s[hi] - s[lo]);
    }

    /// <summary>Counts in [under, bins..., over] for equal bins over [low, high).</summary>
    public static long[] Histogram(double[] v, double low, double high, int bins)
    {
        var c = new long[bins + 2];
        double width = (high - low) / bins;
        foreach (var x in v)
        {
            if (x < low) c[0]++;
            else if (x >= high) c[bins + 1]++;
            else c[1 + Math.Min(bins - 1, (int)Math.Floor((x - low) / width))]++;
        }
        return c;
    }

    /// <summary>Brock et al.: mean over channels of (channel mean)^2 and of channel variance for [N, C, H, W] data.</summary>
    public static (double SquaredMean, double Variance) ChannelStatistics(double[] v, int n, int c, int hw)
    {
        double sq = 0, var = 0;
        for (int ch = 0; ch < c; ch++)
        {
            var values = new List<double>();
            for (int i = 0; i < n; i++)
            {
                for (int k = 0; k < hw; k++)
                    values.Add(v[(i * c + ch) * hw + k]);
            }

            var m = values.Average();
            sq += m * m;
            var += values.Sum(x => (x - m) * (x - m)) / values.Count;
        }
        return (sq / c, var / c);
    }
}
