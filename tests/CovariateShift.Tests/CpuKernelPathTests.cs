using CovariateShift.Capture;
using CovariateShift.Statistics;
using CovariateShift.Tests.Support;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>
/// <see cref="CpuKernel"/>'s one reduction path across its boundaries: blocks shorter and longer than a vector (8 floats
/// here) and than the gathering limit (32), blocks longer than a float chunk (2,048), gathered runs over several tiles,
/// buffers with a partial last vector and buffers shorter than one vector, flat and 4-D; each with normal data, NaN, ±Inf, values whose squares
/// overflow float (1e20) and a large offset with a small spread. Every field of the summary is checked against a plain
/// double-precision computation over the same float values.
/// </summary>
public sealed class CpuKernelPathTests
{
    private const float NearZero = 1e-3f;

    // Moments are summed in float per chunk and in double across chunks: relative 1e-5 of the scale covers the float
    // rounding of a chunk. Extremes are float values and counters integers: exact.
    private const double Relative = 1e-5;

    private static readonly int[][] Shapes =
    [
        [3, 5, 1, 1],        // blocks of 1: every block is a partial vector
        [3, 5, 3, 3],        // 9: one vector and one element
        [3, 5, 1, 31],       // 31: three vectors and seven elements, just under the old small-block limit
        [3, 5, 4, 8],        // 32: whole vectors only
        [3, 5, 1, 2049],     // 2,049: a whole chunk of vectors and one element
        [2, 3, 1, 4101],     // two chunks and a partial vector per block
        [1, 5, 1, 1],        // five elements: shorter than one vector (the scalar tail)
        [20, 3, 1, 1],       // blocks shorter than 32 are gathered per channel: runs of two vectors and four elements
        [40, 7, 5, 5],       // 25: gathered runs of 1,000
        [700, 2, 1, 3],      // gathered in two tiles, runs of a chunk of vectors and a partial vector
        [5, 4000, 1, 1],     // many channels: tiles of four samples
        [1],
        [5],
        [9],
        [31],
        [32],
        [2049],
        [3 * 2048 + 5],      // three chunks and a tail
        [7, 9],              // [rows, features]
        [3, 683],            // 2,049 elements in rows of 683 features
    ];

    private static readonly string[] Kinds = ["normal", "nan", "inf", "1e20", "offset"];

    public static TheoryData<string, string, bool> Cases
    {
        get
        {
            var data = new TheoryData<string, string, bool>();
            foreach (var shape in Shapes)
            {
                foreach (var kind in Kinds)
                {
                    data.Add(string.Join('x', shape), kind, false);
                    data.Add(string.Join('x', shape), kind, true);
                }
            }
            return data;
        }
    }

