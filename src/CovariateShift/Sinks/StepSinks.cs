using Serilog;

namespace CovariateShift.Sinks;

/// <summary>
/// Factories for the built-in sinks, for <see cref="MonitorOptions.Sinks"/>:
/// <c>Sinks = [StepSinks.JsonLines("runs/a/metrics.jsonl"), StepSinks.TensorBoard("runs/a/tb"), StepSinks.Serilog(log)]</c>.
/// Each opens its file or directory at once (and throws <see cref="IOException"/> naming it when it cannot).
/// </summary>
public static class StepSinks
{
    /// <summary>A JSON Lines metrics file (see <see cref="JsonLinesSink"/>), held exclusively.</summary>
    /// <param name="path">The file (created or truncated; appended with <paramref name="append"/>).</param>
    /// <param name="histogramEvery">Histogram counts every this many recorded steps. Default <see cref="JsonLinesSink.DefaultHistogramEvery"/>.</param>
    /// <param name="append">Continue the file instead of truncating it.</param>
    public static IStepSink JsonLines(string path, int histogramEvery = JsonLinesSink.DefaultHistogramEvery, bool append = false) => new JsonLinesSink(path, histogramEvery, append);

    /// <summary>TensorBoard event files in <paramref name="directory"/> (see <see cref="TensorBoardSink"/>).</summary>
    /// <param name="directory">The event-file directory (created when missing).</param>
    /// <param name="histogramEvery">Histograms every this many recorded steps. Default 10.</param>
    public static IStepSink TensorBoard(string directory, int histogramEvery = 10) => new TensorBoardSink(directory, histogramEvery);

    /// <summary>Structured Serilog events (see <see cref="SerilogSink"/>).</summary>
    public static IStepSink Serilog(ILogger logger) => new SerilogSink(logger);
}
