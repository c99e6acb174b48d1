namespace CovariateShift.Training.Analysis;

/// <summary>One line of a monitor's metrics.jsonl: a layer at a recorded step (the fields the analyses use).</summary>
/// <param name="Step">Training step.</param>
/// <param name="Layer">Dotted layer name.</param>
/// <param name="LayerType">Module type name.</param>
/// <param name="Mean">Mean of the output (NaN when the layer did not run).</param>
/// <param name="Std">Standard deviation of the output.</param>
/// <param name="MeanDrift">Shift from the previous record: |Δ mean|; null on a layer's first record.</param>
/// <param name="VarianceRatio">Shift from the previous record: variance ratio; null on a layer's first record.</param>
/// <param name="JensenShannon">Shift from the previous record: Jensen-Shannon divergence in bits; null on a layer's first record.</param>
public sealed record MetricsRow(
    long Step, string Layer, string LayerType, double Mean, double Std,
    double? MeanDrift, double? VarianceRatio, double? JensenShannon);
