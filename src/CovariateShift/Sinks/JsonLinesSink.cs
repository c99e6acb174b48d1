using System.Text.Json;
using CovariateShift.Records;
using CovariateShift.Schema;

namespace CovariateShift.Sinks;

/// <summary>
/// Writes one JSON object per layer per recorded step to a JSON Lines file (schema in <see cref="MetricsLine"/>:
/// the record property names in snake_case, a <c>version</c> field, non-finite numbers as "NaN", "Infinity",
/// "-Infinity"). A step's lines are serialized in memory first and then written with one write and a flush; when the
/// write fails (a full disk) the file is cut back to the end of the last whole step before the error is passed on,
/// so the file holds whole lines only. The file is opened exclusively: a second writer (another monitor) is refused.
/// </summary>
public sealed class JsonLinesSink : IStepSink
{
    private static readonly byte[] NewLine = "\n"u8.ToArray();

    /// <summary>Full paths of the metrics files open in this process (record locks do not separate writers of one process).</summary>
    private static readonly HashSet<string> OpenPaths = [];
    private readonly Stream _stream;
    private readonly MemoryStream _buffer = new();
    private readonly int _histogramEvery;
    private long _written;
    private long _committed;
    private bool _disposed;
    private bool _registered;

    /// <summary>Histogram counts every this many recorded steps unless told otherwise (the one default of the sink,
    /// <see cref="StepSinks.JsonLines"/> and <see cref="MonitorOptions.JsonLinesHistogramEvery"/>).</summary>
    public const int DefaultHistogramEvery = 10;

    /// <summary>Creates (or truncates; with <paramref name="append"/> continues) the file at <paramref name="path"/>, its
    /// directory when missing, and holds it exclusively until disposed. The one way a metrics file is opened:
    /// <see cref="StepSinks.JsonLines"/> and <see cref="MonitorOptions.JsonLinesPath"/> call it.</summary>
    /// <param name="path">The metrics file.</param>
    /// <param name="histogramEvery">Write histogram counts every this many recorded steps (the first included); other
    /// lines carry <c>"histogram": null</c>. Default <see cref="DefaultHistogramEvery"/>.</param>
    /// <param name="append">Keep the file's lines and append after them (a resumed run); default false: truncate.</param>
    /// <exception cref="IOException">The file cannot be created, or another writer holds it; the message names the path.</exception>
    public JsonLinesSink(string path, int histogramEvery = DefaultHistogramEvery, bool append = false)
        : this(Open(Validated(path, histogramEvery), append), System.IO.Path.GetFullPath(path), histogramEvery, registered: true)
    {
    }

    /// <summary>Writes to <paramref name="stream"/> (tests: a stream that fails like a full disk). The sink owns it.</summary>
    internal JsonLinesSink(Stream stream, string path, int histogramEvery = DefaultHistogramEvery)
        : this(stream, path, ValidInterval(histogramEvery), registered: false)
    {
    }

    private JsonLinesSink(Stream stream, string path, int histogramEvery, bool registered)
    {
        _stream = stream;
        Path = path;
        _histogramEvery = histogramEvery;
        _registered = registered;
        _committed = stream.CanSeek ? stream.Position : 0;
    }

    private static int ValidInterval(int histogramEvery)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(histogramEvery, 1);
        return histogramEvery;
    }

    /// <summary>Both arguments checked before anything is opened.</summary>
    private static string Validated(string path, int histogramEvery)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ValidInterval(histogramEvery);
        return path;
    }

    /// <summary>Registers the full path in this process, opens and locks the file, truncates it or seeks to its end.</summary>
    private static FileStream Open(string path, bool append)
    {
        var full = System.IO.Path.GetFullPath(path);
        lock (OpenPaths)
        {
            if (!OpenPaths.Add(full))
                throw new IOException($"The metrics file '{full}' is already being written by another monitor in this process; give each monitor its own JsonLinesPath.");
        }
        FileStream? stream = null;
        try
        {
            var dir = System.IO.Path.GetDirectoryName(full);
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            // No FileStream buffer: each step is one write of whole lines. Readers may open the file while it is written.
            stream = new FileStream(full, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read, bufferSize: 0);
            // A write lock on the whole file (a POSIX record lock on Unix: other processes' writers are refused, readers
            // are not affected), taken before truncating so that a refused writer does not empty the file.
            try
            {
                if (!OperatingSystem.IsMacOS()) stream.Lock(0, long.MaxValue);   // unsupported there: the in-process check only
            }
            catch (IOException e)
            {
                throw new LockedException($"The metrics file '{full}' is already being written by another process; give each monitor its own JsonLinesPath.", e);
            }
            if (append) stream.Seek(0, SeekOrigin.End);
            else stream.SetLength(0);
            return stream;
        }
        catch (Exception e) when (e is LockedException or IOException or UnauthorizedAccessException)
        {
            stream?.Dispose();
            lock (OpenPaths) OpenPaths.Remove(full);
            if (e is LockedException) throw new IOException(e.Message, e.InnerException);
            throw new IOException($"Cannot write the metrics file '{full}': {e.Message} Expected a writable file path.", e);
        }
    }

    private sealed class LockedException(string message, Exception inner) : Exception(message, inner);

    private void Release()
    {
        if (!_registered) return;
        _registered = false;
        lock (OpenPaths) OpenPaths.Remove(Path);
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>Records written before this sink by the run it continues (from <see cref="MonitorOptions.FirstStep"/>, or
    /// the count in the imported <see cref="Records.MonitorState"/>): the histogram cadence counts them, so a resumed run
    /// writes histograms on the same records as a straight run. Set before the first record.</summary>
    internal long RecordsBefore
    {
        get => _recordsBefore;
        set
        {
            _recordsBefore = value;
            _written = value;
        }
    }

    private long _recordsBefore;

    /// <inheritdoc />
    public string Target => Path;

    /// <inheritdoc />
    public void Write(StepRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        bool histograms = _written++ % _histogramEvery == 0;
        _buffer.SetLength(0);
        using (var w = new Utf8JsonWriter(_buffer))
        {
            foreach (var layer in record.Layers)
            {
                JsonSerializer.Serialize(w, MetricsLine.From(layer, record, histograms), MetricsJsonContext.Default.MetricsLine);
                w.Flush();
                _buffer.Write(NewLine);
                w.Reset();
            }
        }
        try
        {
            _stream.Write(_buffer.GetBuffer(), 0, (int)_buffer.Length);
            _stream.Flush();
            _committed += _buffer.Length;
        }
        catch
        {
            // Part of the step may have reached the file: cut it back to whole lines (on a full disk this frees space).
            try
            {
                _stream.SetLength(_committed);
            }
            catch (Exception e) when (e is IOException or NotSupportedException or ObjectDisposedException)
            {
                // nothing more can be done; the original error is the one to report
            }
            throw;
        }
    }

    /// <summary>Reads a number written by this sink (a JSON number or one of the non-finite strings).</summary>
    public static double ReadNumber(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Number => e.GetDouble(),
        JsonValueKind.String => e.GetString() switch
        {
            "NaN" => double.NaN,
            "Infinity" => double.PositiveInfinity,
            "-Infinity" => double.NegativeInfinity,
            var other => throw new FormatException($"Expected a number or NaN/Infinity/-Infinity, got \"{other}\"."),
        },
        _ => throw new FormatException($"Expected a number, got {e.ValueKind}."),
    };

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            _stream.Dispose();
        }
        finally
        {
            _buffer.Dispose();
            Release();
        }
    }
}
