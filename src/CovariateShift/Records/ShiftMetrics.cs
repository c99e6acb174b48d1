namespace CovariateShift.Records;

/// <summary>
/// How far a layer's output distribution moved between two recorded steps (or from a reference snapshot).
/// Definitions (t = current, s = the earlier step or the reference):
/// <list type="bullet">
/// <item><see cref="MeanDrift"/> = |E[x_t] - E[x_s]|</item>
/// <item><see cref="VarianceRatio"/> = Var[x_t] / (Var[x_s] + 1e-8)</item>
/// <item><see cref="KlDivergence"/> = KL(p_t || p_s) = sum_i p_t,i ln(p_t,i / p_s,i) in nats, over the histogram bins
/// (underflow and overflow included) with additive smoothing p_i = (c_i + 0.5) / (n + 0.5 K), K = number of bins.</item>
/// <item><see cref="JensenShannon"/> = JS(p_t, p_s) in bits (base-2 logarithm), unsmoothed: symmetric, always finite, in [0, 1].</item>
/// <item><see cref="Wasserstein1"/> = sum_i |F_t(i) - F_s(i)| * binWidth over the interior bin edges: the earth mover's distance
/// between the two histograms, in the units of the activation (underflow mass sits at the low edge, overflow at the high edge).</item>
/// </list>
/// </summary>
public sealed record ShiftMetrics(
    double MeanDrift,
    double VarianceRatio,
    double KlDivergence,
    double JensenShannon,
    double Wasserstein1);
