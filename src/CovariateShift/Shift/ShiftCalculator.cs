using CovariateShift.Records;

namespace CovariateShift.Shift;

/// <summary>
/// Shift metrics between two statistics of the same layer (plain C# on small arrays; definitions in
/// <see cref="ShiftMetrics"/>).
/// </summary>
public static class ShiftCalculator
{
    /// <summary>Added to the earlier variance in the variance ratio.</summary>
    public const double VarianceEpsilon = 1e-8;

    /// <summary>Pseudo-count added to every histogram bin before the KL divergence (Krichevsky-Trofimov / Jeffreys prior).</summary>
    public const double KlPseudoCount = 0.5;

    /// <summary>Shift of <paramref name="current"/> relative to <paramref name="earlier"/>. The histogram metrics are NaN
    /// when either has no histogram (a record read from a metrics line written without one).</summary>
    /// <exception cref="ArgumentException">The histograms have different edges (they come from different layers).</exception>
    public static ShiftMetrics Compute(LayerStatistics current, LayerStatistics earlier)
    {
        ArgumentNullException.ThrowIfNull(current);
        ArgumentNullException.ThrowIfNull(earlier);
        double drift = Math.Abs(current.Mean - earlier.Mean);
        double ratio = current.Variance / (earlier.Variance + VarianceEpsilon);
        if (current.Histogram is not { } p || earlier.Histogram is not { } q)
            return new ShiftMetrics(drift, ratio, double.NaN, double.NaN, double.NaN);
        if (p.Counts.Length != q.Counts.Length || p.Low != q.Low || p.High != q.High)
            throw new ArgumentException($"Histograms are not comparable: [{p.Low}, {p.High}) with {p.Bins} bins vs [{q.Low}, {q.High}) with {q.Bins} bins.");
        ReadOnlySpan<long> pc = p.Counts.AsSpan(), qc = q.Counts.AsSpan();
        long np = Total(pc), nq = Total(qc);   // once for the three metrics
        return new ShiftMetrics(
            MeanDrift: drift,
            VarianceRatio: ratio,
            KlDivergence: Kl(pc, qc, np, nq),
            JensenShannon: Js(pc, qc, np, nq),
            Wasserstein1: W1(pc, qc, np, nq, p.BinWidth));
    }

    /// <summary>
    /// KL(p || q) in nats from two count vectors over the same bins, each smoothed as
    /// (c_i + <see cref="KlPseudoCount"/>) / (n + K * <see cref="KlPseudoCount"/>). 0 for identical counts; NaN when either
    /// vector is empty (no values at all).
    /// </summary>
    public static double KlDivergence(ReadOnlySpan<long> p, ReadOnlySpan<long> q)
    {
        CheckSameLength(p, q);
        return Kl(p, q, Total(p), Total(q));
    }

    private static double Kl(ReadOnlySpan<long> p, ReadOnlySpan<long> q, double np, double nq)
    {
        if (np == 0 || nq == 0) return double.NaN;
        int k = p.Length;
        double zp = np + k * KlPseudoCount, zq = nq + k * KlPseudoCount;
        // log(p_i / q_i) = log(c_p + a) - log(c_q + a) + log(zq / zp): the logs of counts come from a table (counts are
        // the small integers of a sample), one log per call instead of one per bin.
        double weighted = 0;
        for (int i = 0; i < k; i++)
        {
            long a = p[i], b = q[i];
            if (a == b) continue;   // log(c + a) - log(c + a) = 0 exactly; the constant term is added once below
            weighted += (a + KlPseudoCount) * (LogHalf(a) - LogHalf(b));
        }
        return Math.Max(0.0, weighted / zp + Math.Log(zq / zp));
    }

    /// <summary>
    /// Jensen-Shannon divergence in bits: JS = H(m) - (H(p) + H(q)) / 2 with m = (p + q) / 2, on the normalized counts
    /// (no smoothing needed: always finite, symmetric, in [0, 1]). NaN when either vector is empty.
    /// </summary>
    public static double JensenShannon(ReadOnlySpan<long> p, ReadOnlySpan<long> q)
    {
        CheckSameLength(p, q);
        return Js(p, q, Total(p), Total(q));
    }

