using System.Text.Json;
using CovariateShift.Sinks;

namespace CovariateShift.Training.Analysis;

/// <summary>Reads the JSON Lines metrics file the monitor writes (see <see cref="JsonLinesSink"/> for the format).</summary>
public static class MetricsFile
{
    /// <summary>
    /// Every whole line of <paramref name="path"/> as a <see cref="MetricsRow"/>. A last line without its newline (a run
    /// killed while writing) is ignored; any other malformed line is an error naming the file and line number.
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">A line is not a metrics object.</exception>
    public static IReadOnlyList<MetricsRow> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Metrics file not found: '{path}'.", path);
        var text = File.ReadAllText(path);
        var lines = text.Split('\n');
        var rows = new List<MetricsRow>();
        // The piece after the last '\n' is a partial line (or empty): only newline-terminated lines are complete.
        for (int i = 0; i < lines.Length - 1; i++)
        {
            if (lines[i].Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(lines[i]);
                rows.Add(Parse(doc.RootElement));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"'{path}' line {i + 1} is not a metrics object: {e.Message}", e);
            }
        }
        return rows;
    }

    private static MetricsRow Parse(JsonElement e)
    {
        bool called = e.GetProperty("called").GetBoolean();
        double? Shift(string name)
        {
            var s = e.GetProperty("shift");
            return s.ValueKind == JsonValueKind.Object ? JsonLinesSink.ReadNumber(s.GetProperty(name)) : null;
        }
        return new MetricsRow(
            e.GetProperty("step").GetInt64(),
            e.GetProperty("layer").GetString()!,
            e.GetProperty("type").GetString()!,
            called ? JsonLinesSink.ReadNumber(e.GetProperty("mean")) : double.NaN,
            called ? JsonLinesSink.ReadNumber(e.GetProperty("std")) : double.NaN,
            Shift("mean_drift"), Shift("variance_ratio"), Shift("js"));
    }
}
