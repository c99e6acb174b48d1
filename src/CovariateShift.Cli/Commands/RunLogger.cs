using System.Globalization;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Filters;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// The logger of a training or fine-tuning run: Debug and up to the run's log.clef, except the monitor's per-layer
/// Debug events (metrics.jsonl holds the same values) unless asked for; Information and up to the console (or, with a
/// live progress bar, Warnings above it), except the monitor's per-step summaries (its warnings are shown). The
/// monitor's events are told apart by their source context (<see cref="ActivationMonitor.LogSourceContext"/>).
/// </summary>
internal static class RunLogger
{
    private static readonly Func<LogEvent, bool> FromMonitor = Matching.FromSource(ActivationMonitor.LogSourceContext);

    /// <summary>Creates the run's logger writing to <paramref name="clef"/> and the console.</summary>
    public static Logger Create(ILogEventSink clef, bool logLayers, bool live)
    {
        var config = new LoggerConfiguration().MinimumLevel.Debug()
            .WriteTo.Logger(file => file
                .Filter.ByExcluding(e => !logLayers && e.Level < LogEventLevel.Information && FromMonitor(e))
                .WriteTo.Sink(clef));
        config = live
            ? config.WriteTo.Logger(c => c.Filter.ByExcluding(IsMonitorDetail).WriteTo.Sink(new ConsoleProgress.Sink(), LogEventLevel.Warning))
            : config.WriteTo.Logger(c => c.Filter.ByExcluding(IsMonitorDetail)
                .WriteTo.Console(restrictedToMinimumLevel: LogEventLevel.Information, formatProvider: CultureInfo.InvariantCulture));
        return config.CreateLogger();
    }

    /// <summary>The monitor's events below Warning: kept off the console.</summary>
    public static bool IsMonitorDetail(LogEvent e) => e.Level < LogEventLevel.Warning && FromMonitor(e);
}
