namespace CovariateShift.Records;

/// <summary>What kind of trouble an <see cref="Anomaly"/> reports.</summary>
public enum AnomalyKind
{
    /// <summary>NaN or Inf values in a layer's output.</summary>
    NonFiniteActivation,
    /// <summary>NaN or Inf in a layer's gradients.</summary>
    NonFiniteGradient,
    /// <summary>Gradient norm below <see cref="MonitorOptions.VanishingGradientThreshold"/>.</summary>
    VanishingGradient,
    /// <summary>Gradient norm above <see cref="MonitorOptions.ExplodingGradientThreshold"/>.</summary>
    ExplodingGradient,
    /// <summary>More than half of the units (features or channels) are dead: near zero for the whole batch
    /// (<see cref="LayerStatistics.DeadUnitFraction"/> above one half).</summary>
    DeadUnits,
    /// <summary>More than half of a sigmoid/tanh output is saturated.</summary>
    Saturated,
    /// <summary>Variance ratio to the previous recorded step outside [0.5, 2].</summary>
    VarianceShift,
    /// <summary>A hooked layer did not fire during a recorded training step.</summary>
    LayerNotCalled,
    /// <summary>The divergence forecaster (<see cref="MonitorOptions.Forecast"/>) predicts that the loss becomes non-finite
    /// or explodes within <see cref="Forecast.DivergenceForecast.Horizon"/> steps; the details are in <see cref="Anomaly.Forecast"/>.
    /// Present only on the record where a warning episode starts.</summary>
    DivergenceAhead,
}

/// <summary>An anomaly found at a recorded step, with a hint about what to check.</summary>
public sealed record Anomaly(long Step, string Layer, AnomalyKind Kind, double Value, string Hint)
{
    /// <summary>For <see cref="AnomalyKind.DivergenceAhead"/>: the forecast (horizon, score, signals); null for other kinds.</summary>
    public Forecast.DivergenceForecast? Forecast { get; init; }
}
