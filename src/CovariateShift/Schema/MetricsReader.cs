using System.Buffers;
using System.Text;
using System.Text.Json;
using CovariateShift.Records;

namespace CovariateShift.Schema;

/// <summary>Reads a metrics file written by the monitor's JSON Lines sink (this schema version or the first one).</summary>
public static class MetricsReader
{
    // The bytes are read in blocks of this size; a line longer than a block grows the buffer.
    private const int BlockSize = 1 << 20;

    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    private static ReadOnlySpan<byte> VersionName => "\"version\""u8;

    /// <summary>
    /// The records of <paramref name="path"/>. Lines that cannot be read (not JSON, not a metrics line, or a last line
    /// without its newline: a run killed while writing) are skipped and counted in
    /// <see cref="MetricsFileContents.SkippedLines"/>; empty lines are ignored.
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file (the message names it).</exception>
    public static MetricsFileContents Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Metrics file not found: '{path}'. Expected a metrics.jsonl written by the monitor.", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.SequentialScan);
        return Read(stream);
    }

    /// <summary>The records in <paramref name="stream"/> (see <see cref="Read(string)"/>).</summary>
    public static MetricsFileContents Read(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        // The file is UTF-8: lines are split on '\n' bytes and deserialized from their bytes (no transcoding to UTF-16,
        // no string per line); only the unfinished tail of a block is carried over to the next read.
        var buffer = ArrayPool<byte>.Shared.Rent(BlockSize);
        var collector = new Collector();
        try
        {
            int filled = 0;
            bool first = true;
            while (true)
            {
                if (filled == buffer.Length)
                {
                    var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, filled).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                int read = stream.Read(buffer, filled, buffer.Length - filled);
                if (read == 0) break;
                filled += read;
                int start = 0;
                if (first)
                {
                    if (filled < Utf8Bom.Length && Utf8Bom.StartsWith(buffer.AsSpan(0, filled))) continue;   // maybe a BOM: read on
                    if (buffer.AsSpan(0, filled).StartsWith(Utf8Bom)) start = Utf8Bom.Length;
                    first = false;
                }
                while (true)
                {
                    int end = buffer.AsSpan(start, filled - start).IndexOf((byte)'\n');
                    if (end < 0) break;
                    collector.Add(buffer.AsSpan(start, end));
                    start += end + 1;
                }
                buffer.AsSpan(start, filled - start).CopyTo(buffer);
                filled -= start;
            }
            if (filled > 0 && !(first && Utf8Bom.StartsWith(buffer.AsSpan(0, filled)))) collector.Skipped++;   // cut off: no newline
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return collector.Finish();
    }

    private sealed class Collector
    {
        private readonly List<StepRecord> _steps = [];
        private List<LayerRecord> _current = [];
        private MetricsLine? _first;

        public int Skipped { get; set; }

        public void Add(ReadOnlySpan<byte> line)
        {
            line = line[Ascii.Trim(line)];
            if (line.IsEmpty) return;
            var parsed = Parse(line);
            if (parsed?.ToRecord() is not { } record)
            {
                Skipped++;
                return;
            }
            if (_current.Count > 0 && _current[0].Step != record.Step)
            {
                _steps.Add(StepOf());
                _current = [];
            }
            if (_current.Count == 0) _first = parsed;
            _current.Add(record);
        }

        /// <summary>The step of the lines collected so far: its fields from its first line (lines written before the
        /// timing fields have none: null).</summary>
        private StepRecord StepOf() => new(_current[0].Step, _first?.Loss, _current, [])
        {
            MonitorMs = _first?.MonitorMs,
            StepMs = _first?.StepMs,
            StepsSincePrevious = _first?.StepsSincePrevious,
        };

        public MetricsFileContents Finish()
        {
            if (_current.Count > 0) _steps.Add(StepOf());
            return new MetricsFileContents(_steps, Skipped);
        }
    }

    private static MetricsLine? Parse(ReadOnlySpan<byte> line)
    {
        try
        {
            // A line without a "version" name is of the first format: deserialized once, in that shape. A line with
            // one is read in the current shape (and in the first one if its version is 0, as before).
            if (line.IndexOf(VersionName) >= 0)
            {
                var current = JsonSerializer.Deserialize(line, MetricsJsonContext.Default.MetricsLine);
                if (current is null || current.Version != 0) return current;
            }
            return JsonSerializer.Deserialize(line, MetricsJsonContext.Default.MetricsLineV1)?.ToCurrent();
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException or ArgumentException)
        {
            return null;
        }
    }
}
