using CovariateShift.Records;
using Serilog;

namespace CovariateShift.Sinks;

/// <summary>
/// Hands each record to every sink and contains their failures (as Serilog's safe aggregate sink does for log
/// sinks): a sink that throws is reported once through the logger, with its target and the error, disposed and left
/// out from then on, and training goes on. With <c>strict</c> the exception is rethrown instead (tests).
/// </summary>
internal sealed class SinkFanOut : IDisposable
{
    private readonly List<IStepSink> _sinks;
    private readonly ILogger _log;
    private readonly bool _strict;

    public SinkFanOut(IEnumerable<IStepSink> sinks, ILogger log, bool strict)
    {
        _sinks = [.. sinks];
        _log = log;
        _strict = strict;
    }

    /// <summary>The sinks still enabled.</summary>
    public IReadOnlyList<IStepSink> Sinks => _sinks;

    public void Write(StepRecord record)
    {
        foreach (var sink in _sinks.ToArray())
        {
            try
            {
                sink.Write(record);
            }
            catch (Exception e) when (!_strict)
            {
                _sinks.Remove(sink);
                _log.Warning(e, "The monitor's sink {Sink} writing {Target} failed at step {Step} and is disabled; training goes on: {Error}",
                    sink.GetType().Name, sink.Target, record.Step, e.Message);
                DisposeQuietly(sink);
            }
        }
    }

    private void DisposeQuietly(IStepSink sink)
    {
        try
        {
            sink.Dispose();
        }
        catch (Exception e) when (!_strict)
        {
            _log.Warning(e, "Closing the monitor's sink {Sink} ({Target}) failed: {Error}", sink.GetType().Name, sink.Target, e.Message);
        }
    }

    public void Dispose()
    {
        foreach (var sink in _sinks) DisposeQuietly(sink);
        _sinks.Clear();
    }
}
