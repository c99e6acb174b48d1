using CovariateShift.Training.Runtime;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// log.clef: Serilog events as compact JSON, one whole line each (<see cref="LineFile"/>: a write that fails on a full
/// disk is cut back to the last whole line and the error names the file), appended when a run is resumed.
/// </summary>
public sealed class ClefFileSink : ILogEventSink, IDisposable
{
    private readonly LineFile _file;
    private readonly CompactJsonFormatter _formatter = new();

    /// <summary>Opens (or continues) <paramref name="path"/>.</summary>
    public ClefFileSink(string path) => _file = new LineFile(path);

    /// <summary>The first write error, if any (logging never throws into the training loop; the run reports it at the end).</summary>
    public IOException? Failure { get; private set; }

    /// <inheritdoc />
    public void Emit(LogEvent logEvent)
    {
        ArgumentNullException.ThrowIfNull(logEvent);
        if (Failure is not null) return;
        using var text = new StringWriter(System.Globalization.CultureInfo.InvariantCulture);
        _formatter.Format(logEvent, text);
        try
        {
            _file.Append(text.ToString());
        }
        catch (IOException e)
        {
            Failure = e;
        }
    }

    /// <inheritdoc />
    public void Dispose() => _file.Dispose();
}
