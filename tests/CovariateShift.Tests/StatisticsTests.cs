using CovariateShift.Records;
using CovariateShift.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>Every statistic against an independent double-precision computation, for both engine paths.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class StatisticsTests
{
    // Tolerances: moments are accumulated in float per chunk and double overall (CPU path) or in double (device path);
    // relative 1e-5 covers float rounding of ~1e5 values. Min/max/percentiles are exact float values: 1e-6.
    private const double Relative = 1e-5;

    public static TheoryData<StatisticsEngineKind> Engines => new() { StatisticsEngineKind.Auto, StatisticsEngineKind.Device };

    private static LayerStatistics RecordOnce(nn.Module<Tensor, Tensor> model, Tensor input, MonitorOptions options, string layer)
    {
        using var monitor = ActivationMonitor.Attach(model, options);
        using (var scope = NewDisposeScope()) model.call(input);
        var record = monitor.Step() ?? throw new InvalidOperationException("step 0 must be recorded");
        return record.Layers.Single(l => l.Layer == layer).Statistics!;
    }

    private static void AssertClose(double expected, double actual, double relative, string what)
    {
        double tol = relative * Math.Max(1.0, Math.Abs(expected));
        Assert.True(Math.Abs(expected - actual) <= tol, $"{what}: expected {expected:R}, got {actual:R} (tolerance {tol:G3})");
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Statistics_of_random_data_match_an_independent_computation(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(42);
        // Mixed data: Gaussian around 3 with a spike of exact zeros and values near zero, NaN and Inf planted.
        var x = (randn([64, 300], generator: gen) * 2 + 3);
        x[0, ..20] = zeros(20);
        x[1, ..30] = randn(30, generator: gen) * 0.01;
        x[2, 5] = tensor(float.NaN);
        x[3, 7] = tensor(float.PositiveInfinity);
        x[4, 9] = tensor(float.NegativeInfinity);
        x[5, 11] = tensor(float.NaN);
        var model = nn.Sequential(("id", nn.Identity()));
        var s = RecordOnce(model, x, new MonitorOptions { Engine = engine, SampleSize = 64 * 300, HistogramBins = 32 }, "id");

        var all = TorchData.ToDoubles(x);
        var finite = Reference.Finite(all);
        Assert.Equal(all.Length, s.Count);
        Assert.Equal(2, s.NanCount);
        Assert.Equal(2, s.InfCount);
        AssertClose(Reference.Mean(finite), s.Mean, Relative, "mean");
        AssertClose(Reference.Std(finite), s.Std, Relative, "std");
        AssertClose(finite.Min(), s.Min, 1e-7, "min");
        AssertClose(finite.Max(), s.Max, 1e-7, "max");
        Assert.Equal(all.Count(v => Math.Abs(v) <= 0.05) / (double)all.Length, s.NearZeroFraction, 12);
        Assert.Null(s.SaturatedFraction);
        Assert.Null(s.ChannelSquaredMean);
        // Whole tensor fits in the sample: percentiles are exact.
        AssertClose(Reference.Percentile(finite, 0.15), s.P15, 1e-6, "p15");
        AssertClose(Reference.Percentile(finite, 0.50), s.P50, 1e-6, "p50");
        AssertClose(Reference.Percentile(finite, 0.85), s.P85, 1e-6, "p85");
        // Histogram: the documented range rule, then independent binning of every finite value.
        double min = finite.Min(), max = finite.Max(), span = max - min;
        Assert.Equal(min - span / 2, s.Histogram!.Low, 5);
        Assert.Equal(max + span / 2, s.Histogram!.High, 5);
        Assert.Equal(Reference.Histogram(finite, s.Histogram!.Low, s.Histogram!.High, 32), s.Histogram!.Counts);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Channel_statistics_of_a_conv_output_follow_Brock_et_al(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        var x = randn([6, 5, 4, 3], generator: gen) * arange(1, 6).reshape(1, 5, 1, 1) + arange(5).reshape(1, 5, 1, 1);
        var model = nn.Sequential(("id", nn.Identity()));
        var s = RecordOnce(model, x, new MonitorOptions { Engine = engine }, "id");
        var (sq, var) = Reference.ChannelStatistics(TorchData.ToDoubles(x), 6, 5, 12);
        AssertClose(sq, s.ChannelSquaredMean!.Value, Relative, "channel squared mean");
        AssertClose(var, s.ChannelVariance!.Value, Relative, "channel variance");
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Saturation_of_sigmoid_and_tanh_counts_values_within_one_percent_of_the_bounds(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var x = randn([50, 80], generator: new Generator(3)) * 4;
        var input = TorchData.ToDoubles(x);

        var sig = RecordOnce(nn.Sequential(("act", nn.Sigmoid())), x, new MonitorOptions { Engine = engine }, "act");
        var sigOut = input.Select(v => 1 / (1 + Math.Exp(-v))).ToArray();
        Assert.Equal(sigOut.Count(v => v <= 0.01 || v >= 0.99) / (double)sigOut.Length, sig.SaturatedFraction!.Value, 3);
        Assert.Equal(0.0, sig.Histogram!.Low);
        Assert.Equal(1.0, sig.Histogram!.High);

        var tanh = RecordOnce(nn.Sequential(("act", nn.Tanh())), x, new MonitorOptions { Engine = engine }, "act");
        var tanhOut = input.Select(Math.Tanh).ToArray();
        Assert.Equal(tanhOut.Count(v => Math.Abs(v) >= 0.98) / (double)tanhOut.Length, tanh.SaturatedFraction!.Value, 3);
    }

    [Fact]
    public void Percentiles_of_a_large_output_come_from_the_sample_within_sampling_error()
    {
        using var scope = NewDisposeScope();
        var x = randn([64, 1024], generator: new Generator(11));     // 65,536 values, sample 2,048
        var s = RecordOnce(nn.Sequential(("id", nn.Identity())), x, new MonitorOptions(), "id");
        var all = TorchData.ToDoubles(x);
        // Standard error of a sample quantile: sqrt(q(1-q)/n) / pdf(x_q); at n = 2048 about 0.034 for q = 0.15 of N(0,1).
        // 0.15 is more than 4 standard errors.
        Assert.InRange(s.P15 - Reference.Percentile(all, 0.15), -0.15, 0.15);
        Assert.InRange(s.P50 - Reference.Percentile(all, 0.50), -0.15, 0.15);
        Assert.InRange(s.P85 - Reference.Percentile(all, 0.85), -0.15, 0.15);
        Assert.Equal(2048, s.Histogram!.Total);
        // Mean and std use every element: exact.
        AssertClose(Reference.Mean(all), s.Mean, Relative, "mean");
        AssertClose(Reference.Std(all), s.Std, Relative, "std");
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Statistics_of_real_Fashion_MNIST_activations_match(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var data = TorchData.FashionMnist512;
        var images = data.Images[..256];
        torch.manual_seed(5);
        var conv = nn.Conv2d(1, 8, 3);
        // The reference sees exactly the tensor the monitor saw: a second hook copies it.
        Tensor? expectedOut = null;
        var copyHook = conv.register_forward_hook((_, _, output) =>
        {
            expectedOut = output.detach().clone().MoveToOuterDisposeScope();
            return output;
        });
        var model = nn.Sequential(("conv", conv), ("relu", nn.ReLU()));
        // 256*8*26*26 = 1,384,448 conv outputs; a sample that large makes percentiles and histogram exact.
        var s = RecordOnce(model, images, new MonitorOptions { Engine = engine, SampleSize = 1_400_000 }, "conv");
        copyHook.remove();
        var v = TorchData.ToDoubles(expectedOut!);
        AssertClose(Reference.Mean(v), s.Mean, Relative, "mean");
        AssertClose(Reference.Std(v), s.Std, Relative, "std");
        AssertClose(v.Min(), s.Min, 1e-6, "min");
        AssertClose(v.Max(), s.Max, 1e-6, "max");
        AssertClose(Reference.Percentile(v, 0.15), s.P15, 1e-6, "p15");
        AssertClose(Reference.Percentile(v, 0.50), s.P50, 1e-6, "p50");
        AssertClose(Reference.Percentile(v, 0.85), s.P85, 1e-6, "p85");
        Assert.Equal(v.Count(a => Math.Abs(a) <= 0.05) / (double)v.Length, s.NearZeroFraction, 12);
        var (sq, var) = Reference.ChannelStatistics(v, 256, 8, 26 * 26);
        AssertClose(sq, s.ChannelSquaredMean!.Value, 1e-4, "channel squared mean");
        AssertClose(var, s.ChannelVariance!.Value, 1e-4, "channel variance");
        Assert.Equal(Reference.Histogram(v, s.Histogram!.Low, s.Histogram!.High, 64), s.Histogram!.Counts);
    }

    [Fact]
    public void The_histogram_range_is_fixed_at_the_first_record_and_values_outside_land_in_under_and_overflow()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("id", nn.Identity()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { HistogramBins = 10 });
        using (var s1 = NewDisposeScope()) model.call(linspace(-1, 1, 101));
        var first = monitor.Step()!.Layers[0].Statistics!.Histogram!;
        Assert.Equal(-2.0, first.Low, 6);     // min - span/2
        Assert.Equal(2.0, first.High, 6);
        using (var s2 = NewDisposeScope()) model.call(tensor(new float[] { -5, -1.5f, 0.1f, 1.9f, 2f, 7 }));
        var second = monitor.Step()!.Layers[0].Statistics!.Histogram!;
        Assert.Equal(first.Low, second.Low);
        Assert.Equal(first.High, second.High);
        Assert.Equal(1, second.Underflow);       // -5
        Assert.Equal(2, second.Overflow);        // 2 (= high, right-open) and 7
        Assert.Equal(6, second.Total);
    }

    public static TheoryData<string> SelectionCases => new() { "gaussian", "relu", "ties", "signed-zeros", "zeros-and-subnormals", "tiny-and-huge", "one", "equal", "tight-cluster" };

    private static float[] SelectionData(string kind)
    {
        var rng = new Random(kind.Length * 7919);
        float Gauss() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return kind switch
        {
            "gaussian" => Enumerable.Range(0, 2048).Select(_ => Gauss()).ToArray(),
            "relu" => Enumerable.Range(0, 2048).Select(_ => Math.Max(0f, Gauss())).ToArray(),
            "ties" => Enumerable.Range(0, 1999).Select(_ => (float)rng.Next(-3, 4) / 2).ToArray(),
            "signed-zeros" => Enumerable.Range(0, 301).Select(i => i % 3 == 0 ? -0f : i % 3 == 1 ? 0f : -1e-30f).ToArray(),
            // +0 shares its top bucket with the smallest positive subnormals: the bucket is then not all +0.
            "zeros-and-subnormals" => Enumerable.Range(0, 2048).Select(i => i % 5 == 0 ? 1e-45f * (1 + i % 7) : i % 5 == 4 ? Gauss() : 0f).ToArray(),
            "tiny-and-huge" => Enumerable.Range(0, 777).Select(_ => Gauss() * MathF.Pow(10, rng.Next(-38, 37))).ToArray(),
            "one" => [3.25f],
            "equal" => Enumerable.Repeat(-1.5f, 100).ToArray(),
            // Floats a few hundred ulps apart, and a few in the next bucket of the second digit: the select gathers nearly
            // the whole sample at the second digit and then again at the third.
            "tight-cluster" => Enumerable.Range(0, 2800).Select(i => BitConverter.Int32BitsToSingle(
                (i % 27 == 0 ? 0x4011_1800 : 0x4010_7800) + rng.Next(-300, 301))).ToArray(),
            _ => throw new ArgumentException(kind),
        };
    }

    [Theory]
    [MemberData(nameof(SelectionCases))]
    public void Rank_selection_returns_the_order_statistics_of_a_full_sort(string kind)
    {
        var values = SelectionData(kind);
        var before = values.ToArray();
        var sorted = values.ToArray();
        // -0 before +0, as the selection orders them.
        Array.Sort(sorted, (a, b) => a != b ? a.CompareTo(b) : BitConverter.SingleToInt32Bits(a).CompareTo(BitConverter.SingleToInt32Bits(b)));
        var ranks = new[] { sorted.Length - 1, 0, sorted.Length / 2, (int)(0.15 * (sorted.Length - 1)), (int)(0.85 * (sorted.Length - 1)), sorted.Length / 2 };
        var selected = new float[ranks.Length];
        CovariateShift.Statistics.SampleStatistics.SelectRanks(values, ranks, selected);
        for (int i = 0; i < ranks.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(sorted[ranks[i]]), BitConverter.SingleToInt32Bits(selected[i]));
        Assert.Equal(before, values);     // the sample is not reordered
        // Percentiles: numpy's linear interpolation over the sorted values.
        var p = CovariateShift.Statistics.SampleStatistics.Percentiles(values, [0.15, 0.5, 0.85]);
        var asDoubles = sorted.Select(v => (double)v).ToArray();
        Assert.Equal(Reference.Percentile(asDoubles, 0.15), p[0], 12);
        Assert.Equal(Reference.Percentile(asDoubles, 0.50), p[1], 12);
        Assert.Equal(Reference.Percentile(asDoubles, 0.85), p[2], 12);
    }

    private static readonly double[] PercentileLevels = [0.15, 0.5, 0.85];

    [Theory]
    [MemberData(nameof(SelectionCases))]
    public void Rank_selection_of_one_to_many_rank_groups_matches_a_full_sort_bit_for_bit(string kind)
    {
        // One rank, the percentiles' three adjacent pairs, four spread ranks (the vectorized gather's limit) and
        // five (the general gather): every path of the selection.
        var values = SelectionData(kind);
        var sorted = values.ToArray();
        Array.Sort(sorted, (a, b) => a != b ? a.CompareTo(b) : BitConverter.SingleToInt32Bits(a).CompareTo(BitConverter.SingleToInt32Bits(b)));
        int n = sorted.Length, last = n - 1;
        int[][] sets =
        [
            [n / 2],
            [.. PercentileLevels.SelectMany(q => new[] { (int)Math.Floor(last * q), Math.Min((int)Math.Floor(last * q) + 1, last) })],
            [0, last / 3, 2 * last / 3, last],
            [last, 0, last / 4, last / 2, 3 * last / 4],
        ];
        foreach (var ranks in sets)
        {
            var selected = new float[ranks.Length];
            CovariateShift.Statistics.SampleStatistics.SelectRanks(values, ranks, selected);
            for (int i = 0; i < ranks.Length; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(sorted[ranks[i]]), BitConverter.SingleToInt32Bits(selected[i]));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(10)]
    [InlineData(16)]
    [InlineData(127)]
    [InlineData(255)]
    [InlineData(256)]   // the largest sample that is sorted whole
    [InlineData(257)]   // the smallest that takes the digit descent
    [InlineData(400)]
    public void Rank_selection_of_a_small_sample_matches_a_full_sort_bit_for_bit(int n)
    {
        // Negative and positive values, -0 and +0, repeated values and subnormals: around the size at which the whole
        // sample is sorted instead of descended by digits, both paths give the sort's order statistics.
        var rng = new Random(n);
        float[] pool = [-0f, 0f, 1e-40f, -1e-40f, 3.5f, -3.5f];
        var values = Enumerable.Range(0, n).Select(i => i % 5 == 0 ? pool[rng.Next(pool.Length)] : (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var before = values.ToArray();
        var sorted = values.ToArray();
        Array.Sort(sorted, (a, b) => a != b ? a.CompareTo(b) : BitConverter.SingleToInt32Bits(a).CompareTo(BitConverter.SingleToInt32Bits(b)));
        int last = n - 1;
        int[] ranks = [last, 0, last / 2, (int)(0.15 * last), Math.Min((int)(0.15 * last) + 1, last), (int)(0.85 * last), last / 3];
        var selected = new float[ranks.Length];
        CovariateShift.Statistics.SampleStatistics.SelectRanks(values, ranks, selected);
        for (int i = 0; i < ranks.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(sorted[ranks[i]]), BitConverter.SingleToInt32Bits(selected[i]));
        Assert.Equal(before, values);     // the sample is not reordered
        var p = CovariateShift.Statistics.SampleStatistics.Percentiles(values, PercentileLevels);
        var asDoubles = sorted.Select(v => (double)v).ToArray();
        for (int j = 0; j < PercentileLevels.Length; j++)
            Assert.Equal(Reference.Percentile(asDoubles, PercentileLevels[j]), p[j], 12);
    }

    [Fact]
    public void Rank_selection_keeps_a_bucket_gathered_at_one_level_apart_from_the_next_levels()
    {
        // Digits of the keys: d1 (bits 13-20), d2 (bits 5-12), low (bits 0-4) under one top bucket. Rank 0 lies in d1 = 0x20,
        // rank 600 in d1 = 0x10's second d2 bucket: gathering the 600 keys of d1 = 0x10 and then its 200 keys of d2 = 2 must
        // not overwrite the keys of the d1 = 0x20 bucket that the next gather at level 1 reads.
        static float F(int d1, int d2, int low) => BitConverter.Int32BitsToSingle(0x3F80_0000 | d1 << 13 | d2 << 5 | low);
        var rng = new Random(5);
        float[] values =
        [
            F(0x20, 0, 0),
            .. Enumerable.Repeat(F(0x10, 1, 0), 400),
            .. Enumerable.Range(0, 200).Select(_ => F(0x10, 2, rng.Next(32))),
            .. Enumerable.Range(0, 399).Select(_ => F(0x20, rng.Next(2, 256), rng.Next(32))),
        ];
        var sorted = values.Order().ToArray();
        var selected = new float[2];
        CovariateShift.Statistics.SampleStatistics.SelectRanks(values, [0, 600], selected);
        Assert.Equal((sorted[0], sorted[600]), (selected[0], selected[1]));
    }

    [Fact]
    public void Rank_selection_rejects_a_rank_outside_the_sample()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CovariateShift.Statistics.SampleStatistics.SelectRanks([1f, 2f], [2], new float[1]));
        Assert.Contains("0..1", e.Message);
    }

    [Fact]
    public void Histogram_bins_values_on_edges_and_outside_the_range_like_the_reference()
    {
        // Edges k/16 of 64 bins over [-1, 3) are exact in float; values on them, between them, below and above the range,
        // and a length that leaves a tail for the scalar loop.
        var values = Enumerable.Range(-40, 1101).Select(k => k / 256f - 0.5f)
            .Concat([-1f, 3f, -1.0000001f, 2.9999998f, -7f, 9f, 0f, -0f]).ToArray();
        var counts = CovariateShift.Statistics.SampleStatistics.Histogram(values, -1, 3, 64);
        Assert.Equal(Reference.Histogram(values.Select(v => (double)v).ToArray(), -1, 3, 64), counts);
        // The vectorized body and the scalar tail agree value by value.
        var oneByOne = new long[66];
        foreach (var v in values)
        {
            var single = CovariateShift.Statistics.SampleStatistics.Histogram([v], -1, 3, 64);
            for (int b = 0; b < single.Length; b++) oneByOne[b] += single[b];
        }
        Assert.Equal(oneByOne, counts);
    }
}
