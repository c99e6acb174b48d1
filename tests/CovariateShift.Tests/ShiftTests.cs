using CovariateShift.Records;
using CovariateShift.Shift;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

public sealed class ShiftTests
{
    private static LayerStatistics Stats(double mean, double std, long[] counts, double low = -10, double high = 10) =>
        new()
        {
            Count = 1000, Mean = mean, Std = std, Min = 0, Max = 0, P15 = 0, P50 = 0, P85 = 0, NearZeroFraction = 0, DeadUnitFraction = 0,
            Histogram = new Histogram(low, high, [.. counts]),
        };

    private static long[] GaussianHistogram(double mu, double sigma, int n, int bins, double low, double high, int seed)
    {
        var rng = new Random(seed);
        var c = new long[bins + 2];
        double width = (high - low) / bins;
        for (int i = 0; i < n; i++)
        {
            // Box-Muller
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double x = mu + sigma * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            c[x < low ? 0 : x >= high ? bins + 1 : 1 + (int)((x - low) / width)]++;
        }
        return c;
    }

    [Fact]
    public void Identical_distributions_have_no_shift()
    {
        var counts = GaussianHistogram(0, 1, 10_000, 64, -5, 5, 1);
        var a = Stats(0.3, 1.7, counts, -5, 5);
        var m = ShiftCalculator.Compute(a, a with { });
        Assert.Equal(0.0, m.MeanDrift);
        Assert.Equal(1.0, m.VarianceRatio, 8);   // Var / (Var + 1e-8), Var = 2.89
        Assert.Equal(0.0, m.KlDivergence, 12);
        Assert.Equal(0.0, m.JensenShannon, 12);
        Assert.Equal(0.0, m.Wasserstein1, 12);
    }

