using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace CovariateShift.Tests.Support;

/// <summary>A Serilog sink that keeps every event in memory.</summary>
internal sealed class CollectingLogSink : ILogEventSink
{
    public List<LogEvent> Events { get; } = [];

    public void Emit(LogEvent logEvent) => Events.Add(logEvent);

    public static (ILogger Logger, CollectingLogSink Sink) Create(LogEventLevel minimum = LogEventLevel.Debug)
    {
        var sink = new CollectingLogSink();
        var logger = new LoggerConfiguration().MinimumLevel.Is(minimum).WriteTo.Sink(sink).CreateLogger();
        return (logger, sink);
    }

    public static double Scalar(LogEvent e, string name) =>
        Convert.ToDouble(((ScalarValue)e.Properties[name]).Value, System.Globalization.CultureInfo.InvariantCulture);

    public static string Text(LogEvent e, string name) => ((ScalarValue)e.Properties[name]).Value?.ToString() ?? "";
}