    /// <summary>One case's buffer (its values from a seed of the shape and kind) and the kernel's layout arguments.</summary>
    private static (int[] Shape, float[] Data, int Units, int Block, SaturationBounds? Saturation) Case(string shapeText, string kind, bool bounded)
    {
        var shape = shapeText.Split('x').Select(int.Parse).ToArray();
        var data = Data(shape, kind, seed: shape.Aggregate(17, (h, d) => h * 31 + d) * 7 + Array.IndexOf(Kinds, kind));
        int units = shape.Length >= 2 ? shape[1] : 1;
        int block = shape.Length >= 3 ? shape[2..].Aggregate(1, (a, b) => a * b) : 0;
        return (shape, data, units, block, bounded ? SaturationBounds.ForLayerType("Tanh") : null);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_sample_copied_during_the_pass_is_the_finite_values_at_its_positions_and_changes_nothing_else(string shapeText, string kind, bool bounded)
    {
        var (shape, data, units, block, saturation) = Case(shapeText, kind, bounded);
        var plain = CpuKernel.Summarize(data, units, block, channelStatistics: shape.Length == 4, NearZero, saturation);
        foreach (int size in new[] { 16, 2048 })   // stratified positions, and (for the small shapes) every element
        {
            var sample = new StratifiedSample(data.Length, size, seed: 3);
            var buffer = new float[sample.Positions.Length];
            var summary = CpuKernel.Summarize(data, units, block, channelStatistics: shape.Length == 4, NearZero, saturation, sample, buffer);
            var expected = sample.Positions.Select(p => data[p]).Where(float.IsFinite).ToArray();
            Assert.Equal(expected, summary.Sample.ToArray());
            Assert.Equal(expected.Length == buffer.Length, summary.Sample.Length == buffer.Length);
            // Bit for bit the summary without a sample: the pass is cut into slices only at chunk boundaries.
            Assert.Equal(plain with { Sample = summary.Sample }, summary);
        }
    }

    [Theory]
    [InlineData("4x8x96x96", "normal")]      // blocked, long blocks
    [InlineData("300000", "nan")]            // flat, NaN among the values (the masked redo of a prefetched run)
    [InlineData("520x517", "1e20")]          // flat rows, squares beyond float, a partial vector at the end
    [InlineData("128x256", "inf")]           // the MLP's hidden outputs, Inf among the values
    [InlineData("8197", "offset")]           // just above the threshold, a partial vector at the end
    public void The_prefetched_pass_gives_the_same_summary_bit_for_bit_as_the_pass_without(string shapeText, string kind)
    {
        var (shape, data, units, block, _) = Case(shapeText, kind, bounded: false);
        var sample = new StratifiedSample(data.Length, 2048, seed: 5);
        LayerSummary Run(int prefetchFrom)
        {
            int threshold = CpuKernel.PrefetchFrom;
            try
            {
                CpuKernel.PrefetchFrom = prefetchFrom;
                var buffer = new float[sample.Positions.Length];
                return CpuKernel.Summarize(data, units, block, channelStatistics: shape.Length == 4, NearZero, null, sample, buffer);
            }
            finally
            {
                CpuKernel.PrefetchFrom = threshold;
            }
        }

        Assert.True(data.Length >= CpuKernel.PrefetchFrom && data.Length < CpuKernel.TwoThreadsFrom, $"{data.Length} values: one prefetched pass");
        var prefetched = Run(0);
        var plain = Run(int.MaxValue);
        Assert.Equal(plain with { Sample = [] }, prefetched with { Sample = [] });
        Assert.Equal(plain.Sample.ToArray(), prefetched.Sample.ToArray());
        var finite = Reference.Finite(data.Select(v => (double)v).ToArray());
        double mean = Reference.Mean(finite), std = Reference.Std(finite);
        Assert.Equal(finite.Length, prefetched.FiniteCount);
        AssertClose(mean, prefetched.Mean, Relative * (Math.Abs(mean) + std), "mean against the reference");
        AssertClose(std, Math.Sqrt(prefetched.Variance), Relative * std, "std against the reference");
    }

    [Theory]
    [InlineData("2x8x256x256", "normal")]    // blocked, long blocks: cut after the first sample
    [InlineData("3x5x211x333", "nan")]       // an odd number of samples, NaN among the values
    [InlineData("65536x16x1x1", "inf")]      // blocks of one, gathered in tiles
    [InlineData("1024x1025", "offset")]      // flat rows: cut at a chunk boundary
    [InlineData("1048583", "1e20")]          // flat, with a partial vector at the end, squares beyond float
    public void A_large_buffer_is_reduced_in_two_halves_that_agree_with_one_pass_and_a_double_reference(string shapeText, string kind)
    {
        var shape = shapeText.Split('x').Select(int.Parse).ToArray();
        var data = Data(shape, kind, seed: shape.Sum() + kind.Length);
        int units = shape.Length >= 2 ? shape[1] : 1;
        int block = shape.Length >= 3 ? shape[2..].Aggregate(1, (a, b) => a * b) : 0;
        var sample = new StratifiedSample(data.Length, 2048, seed: 9);
        LayerSummary Run()
        {
            var buffer = new float[sample.Positions.Length];
            return CpuKernel.Summarize(data, units, block, channelStatistics: shape.Length == 4, NearZero, null, sample, buffer);
        }

        Assert.True(data.Length >= CpuKernel.TwoThreadsFrom, $"{data.Length} values");
        long before = CpuKernel.TwoThreadPasses;
        var split = Run();
        if (Environment.ProcessorCount >= 2) Assert.True(CpuKernel.TwoThreadPasses > before, "the pass was split");
        else Assert.Equal(before, CpuKernel.TwoThreadPasses);   // one core: never split (then the comparison below is of one pass with itself)
        LayerSummary whole;
        int threshold = CpuKernel.TwoThreadsFrom;
        try
        {
            CpuKernel.TwoThreadsFrom = int.MaxValue;
            whole = Run();
        }
        finally
        {
            CpuKernel.TwoThreadsFrom = threshold;
        }

        // Counters, extremes and the sample exactly; the moments to the rounding of the double additions.
        Assert.Equal(whole with { Mean = 0, Variance = 0, ChannelSquaredMean = null, ChannelVariance = null, Sample = [] },
            split with { Mean = 0, Variance = 0, ChannelSquaredMean = null, ChannelVariance = null, Sample = [] });
        Assert.Equal(whole.Sample.ToArray(), split.Sample.ToArray());
        Assert.Equal(sample.Positions.Select(p => data[p]).Where(float.IsFinite), split.Sample.ToArray());
        AssertClose(whole.Mean, split.Mean, 1e-12 * (Math.Abs(whole.Mean) + Math.Sqrt(whole.Variance)), "mean");
        AssertClose(whole.Variance, split.Variance, 1e-10 * whole.Variance, "variance");
        if (shape.Length == 4)
        {
            AssertClose(whole.ChannelSquaredMean!.Value, split.ChannelSquaredMean!.Value, 1e-10 * whole.ChannelSquaredMean.Value, "channel squared mean");
            AssertClose(whole.ChannelVariance!.Value, split.ChannelVariance!.Value, 1e-10 * whole.ChannelVariance.Value, "channel variance");
        }
        var finite = Reference.Finite(data.Select(v => (double)v).ToArray());
        double mean = Reference.Mean(finite), std = Reference.Std(finite);
        Assert.Equal(finite.Length, split.FiniteCount);
        AssertClose(mean, split.Mean, Relative * (Math.Abs(mean) + std), "mean against the reference");
        AssertClose(std, Math.Sqrt(split.Variance), Relative * std, "std against the reference");
    }

    [Theory]
    [InlineData(new int[0])]                      // all finite: the vector gather from start to end
    [InlineData(new[] { 0 })]                     // the first sampled value
    [InlineData(new[] { 7 })]                     // the last lane of the first vector
    [InlineData(new[] { 130, 131 })]              // two in one vector, inside the second slice of the pass
    [InlineData(new[] { 1000, 1500, 2047 })]      // then more in the scalar copy, up to the last position
    public void Non_finite_values_at_sampled_positions_are_left_out_wherever_they_fall(int[] sampledAt)
    {
        var rng = new Random(11);
        var data = new float[128 * 256];
        for (int i = 0; i < data.Length; i++) data[i] = Math.Max(0f, (float)(rng.NextDouble() * 2 - 0.5));
        var sample = new StratifiedSample(data.Length, 2048, seed: 5);
        for (int j = 0; j < sampledAt.Length; j++) data[sample.Positions[sampledAt[j]]] = j % 2 == 0 ? float.NaN : float.NegativeInfinity;
        var buffer = new float[sample.Positions.Length];
        var summary = CpuKernel.Summarize(data, 256, 0, channelStatistics: false, NearZero, null, sample, buffer);
        var expected = sample.Positions.Select(p => data[p]).Where(float.IsFinite).ToArray();
        Assert.Equal(2048 - sampledAt.Length, expected.Length);
        Assert.Equal(expected, summary.Sample.ToArray());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Summary_matches_a_double_reference_across_the_path_boundaries(string shapeText, string kind, bool bounded)
    {
        var (shape, data, units, block, saturation) = Case(shapeText, kind, bounded);
        var summary = CpuKernel.Summarize(data, units, block, channelStatistics: shape.Length == 4, NearZero, saturation);

        var all = data.Select(v => (double)v).ToArray();
        var finite = Reference.Finite(all);
        Assert.Equal(all.Length, summary.Count);
        Assert.Equal(units, summary.Units);
        Assert.Equal(finite.Length, summary.FiniteCount);
        Assert.Equal(all.Count(double.IsNaN), summary.Nan);
        Assert.Equal(all.Count(double.IsInfinity), summary.Inf);
        Assert.Equal(all.Count(v => Math.Abs(v) <= NearZero), summary.NearZero);
        long saturated = saturation is { } s ? all.Count(v => v <= s.Low || v >= s.High) : 0;
        Assert.Equal(saturated, summary.Saturated);
        Assert.Equal(DeadUnits(all, shape), summary.DeadUnits);

        if (finite.Length > 0)
        {
            double mean = Reference.Mean(finite), std = Reference.Std(finite);
            AssertClose(mean, summary.Mean, Relative * (Math.Abs(mean) + std), "mean");
            AssertClose(std, Math.Sqrt(summary.Variance), Relative * std, "std");
            Assert.Equal(finite.Min(), summary.Min);
            Assert.Equal(finite.Max(), summary.Max);
        }
        else
        {
            Assert.True(double.IsNaN(summary.Mean) && double.IsNaN(summary.Variance), "no finite value: NaN moments");
            Assert.True(double.IsNaN(summary.Min) && double.IsNaN(summary.Max), "no finite value: NaN extremes");
        }

        if (shape.Length == 4)
        {
            var (squaredMean, variance) = ChannelStatistics(all, shape);
            Assert.True(finite.Length > 0, "every 4-D case has finite values");
            Assert.NotNull(summary.ChannelSquaredMean);
            Assert.NotNull(summary.ChannelVariance);
            AssertClose(squaredMean, summary.ChannelSquaredMean.Value, Relative * squaredMean, "channel squared mean");
            AssertClose(variance, summary.ChannelVariance.Value, Relative * variance, "channel variance");
        }
        else
        {
            Assert.Null(summary.ChannelSquaredMean);
            Assert.Null(summary.ChannelVariance);
        }
    }

    [Theory]
    [InlineData(StatisticsEngineKind.Auto)]
    [InlineData(StatisticsEngineKind.Device)]
    public void An_identity_layer_fed_3x3_maps_times_1e20_reports_the_finite_std(StatisticsEngineKind engine)
    {
        // The probe of issue 7: [16, 4, 3, 3] * 1e20 gave Std = Infinity on the CPU kernel (float squares, no fallback).
        using var scope = NewDisposeScope();
        var x = randn([16, 4, 3, 3], generator: new Generator(7)) * 1e20f;
        var values = x.data<float>().Select(v => (double)v).ToArray();
        var model = nn.Sequential(("id", nn.Identity()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Engine = engine });
        model.call(x);
        var st = monitor.Step()!.Layers.Single(l => l.Layer == "id").Statistics!;
        double std = Reference.Std(values);
        Assert.True(double.IsFinite(st.Std), $"Std = {st.Std}");
        AssertClose(std, st.Std, Relative * std, "std");
        AssertClose(Reference.Mean(values), st.Mean, Relative * std, "mean");
    }

    [Fact]
    public void Chan_merge_of_parts_equals_the_moments_of_the_whole()
    {
        var rng = new Random(11);
        var values = Enumerable.Range(0, 500).Select(i => 1e3 * (i % 7) + rng.NextDouble()).ToArray();
        var total = Moments.Empty;
        int start = 0;
        while (start < values.Length)
        {
            int length = Math.Min(values.Length - start, 1 + rng.Next(60));
            var part = values.AsSpan(start, length).ToArray();
            // Parts about their own first value, and every third part about the same pivot as the previous one.
            double pivot = start % 3 == 0 ? part[0] : total.Pivot;
            total = Moments.Merge(total,
                new Moments(part.Length, pivot, part.Sum(v => v - pivot), part.Sum(v => (v - pivot) * (v - pivot))));
            start += length;
        }
        double mean = Reference.Mean(values), m2 = values.Sum(v => (v - mean) * (v - mean));
        Assert.Equal(values.Length, total.Count);
        AssertClose(mean, total.Mean, 1e-12 * Math.Abs(mean), "mean");
        AssertClose(m2, total.M2, 1e-9 * m2, "M2");
        Assert.Equal(total, Moments.Merge(total, Moments.Empty));
        Assert.Equal(total, Moments.Merge(Moments.Empty, total));
    }

    /// <summary>
    /// Test data: "normal" is 3 + 2z with exact zeros and values under the near-zero threshold sprinkled in and unit 1
    /// (a channel or a feature) all zero; "nan" and "inf" plant non-finite values at the first element (so the pivot has
    /// to skip it), the last element (in the tail) and at random; "1e20" is z * 1e20 (squares overflow float);
    /// "offset" is 1e4 (c + 1) + 0.01 z (a spread tiny next to the offset).
    /// </summary>
    private static float[] Data(int[] shape, string kind, int seed)
    {
        var rng = new Random(seed);
        int n = shape.Aggregate(1, (a, b) => a * b);
        int units = shape.Length >= 2 ? shape[1] : 1;
        double Gaussian() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            int unit = UnitOf(i, shape);
            x[i] = kind switch
            {
                "1e20" => (float)(Gaussian() * 1e20),
                "offset" => (float)(1e4 * (unit + 1) + 0.01 * Gaussian()),
                _ => (float)(3 + 2 * Gaussian()),
            };
            if (kind is "normal" or "nan" or "inf" or "1e20")
            {
                double u = rng.NextDouble();
                if (u < 0.05) x[i] = 0;
                else if (u < 0.08) x[i] = (float)((rng.NextDouble() - 0.5) * NearZero);
                if (units > 1 && unit == 1) x[i] = 0;
            }
        }
        if (kind is "nan" or "inf")
        {
            float Bad() => kind == "nan" ? float.NaN : (rng.Next(2) == 0 ? float.PositiveInfinity : float.NegativeInfinity);
            x[0] = Bad();
            x[n - 1] = Bad();
            for (int k = 0; k < n / 50; k++) x[rng.Next(n)] = Bad();
        }
        return x;
    }

    [Theory]
    [InlineData(128, 256)]   // the bench MLP's hidden layers: blocks of four feature vectors only
    [InlineData(37, 83)]     // blocks of four vectors, two single vectors and three features past the last vector
    [InlineData(5, 9)]       // one vector and one feature
    [InlineData(4, 3)]       // narrower than a vector
    public void Dead_features_match_a_direct_count_wherever_they_sit_in_the_row(int rows, int features)
    {
        var rng = new Random(rows * 1000 + features);
        var data = new float[rows * features];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
        // Dead: every row near zero (zeros, tiny values, -0, the threshold itself); not dead: one row is not.
        var dead = new[] { 0, 1, features / 2, features - 1, features - 2 }.Where(f => f < features).Distinct().ToArray();
        foreach (int f in dead)
            for (int r = 0; r < rows; r++) data[r * features + f] = (r % 4) switch { 0 => 0f, 1 => -0f, 2 => NearZero, _ => -1e-5f };
        int almost = features > 3 ? 2 : -1;   // near zero except for one row
        if (almost >= 0 && !dead.Contains(almost))
            for (int r = 0; r < rows; r++) data[r * features + almost] = r == rows - 1 ? 0.5f : 0f;
        int withNan = features > 4 ? 3 : -1;   // near zero except for one NaN, which counts as not near zero
        if (withNan >= 0 && !dead.Contains(withNan))
            for (int r = 0; r < rows; r++) data[r * features + withNan] = r == rows / 2 ? float.NaN : 0f;

        var summary = CpuKernel.Summarize(data, features, 0, channelStatistics: false, NearZero, null);

        long expected = 0;
        for (int f = 0; f < features; f++)
        {
            bool all = true;
            for (int r = 0; r < rows; r++) all &= Math.Abs((double)data[r * features + f]) <= NearZero;
            expected += all ? 1 : 0;
        }
        Assert.Equal(dead.Length, expected);   // the data are as meant
        Assert.Equal(expected, summary.DeadUnits);
    }

    [Theory]
    [InlineData(130, 64, 129)]   // the one value above the threshold in the last row, past the last check of the masks
    [InlineData(130, 64, 7)]     // in the row of a check
    [InlineData(64, 40, 63)]     // a feature vector of its own (40 = four vectors and one)
    public void A_feature_that_wakes_up_late_is_alive_and_one_that_never_does_is_dead_when_its_neighbours_are_alive_from_the_first_row(
        int rows, int features, int wakeRow)
    {
        // Every other feature is far from zero in every row, so the walk down the rows could stop early for their vectors.
        var rng = new Random(rows + features + wakeRow);
        var data = new float[rows * features];
        for (int i = 0; i < data.Length; i++) data[i] = 0.5f + (float)rng.NextDouble();
        int late = features - 8, never = features - 7;   // both in the last whole feature vector
        for (int r = 0; r < rows; r++)
        {
            data[r * features + late] = r == wakeRow ? 2f : 0f;
            data[r * features + never] = r % 2 == 0 ? 0f : -NearZero;
        }
        var summary = CpuKernel.Summarize(data, features, 0, channelStatistics: false, NearZero, null);
        Assert.Equal(1, summary.DeadUnits);

        data[wakeRow * features + late] = NearZero;   // now it never wakes up either
        Assert.Equal(2, CpuKernel.Summarize(data, features, 0, channelStatistics: false, NearZero, null).DeadUnits);
    }

    /// <summary>The unit (feature or channel, dimension 1) of flat index i; 0 for a 1-D buffer.</summary>
    private static int UnitOf(int i, int[] shape)
    {
        if (shape.Length < 2) return 0;
        int inner = shape[2..].Aggregate(1, (a, b) => a * b);
        return i / inner % shape[1];
    }

    private static long DeadUnits(double[] all, int[] shape)
    {
        int units = shape.Length >= 2 ? shape[1] : 1;
        var active = new bool[units];
        for (int i = 0; i < all.Length; i++)
            if (!(Math.Abs(all[i]) <= NearZero)) active[UnitOf(i, shape)] = true;
        return all.Length == 0 ? 0 : active.Count(a => !a);
    }

    /// <summary>Brock et al.'s channel statistics over the finite values of each channel, channels without any left out.</summary>
    private static (double SquaredMean, double Variance) ChannelStatistics(double[] all, int[] shape)
    {
        var channels = new List<double>[shape[1]];
        for (int c = 0; c < channels.Length; c++) channels[c] = [];
        for (int i = 0; i < all.Length; i++)
            if (double.IsFinite(all[i])) channels[UnitOf(i, shape)].Add(all[i]);
        double squaredMean = 0, variance = 0;
        int used = 0;
        foreach (var channel in channels.Where(c => c.Count > 0))
        {
            var values = channel.ToArray();
            double m = Reference.Mean(values), sd = Reference.Std(values);
            squaredMean += m * m;
            variance += sd * sd;
            used++;
        }
        return (squaredMean / used, variance / used);
    }

    private static void AssertClose(double expected, double actual, double tolerance, string what) =>
        Assert.True(Math.Abs(expected - actual) <= tolerance,
            $"{what}: expected {expected:R}, got {actual:R} (tolerance {tolerance:G3})");
}