    [Fact]
    public void KL_of_two_histogrammed_Gaussians_matches_the_analytic_value()
    {
        // KL(N(m1, s1^2) || N(m2, s2^2)) = ln(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2
        double m1 = 0, s1 = 1, m2 = 0.5, s2 = 1.5;
        double analytic = Math.Log(s2 / s1) + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2 * s2 * s2) - 0.5;   // 0.18324
        var p = GaussianHistogram(m1, s1, 2_000_000, 400, -10, 10, 2);
        var q = GaussianHistogram(m2, s2, 2_000_000, 400, -10, 10, 3);
        double kl = ShiftCalculator.KlDivergence(p, q);
        // Binning (width 0.05), sampling and the 0.5 pseudo-count together stay well under 2%.
        Assert.InRange(kl, analytic * 0.98, analytic * 1.02);
        // Reverse direction differs (KL is asymmetric): KL(q||p) = ln(s1/s2) + (s2^2 + d^2)/(2 s1^2) - 1/2 = 0.34453.
        // Here q's wide tails fall where p has (almost) no samples; the pseudo-count raises p there and lowers the
        // estimate by about 3%: 5% tolerance.
        double reverse = Math.Log(s1 / s2) + (s2 * s2 + 0.25) / (2 * s1 * s1) - 0.5;
        Assert.InRange(ShiftCalculator.KlDivergence(q, p), reverse * 0.95, reverse * 1.05);
    }

    [Fact]
    public void Jensen_Shannon_is_symmetric_bounded_and_finite_even_for_disjoint_supports()
    {
        long[] a = [0, 10, 0, 0, 0, 0];
        long[] b = [0, 0, 0, 0, 10, 0];
        Assert.Equal(1.0, ShiftCalculator.JensenShannon(a, b), 12);     // disjoint: exactly 1 bit
        var p = GaussianHistogram(0, 1, 100_000, 50, -5, 5, 4);
        var q = GaussianHistogram(1, 1, 100_000, 50, -5, 5, 5);
        double pq = ShiftCalculator.JensenShannon(p, q), qp = ShiftCalculator.JensenShannon(q, p);
        Assert.Equal(pq, qp, 12);
        Assert.InRange(pq, 0.0, 1.0);
    }

    [Fact]
    public void Wasserstein1_of_shifted_Gaussians_equals_the_shift()
    {
        // W1(N(0,1), N(0.5,1)) = 0.5 exactly; histogram discretization (width 0.02) and sampling: within 2%.
        var p = GaussianHistogram(0, 1, 1_000_000, 1000, -10, 10, 6);
        var q = GaussianHistogram(0.5, 1, 1_000_000, 1000, -10, 10, 7);
        Assert.InRange(ShiftCalculator.Wasserstein1(p, q, 0.02), 0.49, 0.51);
        // A point mass moved from the first to the last interior bin of [0, 4) with 4 bins: centres 0.5 -> 3.5.
        Assert.Equal(3.0, ShiftCalculator.Wasserstein1([0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], 1.0), 12);
        // Underflow sits on the low edge (0), overflow on the high edge (4).
        Assert.Equal(4.0, ShiftCalculator.Wasserstein1([1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], 1.0), 12);
    }

    [Fact]
    public void Mean_drift_and_variance_ratio_follow_their_definitions()
    {
        var c = new long[] { 0, 5, 5, 0 };
        var now = Stats(2.5, 3.0, c);
        var before = Stats(1.0, 1.5, c);
        var m = ShiftCalculator.Compute(now, before);
        Assert.Equal(1.5, m.MeanDrift, 12);
        Assert.Equal(9.0 / (2.25 + 1e-8), m.VarianceRatio, 10);
    }

    [Fact]
    public void Histograms_with_different_edges_are_refused()
    {
        var a = Stats(0, 1, [0, 1, 1, 0], -1, 1);
        var b = Stats(0, 1, [0, 1, 1, 0], -2, 2);
        var e = Assert.Throws<ArgumentException>(() => ShiftCalculator.Compute(a, b));
        Assert.Contains("[-1, 1)", e.Message);
    }

    [Fact]
    public void The_monitor_reports_shift_between_steps_and_against_a_reference()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("id", nn.Identity()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 4096 });
        var gen = new Generator(9);
        using (var s = NewDisposeScope()) model.call(randn(4096, generator: gen));
        var r0 = monitor.Step()!.Layers[0];
        Assert.Null(r0.Shift);
        monitor.CaptureReference();
        using (var s = NewDisposeScope()) model.call(randn(4096, generator: gen) * 2 + 1);
        var r1 = monitor.Step()!.Layers[0];
        Assert.NotNull(r1.Shift);
        Assert.Equal(ShiftCalculator.Compute(r1.Statistics!, r0.Statistics!), r1.Shift);
        Assert.Equal(r1.Shift, r1.ReferenceShift);
        Assert.InRange(r1.Shift!.MeanDrift, 0.9, 1.1);
        Assert.InRange(r1.Shift.VarianceRatio, 3.6, 4.4);
        using (var s = NewDisposeScope()) model.call(randn(4096, generator: gen) * 2 + 1);
        var r2 = monitor.Step()!.Layers[0];
        Assert.InRange(r2.Shift!.MeanDrift, 0, 0.15);               // same distribution as step 1
        Assert.InRange(r2.ReferenceShift!.MeanDrift, 0.9, 1.1);     // still far from the reference
        Assert.Equal(ShiftCalculator.Compute(r2.Statistics!, r0.Statistics!), r2.ReferenceShift);
    }

    /// <summary>KL and JS straight from their definitions, bin by bin, with the library's log of every ratio.</summary>
    private static (double Kl, double Js) Direct(long[] p, long[] q)
    {
        double np = p.Sum(), nq = q.Sum(), k = p.Length, kl = 0, js = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double ps = (p[i] + 0.5) / (np + 0.5 * k), qs = (q[i] + 0.5) / (nq + 0.5 * k);
            kl += ps * Math.Log(ps / qs);
            double pi = p[i] / np, qi = q[i] / nq, mi = (pi + qi) / 2;
            if (pi > 0) js += 0.5 * pi * Math.Log2(pi / mi);
            if (qi > 0) js += 0.5 * qi * Math.Log2(qi / mi);
        }
        return (Math.Max(0, kl), Math.Clamp(js, 0, 1));
    }

    [Theory]
    [InlineData(2048, 2048, 1)]     // the monitor's case: two samples of the default size (equal totals)
    [InlineData(2048, 1500, 2)]     // unequal totals (non-finite values dropped from one sample)
    [InlineData(50_000, 50_000, 3)] // counts beyond the log tables
    [InlineData(7, 7, 4)]           // mostly empty bins
    public void KL_JS_and_W1_match_the_bin_by_bin_definition(int np, int nq, int seed)
    {
        var rng = new Random(seed);
        for (int trial = 0; trial < 50; trial++)
        {
            var p = RandomCounts(rng, np, 66);
            var q = trial % 5 == 0 ? (long[])p.Clone() : RandomCounts(rng, nq, 66);
            if (trial % 7 == 1 && np == nq)
            {
                // A small move: most bins equal, the same total.
                q = (long[])p.Clone();
                for (int move = 0; move < 5; move++)
                {
                    int from = rng.Next(q.Length), to = rng.Next(q.Length);
                    if (q[from] > 0) { q[from]--; q[to]++; }
                }
            }
            var (kl, js) = Direct(p, q);
            Assert.Equal(kl, ShiftCalculator.KlDivergence(p, q), 12);
            Assert.Equal(js, ShiftCalculator.JensenShannon(p, q), 12);
            double w1 = DirectW1(p, q, 0.37);
            Assert.Equal(w1, ShiftCalculator.Wasserstein1(p, q, 0.37), 1e-12 * Math.Max(1, w1));   // relative: W1 is in value units
            // Compute (what the monitor calls, one total per side for the three) gives the functions' values bit for bit.
            var m = ShiftCalculator.Compute(WithCounts(p), WithCounts(q));
            Assert.Equal((ShiftCalculator.KlDivergence(p, q), ShiftCalculator.JensenShannon(p, q), ShiftCalculator.Wasserstein1(p, q, 2.0 / 64)),
                (m.KlDivergence, m.JensenShannon, m.Wasserstein1));
            if (p.SequenceEqual(q))
            {
                Assert.Equal(0.0, ShiftCalculator.KlDivergence(p, q));
                Assert.Equal(0.0, ShiftCalculator.JensenShannon(p, q));
            }
        }
    }

    /// <summary>W1 from the two cumulative distributions, bin edge by bin edge: the interior masses a bin apart, the
    /// underflow and overflow half a bin from their neighbours.</summary>
    private static double DirectW1(long[] p, long[] q, double binWidth)
    {
        double np = p.Sum(), nq = q.Sum(), fp = 0, fq = 0, w = 0;
        for (int i = 0; i < p.Length - 1; i++)
        {
            fp += p[i] / np;
            fq += q[i] / nq;
            w += Math.Abs(fp - fq) * (i == 0 || i == p.Length - 2 ? binWidth / 2 : binWidth);
        }
        return w;
    }

    /// <summary>Statistics that hold only a histogram of <paramref name="counts"/> over [-1, 1) (64 bins plus the two outer ones).</summary>
    private static LayerStatistics WithCounts(long[] counts) => new()
    {
        Count = counts.Sum(), Mean = 0, Std = 1, Min = -1, Max = 1, P15 = 0, P50 = 0, P85 = 0, NearZeroFraction = 0,
        DeadUnitFraction = 0, NanCount = 0, InfCount = 0,
        Histogram = new Histogram(-1, 1, [.. counts]),
    };

    /// <summary>n values dropped into bins with uneven weights (a peaked, skewed shape like an activation histogram).</summary>
    private static long[] RandomCounts(Random rng, int n, int bins)
    {
        var c = new long[bins];
        double centre = rng.Next(bins), width = 1 + rng.NextDouble() * bins / 4;
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double x = centre + width * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            c[Math.Clamp((int)x, 0, bins - 1)]++;
        }
        return c;
    }
}
