using System.Runtime.Intrinsics.X86;
using CovariateShift.Statistics;

namespace CovariateShift.Tests;

/// <summary>
/// The bracketed percentile selection (a layer's memory of where its percentiles were) against percentiles read off a
/// sorted copy, over sequences of samples like a layer's from one recorded step to the next.
/// </summary>
public sealed class PercentileBracketsTests
{
    private static readonly double[] Levels = [0.15, 0.50, 0.85];

    /// <summary>numpy's default percentile (linear interpolation) from a sorted copy.</summary>
    private static double[] Sorted(float[] values, double[] q)
    {
        var a = (float[])values.Clone();
        Array.Sort(a);
        return [.. q.Select(level =>
        {
            double h = (a.Length - 1) * level;
            int lo = (int)Math.Floor(h);
            int hi = Math.Min(lo + 1, a.Length - 1);
            return a[lo] + (h - lo) * ((double)a[hi] - a[lo]);
        })];
    }

    private static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>Runs <paramref name="steps"/> samples through one set of brackets; each must match the sorted copy exactly.</summary>
    private static PercentileBrackets Run(int steps, Func<int, float[]> sample, double[]? levels = null)
    {
        levels ??= Levels;
        var brackets = new PercentileBrackets();
        for (int s = 0; s < steps; s++)
        {
            var values = sample(s);
            var expected = Sorted(values, levels);
            var actual = SampleStatistics.Percentiles(values, levels, brackets);
            for (int j = 0; j < levels.Length; j++)
                Assert.True(expected[j] == actual[j], $"step {s}, q {levels[j]}: {actual[j]:R}, sorted copy {expected[j]:R} (n {values.Length})");
            // The plain radix select gives the same values.
            Assert.Equal(SampleStatistics.Percentiles(values, levels), actual);
        }
        return brackets;
    }

    [Fact]
    public void Drifting_samples_are_answered_from_the_brackets_and_jumps_fall_back_to_the_full_select()
    {
        var rng = new Random(1);
        var brackets = Run(300, s =>
        {
            // A slow drift of mean and spread, a fresh batch every step, and a jump every 50 steps.
            double mean = 0.002 * s + (s / 50) * 3.0, std = 1 + 0.001 * s;
            return [.. Enumerable.Range(0, 2048).Select(_ => (float)(mean + std * Gaussian(rng)))];
        });
        if (!Avx2.IsSupported) return;   // the bracketed pass is AVX2 code; elsewhere every answer is the plain select's
        Assert.True(brackets.Hits >= 250, $"bracketed answers {brackets.Hits} of 300 (misses {brackets.Misses})");
        Assert.InRange(brackets.Misses, 6, 50);   // the first step, the five jumps and the odd unlucky batch
    }

    [Fact]
    public void ReLU_outputs_with_runs_of_zeros_and_negative_zeros_match()
    {
        var rng = new Random(2);
        var brackets = Run(200, s =>
        {
            double dead = 0.3 + 0.3 * Math.Sin(s / 20.0);   // the share of zeros moves P15 and P50 on and off +0
            return [.. Enumerable.Range(0, 2048).Select(i => rng.NextDouble() < dead ? (i % 97 == 0 ? -0f : 0f)
                : (float)Math.Abs(Gaussian(rng)))];
        });
        if (Avx2.IsSupported) Assert.True(brackets.Hits >= 100, $"bracketed answers {brackets.Hits} of 200 (misses {brackets.Misses})");
    }

    [Fact]
    public void Ties_negative_values_sizes_off_the_vector_width_and_extreme_levels_match()
    {
        var rng = new Random(3);
        // Values from a small set (many ties), around zero.
        Run(100, s => [.. Enumerable.Range(0, 2047).Select(_ => (float)(rng.Next(-20, 21) * 0.25 + 0.001 * s))]);
        // Sizes that change from step to step and are not multiples of 8 (the brackets are planned again).
        Run(60, s => [.. Enumerable.Range(0, 1001 + (s / 20) * 3).Select(_ => (float)Gaussian(rng))]);
        // Below the bracketed path's smallest sample: the full select every time.
        var small = Run(20, s => [.. Enumerable.Range(0, 100).Select(_ => (float)Gaussian(rng))]);
        Assert.Equal(0, small.Hits);
        // The minimum, the maximum and two close levels (one cluster of ranks).
        var extremes = Run(80, s => [.. Enumerable.Range(0, 4096).Select(_ => (float)(1e-3 * Gaussian(rng) - 5))], [0.0, 0.4999, 0.5, 1.0]);
        if (Avx2.IsSupported) Assert.True(extremes.Hits > 0, "the close levels are answered from the brackets at least once");
        // Huge and tiny magnitudes in one sample (bands whose key range spans most of the float line).
        Run(60, s => [.. Enumerable.Range(0, 2048).Select(i => (float)(Gaussian(rng) * (i % 3 == 0 ? 1e30 : i % 3 == 1 ? 1e-30 : 1)))]);
    }

    [Fact]
    public void One_to_four_clusters_take_the_bracketed_pass_and_more_take_the_full_select()
    {
        // The records' three percentiles use three bracket lanes; other level sets use one, two or all four.
        double[][] sets = [[0.5], [0.2, 0.8], [0.1, 0.35, 0.65, 0.9], [0.1, 0.3, 0.5, 0.7, 0.9]];
        foreach (var levels in sets)
        {
            var rng = new Random(levels.Length);
            var brackets = Run(60, s => [.. Enumerable.Range(0, 2048).Select(_ => (float)(0.01 * s + Gaussian(rng)))], levels);
            if (!Avx2.IsSupported) continue;
            if (levels.Length <= 4) Assert.True(brackets.Hits >= 40, $"{levels.Length} clusters: bracketed answers {brackets.Hits} of 60");
            else Assert.Equal(0, brackets.Hits);
        }
    }
}
