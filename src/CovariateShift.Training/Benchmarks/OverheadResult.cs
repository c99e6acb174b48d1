namespace CovariateShift.Training.Benchmarks;

/// <summary>One benchmark configuration's outcome.</summary>
/// <param name="Model">mlp or cnn.</param>
/// <param name="RecordEvery">Monitor records every this many steps.</param>
/// <param name="Gradients">Whether the monitored loop also called RecordGradients() every step.</param>
/// <param name="Ratio">Median over A/B pairs of (mean step time with the monitor) / (mean step time without).</param>
/// <param name="PlainMs">Median mean step time without the monitor, milliseconds.</param>
/// <param name="MonitoredMs">Median mean step time with the monitor, milliseconds.</param>
/// <param name="Pairs">Number of A/B pairs.</param>
/// <param name="StepsPerBlock">Timed steps in each A or B block.</param>
/// <param name="RatioQ1">First quartile of the per-pair ratios.</param>
/// <param name="RatioQ3">Third quartile of the per-pair ratios.</param>
public sealed record OverheadResult(
    string Model, int RecordEvery, bool Gradients, double Ratio, double PlainMs, double MonitoredMs,
    int Pairs, int StepsPerBlock, double RatioQ1, double RatioQ3);