    private static double Js(ReadOnlySpan<long> p, ReadOnlySpan<long> q, double np, double nq)
    {
        if (np == 0 || nq == 0) return double.NaN;
        if (np == nq)
        {
            // Equal totals n (two samples of one size): p_i / m_i = 2 c_p / (c_p + c_q), so each term is
            // c_p (1 + log2 c_p - log2 (c_p + c_q)) / (2 n), with the logs of counts from a table; bins with equal counts add 0.
            // Two sums, one per side, so that consecutive adds do not wait on each other.
            double fromP = 0, fromQ = 0;
            for (int i = 0; i < p.Length; i++)
            {
                long a = p[i], b = q[i];
                if (a == b) continue;
                double both = Log2Count(a + b);
                if (a > 0) fromP += a * (1 + Log2Count(a) - both);
                if (b > 0) fromQ += b * (1 + Log2Count(b) - both);
            }
            return Math.Clamp((fromP + fromQ) / (2 * np), 0.0, 1.0);
        }
        double js = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double pi = p[i] / np, qi = q[i] / nq, mi = (pi + qi) / 2;
            if (pi > 0) js += 0.5 * pi * Math.Log2(pi / mi);
            if (qi > 0) js += 0.5 * qi * Math.Log2(qi / mi);
        }
        return Math.Clamp(js, 0.0, 1.0);
    }

    /// <summary>
    /// Wasserstein-1 (earth mover's) distance between two histograms over the same bins, in the units of the values:
    /// integral of |F_p(x) - F_q(x)| dx where the interior bins' mass sits at their centres, the underflow mass at the
    /// low edge and the overflow mass at the high edge (so consecutive positions are half a bin apart at both ends,
    /// a bin apart inside). NaN when either vector is empty.
    /// </summary>
    public static double Wasserstein1(ReadOnlySpan<long> p, ReadOnlySpan<long> q, double binWidth)
    {
        CheckSameLength(p, q);
        return W1(p, q, Total(p), Total(q), binWidth);
    }

    /// <summary>
    /// |F_p - F_q| at each step is |C_p nq - C_q np| / (np nq) with the cumulative counts C: the numerators are summed
    /// (whole numbers, exact in double up to 2^53, weighted 1 or 1/2 for a half-bin gap) and divided once.
    /// </summary>
    private static double W1(ReadOnlySpan<long> p, ReadOnlySpan<long> q, double np, double nq, double binWidth)
    {
        if (np == 0 || nq == 0) return double.NaN;
        int last = p.Length - 1;
        long cp = 0, cq = 0;
        double halves = 0;   // sum of |C_p nq - C_q np| in half bins
        for (int i = 0; i < last; i++)
        {
            cp += p[i];
            cq += q[i];
            double gap = Math.Abs(cp * nq - cq * np);
            halves += i == 0 || i == last - 1 ? gap : 2 * gap;
        }
        return halves * (binWidth / 2) / (np * nq);
    }

    /// <summary>Counts below this have their logs in the tables (twice the default sample size, so sums of two counts fit).</summary>
    private const int TableCounts = 4097;

    /// <summary>log(c + <see cref="KlPseudoCount"/>) for counts c below <see cref="TableCounts"/>.</summary>
    private static readonly double[] LogHalfTable = MakeTable(c => Math.Log(c + KlPseudoCount));

    /// <summary>log2(c) for counts c below <see cref="TableCounts"/> (entry 0 unused).</summary>
    private static readonly double[] Log2Table = MakeTable(c => c == 0 ? 0 : Math.Log2(c));

    private static double[] MakeTable(Func<int, double> f)
    {
        var table = new double[TableCounts];
        for (int c = 0; c < table.Length; c++) table[c] = f(c);
        return table;
    }

    private static double LogHalf(long c) => (ulong)c < TableCounts ? LogHalfTable[c] : Math.Log(c + KlPseudoCount);

    private static double Log2Count(long c) => (ulong)c < TableCounts ? Log2Table[c] : Math.Log2(c);

    /// <summary>The total count, summed in integers (exact, and no chain of floating-point adds); as a double it is the
    /// same as a sum in double for any total below 2^53.</summary>
    private static long Total(ReadOnlySpan<long> c)
    {
        long s = 0;
        foreach (var v in c) s += v;
        return s;
    }

    private static void CheckSameLength(ReadOnlySpan<long> p, ReadOnlySpan<long> q)
    {
        if (p.Length != q.Length)
            throw new ArgumentException($"Count vectors differ in length: {p.Length} vs {q.Length}.");
    }
}
