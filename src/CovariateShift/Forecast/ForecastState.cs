namespace CovariateShift.Forecast;

/// <summary>
/// What a <see cref="DivergenceForecaster"/>'s next warnings depend on (<see cref="DivergenceForecaster.ExportState"/>):
/// saved in <see cref="Records.MonitorState.Forecast"/> with a training checkpoint, so that a resumed run warns at the
/// same steps as a run that was never stopped. Plain data: serializes with System.Text.Json (non-finite numbers need
/// <c>JsonNumberHandling.AllowNamedFloatingPointLiterals</c>: the lowest levels start at +Infinity, the previous loss at NaN).
/// </summary>
/// <param name="Records">Records observed.</param>
/// <param name="Above">Consecutive records at or above the threshold.</param>
/// <param name="Below">Consecutive records below the threshold in the open episode.</param>
/// <param name="InEpisode">Whether a warning episode is open.</param>
/// <param name="Warnings">Warnings started so far.</param>
/// <param name="Score">The last record's score.</param>
/// <param name="Features">The features' state.</param>
public sealed record ForecastState(long Records, int Above, int Below, bool InEpisode, int Warnings, double Score, ForecastFeaturesState Features);

/// <summary>The part of a <see cref="ForecastState"/> that <see cref="ForecastFeatures"/> keeps (see its remarks for the meaning).</summary>
/// <param name="Records">Records observed.</param>
/// <param name="Values">The last values, in the order of <see cref="ForecastFeatures.Names"/>.</param>
/// <param name="LayerOf">The layer behind each value (-1: none).</param>
/// <param name="Averages">The moving averages, in this order: update ratio, its smallest and largest layer's, its slow
/// average, ln loss, its slow average, the loss volatility and its slow average.</param>
/// <param name="LowestRatio">Lowest update-ratio average since the warm-up (+Infinity before).</param>
/// <param name="LowestLoss">Lowest ln-loss average since the warm-up (+Infinity before).</param>
/// <param name="PreviousLoss">ln of the previous recorded loss (NaN before the first).</param>
/// <param name="Gradients">Per layer, in model order: the smoothed ln gradient norm.</param>
/// <param name="Activations">Per layer, in model order: the smoothed ln output RMS.</param>
public sealed record ForecastFeaturesState(
    long Records,
    IReadOnlyList<double> Values,
    IReadOnlyList<int> LayerOf,
    IReadOnlyList<AverageState> Averages,
    double LowestRatio,
    double LowestLoss,
    double PreviousLoss,
    IReadOnlyList<LevelState> Gradients,
    IReadOnlyList<LevelState> Activations);

/// <summary>One exponential moving average: its value and whether it has started.</summary>
/// <param name="Value">The average.</param>
/// <param name="Started">Whether it has seen a value.</param>
public sealed record AverageState(double Value, bool Started);

/// <summary>One layer's smoothed logarithm: fast and slow averages, the lowest level of the fast one, and its flags.</summary>
/// <param name="Average">Fast average.</param>
/// <param name="Slow">Slow average.</param>
/// <param name="Lowest">Lowest fast average since tracking started.</param>
/// <param name="Started">Whether it has seen a value.</param>
/// <param name="Tracking">Whether the lowest level is tracked (the warm-up is over).</param>
public sealed record LevelState(double Average, double Slow, double Lowest, bool Started, bool Tracking);
