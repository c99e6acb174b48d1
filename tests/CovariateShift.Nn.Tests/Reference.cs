namespace CovariateShift.Nn.Tests;

/// <summary>
/// Plain C# reference computations on row-major [N, C, S] data (S = product of the spatial dims, 1 for [N, F]),
/// written from the papers' formulas and independent of TorchSharp.
/// </summary>
internal static class Reference
{
    public static int Index(int n, int c, int s, int channels, int spatial) => (n * channels + c) * spatial + s;

    /// <summary>Mean and biased variance of the selected elements.</summary>
    public static (double Mean, double Var) Moments(double[] x, IReadOnlyList<int> indices)
    {
        var mean = indices.Sum(i => x[i]) / indices.Count;
        var variance = indices.Sum(i => (x[i] - mean) * (x[i] - mean)) / indices.Count;
        return (mean, variance);
    }

    /// <summary>(x − mean)/sqrt(var + eps) separately within every group of indices (biased variance).</summary>
    public static double[] Standardize(double[] x, IEnumerable<IReadOnlyList<int>> groups, double eps)
    {
        var y = new double[x.Length];
        foreach (var group in groups)
        {
            var (mean, variance) = Moments(x, group);
            foreach (var i in group)
            {
                y[i] = (x[i] - mean) / Math.Sqrt(variance + eps);
            }
        }

        return y;
    }

    /// <summary>Batch norm groups: one per channel, over all samples and positions.</summary>
    public static IEnumerable<IReadOnlyList<int>> PerChannel(int n, int c, int s) =>
        Enumerable.Range(0, c).Select(ch => (IReadOnlyList<int>)(
            from b in Enumerable.Range(0, n) from p in Enumerable.Range(0, s) select Index(b, ch, p, c, s)).ToList());

    /// <summary>Layer norm groups: one per sample, over all channels and positions.</summary>
    public static IEnumerable<IReadOnlyList<int>> PerSample(int n, int c, int s) =>
        Enumerable.Range(0, n).Select(b => (IReadOnlyList<int>)(
            from ch in Enumerable.Range(0, c) from p in Enumerable.Range(0, s) select Index(b, ch, p, c, s)).ToList());

    /// <summary>Group norm groups: one per (sample, group of C/G consecutive channels), over those channels and all positions.</summary>
    public static IEnumerable<IReadOnlyList<int>> PerSampleGroup(int n, int c, int s, int groups) =>
        from b in Enumerable.Range(0, n)
        from g in Enumerable.Range(0, groups)
        select (IReadOnlyList<int>)(
            from ch in Enumerable.Range(g * (c / groups), c / groups) from p in Enumerable.Range(0, s) select Index(b, ch, p, c, s)).ToList();

    /// <summary>Instance norm groups: one per (sample, channel), over the positions.</summary>
    public static IEnumerable<IReadOnlyList<int>> PerSampleChannel(int n, int c, int s) =>
        from b in Enumerable.Range(0, n)
        from ch in Enumerable.Range(0, c)
        select (IReadOnlyList<int>)Enumerable.Range(0, s).Select(p => Index(b, ch, p, c, s)).ToList();

    /// <summary>RMS norm with g = 1: x / sqrt(mean over channels of x² + eps), per sample and position.</summary>
    public static double[] RmsPerPosition(double[] x, int n, int c, int s, double eps)
    {
        var y = new double[x.Length];
        for (var b = 0; b < n; b++)
        {
            for (var p = 0; p < s; p++)
            {
                var meanSquare = Enumerable.Range(0, c).Sum(ch => x[Index(b, ch, p, c, s)] * x[Index(b, ch, p, c, s)]) / c;
                for (var ch = 0; ch < c; ch++)
                {
                    y[Index(b, ch, p, c, s)] = x[Index(b, ch, p, c, s)] / Math.Sqrt(meanSquare + eps);
                }
            }
        }

        return y;
    }

    /// <summary>Per-channel batch mean and biased variance.</summary>
    public static (double[] Mean, double[] Var) ChannelMoments(double[] x, int n, int c, int s)
    {
        var groups = PerChannel(n, c, s).ToList();
        var moments = groups.Select(g => Moments(x, g)).ToArray();
        return (moments.Select(m => m.Mean).ToArray(), moments.Select(m => m.Var).ToArray());
    }

    /// <summary>y = γ[c]·x̂ + β[c].</summary>
    public static double[] Affine(double[] xHat, int c, int s, double[] gamma, double[] beta) =>
        xHat.Select((v, i) => gamma[i / s % c] * v + beta[i / s % c]).ToArray();

    /// <summary>Weight standardization per output row: (w − mean)/(population std + 1e-5).</summary>
    public static double[] StandardizeRows(double[] w, int rows)
    {
        var cols = w.Length / rows;
        var result = new double[w.Length];
        for (var r = 0; r < rows; r++)
        {
            var row = w.Skip(r * cols).Take(cols).ToArray();
            var mean = row.Average();
            var std = Math.Sqrt(row.Sum(v => (v - mean) * (v - mean)) / cols);
            for (var j = 0; j < cols; j++)
            {
                result[r * cols + j] = (row[j] - mean) / (std + 1e-5);
            }
        }

        return result;
    }
}
