using System.Text;
using System.Text.Json;
using CovariateShift.Records;

namespace CovariateShift.Schema;

/// <summary>Reads a metrics file written by the monitor's JSON Lines sink (this schema version or the first one).</summary>
public static class MetricsReader
{
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
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Read(stream);
    }

    /// <summary>The records in <paramref name="stream"/> (see <see cref="Read(string)"/>).</summary>
    public static MetricsFileContents Read(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var text = reader.ReadToEnd();
        var steps = new List<StepRecord>();
        var current = new List<LayerRecord>();
        double? loss = null;
        int skipped = 0;
        int start = 0;
        while (start < text.Length)
        {
            int end = text.IndexOf('\n', start);
            if (end < 0)
            {
                skipped++;   // cut off: no newline
                break;
            }
            var line = text.AsSpan(start, end - start).Trim();
            start = end + 1;
            if (line.IsEmpty) continue;
            var parsed = Parse(line);
            if (parsed?.ToRecord() is not { } record)
            {
                skipped++;
                continue;
            }
            if (current.Count > 0 && current[0].Step != record.Step)
            {
                steps.Add(new StepRecord(current[0].Step, loss, current, []));
                current = [];
            }
            if (current.Count == 0) loss = parsed.Loss;
            current.Add(record);
        }
        if (current.Count > 0) steps.Add(new StepRecord(current[0].Step, loss, current, []));
        return new MetricsFileContents(steps, skipped);
    }

    private static MetricsLine? Parse(ReadOnlySpan<char> line)
    {
        try
        {
            var current = JsonSerializer.Deserialize(line, MetricsJsonContext.Default.MetricsLine);
            if (current is null || current.Version != 0) return current;
            return JsonSerializer.Deserialize(line, MetricsJsonContext.Default.MetricsLineV1)?.ToCurrent();
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException or ArgumentException)
        {
            return null;
        }
    }
}
