using System.Globalization;
using System.Text;
using System.Text.Json;

namespace CovariateShift.Forecast;

/// <summary>
/// The <c>forecast.jsonl</c> file contract: one JSON object per warning, in step order:
/// <c>{"version":1,"step":S,"horizon":H,"score":X,"signals":[{"layer":L,"statistic":T,"growth":G,"contribution":C},...]}</c>
/// (a non-finite score or growth as the string "Infinity"). <see cref="Line"/> writes a line, <see cref="Read"/> reads a file.
/// </summary>
public static class ForecastFile
{
    /// <summary>The schema version written.</summary>
    public const int Version = 1;

    /// <summary>The usual file name in a run directory.</summary>
    public const string FileName = "forecast.jsonl";

    /// <summary>The line of <paramref name="forecast"/> (UTF-8 JSON, with the trailing newline).</summary>
    public static byte[] Line(DivergenceForecast forecast)
    {
        ArgumentNullException.ThrowIfNull(forecast);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("version", Version);
            w.WriteNumber("step", forecast.Step);
            w.WriteNumber("horizon", forecast.Horizon);
            Number(w, "score", forecast.Score);
            w.WriteStartArray("signals");
            foreach (var s in forecast.Signals)
            {
                w.WriteStartObject();
                w.WriteString("layer", s.Layer);
                w.WriteString("statistic", s.Statistic);
                Number(w, "growth", s.Growth);
                Number(w, "contribution", s.Contribution);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    private static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteString(name, value.ToString(CultureInfo.InvariantCulture) switch { "∞" => "Infinity", "-∞" => "-Infinity", var s => s });
    }

    /// <summary>
    /// The warnings in <paramref name="path"/>, in file order. A missing file holds none (the run had no warning or the
    /// forecaster was off); a line that is not a forecast line of a known version (or cut off) is skipped.
    /// </summary>
    public static IReadOnlyList<DivergenceForecast> Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) return [];
        var result = new List<DivergenceForecast>();
        var text = File.ReadAllText(path, Encoding.UTF8);
        int end = text.LastIndexOf('\n');
        foreach (var line in (end < 0 ? "" : text[..end]).Split('\n'))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var r = doc.RootElement;
                if (r.GetProperty("version").GetInt32() != Version) continue;
                var signals = r.GetProperty("signals").EnumerateArray()
                    .Select(s => new ForecastSignal(s.GetProperty("layer").GetString()!, s.GetProperty("statistic").GetString()!, Number(s.GetProperty("growth")), Number(s.GetProperty("contribution"))))
                    .ToList();
                result.Add(new DivergenceForecast(r.GetProperty("step").GetInt64(), r.GetProperty("horizon").GetInt32(), Number(r.GetProperty("score")), signals));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                // not a forecast line: skipped
            }
        }
        return result;
    }

    private static double Number(JsonElement e) => e.ValueKind == JsonValueKind.String
        ? double.Parse(e.GetString()!, NumberStyles.Float, CultureInfo.InvariantCulture)
        : e.GetDouble();
}
