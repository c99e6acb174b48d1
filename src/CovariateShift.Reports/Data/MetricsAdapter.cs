using System.Text.Json;
using CovariateShift.Sinks;

namespace CovariateShift.Reports.Data;

/// <summary>
/// Reads a monitor's metrics.jsonl into the report's <see cref="RunMetrics"/>. The only place in the report that knows
/// the file's field names (see <see cref="JsonLinesSink"/>). Tolerant by design: a half-written last line, a malformed
/// line or a missing field is skipped or read as "no value", and each kind of problem is reported once in the notes.
/// </summary>
public static class MetricsAdapter
{
    private static readonly (string Key, string? Group, string Field)[] Fields =
    [
        ("mean", null, "mean"), ("std", null, "std"), ("p15", null, "p15"), ("p50", null, "p50"), ("p85", null, "p85"),
        ("near_zero", null, "near_zero"), ("dead_units", null, "dead_units"), ("saturated", null, "saturated"),
        ("mean_drift", "shift", "mean_drift"), ("variance_ratio", "shift", "variance_ratio"), ("kl", "shift", "kl"),
        ("js", "shift", "js"), ("w1", "shift", "w1"),
        ("ref_mean_drift", "ref_shift", "mean_drift"), ("ref_js", "ref_shift", "js"),
        ("grad_norm", "grad", "norm"), ("update_ratio", "grad", "update_ratio"),
    ];

    /// <summary>
    /// Reads <paramref name="path"/>; problems that were skipped are added to <paramref name="notes"/>. Returns null
    /// when the file holds no usable line.
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static RunMetrics? Read(string path, ICollection<string> notes)
    {
        ArgumentNullException.ThrowIfNull(notes);
        if (!File.Exists(path)) throw new FileNotFoundException($"Metrics file not found: '{path}'.", path);
        var steps = new SortedSet<long>();
        var layerOrder = new Dictionary<string, int>(StringComparer.Ordinal);
        var layers = new List<LayerInfo>();
        var cells = new List<Cell>();
        var lossByStep = new Dictionary<long, double>();
        int bad = 0, firstBad = 0, lineNumber = 0;
        bool partial = false;
        var bytes = File.ReadAllBytes(path);
        int start = 0;
        while (start < bytes.Length)
        {
            int end = Array.IndexOf(bytes, (byte)'\n', start);
            lineNumber++;
            if (end < 0)
            {
                // No newline after it: a line the writer had not finished (a run killed mid-write, or still running).
                if (bytes.AsSpan(start).Trim(" \r\t"u8).Length > 0) partial = true;
                break;
            }
            var line = new ReadOnlyMemory<byte>(bytes, start, end - start);
            start = end + 1;
            if (line.Span.Trim(" \r\t"u8).Length == 0) continue;
            try
            {
                var parsed = ParseLine(line.Span);
                if (!layerOrder.TryGetValue(parsed.Layer, out int li))
                {
                    li = layers.Count;
                    layerOrder[parsed.Layer] = li;
                    layers.Add(new LayerInfo(parsed.Layer, parsed.Type));
                }
                steps.Add(parsed.Step);
                if (!double.IsNaN(parsed.Loss)) lossByStep.TryAdd(parsed.Step, parsed.Loss);
                cells.Add(new Cell(li, parsed.Step, parsed.Values, parsed.Histogram));
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                if (bad++ == 0) firstBad = lineNumber;
            }
        }
        if (partial) notes.Add($"{Path.GetFileName(path)}: the last line is incomplete (a run still writing or killed mid-write); it was skipped.");
        if (bad > 0) notes.Add($"{Path.GetFileName(path)}: {bad} line(s) are not metrics objects (first: line {firstBad}); they were skipped.");
        if (cells.Count == 0) return null;

        var stepList = steps.ToList();
        var stepIndex = new Dictionary<long, int>();
        for (int i = 0; i < stepList.Count; i++) stepIndex[stepList[i]] = i;
        var matrices = new Dictionary<string, double[][]>(StringComparer.Ordinal);
        for (int f = 0; f < Fields.Length; f++)
        {
            var m = new double[layers.Count][];
            for (int l = 0; l < layers.Count; l++)
            {
                m[l] = new double[stepList.Count];
                Array.Fill(m[l], double.NaN);
            }
            matrices[Fields[f].Key] = m;
        }
        var histCounts = new int[]?[layers.Count][];
        var histRange = new (double Low, double High)?[layers.Count];
        foreach (var cell in cells)
        {
            int s = stepIndex[cell.Step];
            for (int f = 0; f < Fields.Length; f++) matrices[Fields[f].Key][cell.Layer][s] = cell.Values[f];
            if (cell.Histogram is { } hc)
            {
                histCounts[cell.Layer] ??= new int[]?[stepList.Count];
                // The monitor fixes a layer's edges after its first record with a spread; earlier provisional ranges are dropped.
                if (histRange[cell.Layer] is not { } r || r.Low != hc.Low || r.High != hc.High)
                {
                    Array.Clear(histCounts[cell.Layer]!);
                    histRange[cell.Layer] = (hc.Low, hc.High);
                }
                histCounts[cell.Layer]![s] = hc.Counts;
            }
        }
        var histograms = new LayerHistograms?[layers.Count];
        for (int l = 0; l < layers.Count; l++)
        {
            if (histRange[l] is { } r) histograms[l] = new LayerHistograms(r.Low, r.High, histCounts[l]!);
        }
        var lossSeries = stepList.Select(s => lossByStep.TryGetValue(s, out var v) ? v : double.NaN).ToArray();
        return new RunMetrics(stepList, layers, matrices, histograms, lossSeries);
    }


    private sealed class ParsedLine
    {
        public long Step = -1;
        public string Layer = "";
        public string Type = "";
        public double Loss = double.NaN;
        public double[] Values = [];
        public LayerHistogramCell? Histogram;
    }

    /// <summary>One line with a forward-only reader (no DOM: the files of long runs hold gigabytes).</summary>
    private static ParsedLine ParseLine(ReadOnlySpan<byte> line)
    {
        var result = new ParsedLine { Values = new double[Fields.Length] };
        Array.Fill(result.Values, double.NaN);
        var reader = new Utf8JsonReader(line);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw new FormatException("not a JSON object");
        string? group = null;
        bool hasStep = false, hasLayer = false;
        double low = double.NaN, high = double.NaN;
        List<int>? counts = null;
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                if (group is null) break;
                group = null;
                continue;
            }
            if (reader.TokenType != JsonTokenType.PropertyName) throw new FormatException("unexpected token " + reader.TokenType);
            var name = reader.GetString()!;
            if (!reader.Read()) throw new FormatException("truncated line");
            if (reader.TokenType == JsonTokenType.StartObject)
            {
                if (group is not null) reader.Skip();
                else group = name;
                continue;
            }
            if (reader.TokenType == JsonTokenType.StartArray)
            {
                if (group == "hist" && name == "counts")
                {
                    counts = new List<int>(72);
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) counts.Add(reader.GetInt32());
                }
                else
                {
                    reader.Skip();
                }
                continue;
            }
            if (group is null)
            {
                switch (name)
                {
                    case "step":
                        result.Step = reader.GetInt64();
                        hasStep = true;
                        continue;
                    case "layer":
                        result.Layer = reader.GetString() ?? throw new FormatException("layer is null");
                        hasLayer = true;
                        continue;
                    case "type":
                        result.Type = reader.TokenType == JsonTokenType.String ? reader.GetString()! : "";
                        continue;
                    case "loss":
                        result.Loss = Value(ref reader);
                        continue;
                }
            }
            else if (group == "hist")
            {
                if (name == "low") low = Value(ref reader);
                else if (name == "high") high = Value(ref reader);
                continue;
            }
            int f = FieldIndex(group, name);
            if (f >= 0) result.Values[f] = Value(ref reader);
        }
        if (!hasStep || !hasLayer) throw new FormatException("a metrics line needs step and layer");
        if (counts is not null && double.IsFinite(low) && double.IsFinite(high)) result.Histogram = new LayerHistogramCell(low, high, counts.ToArray());
        return result;
    }

    private static int FieldIndex(string? group, string name)
    {
        for (int i = 0; i < Fields.Length; i++)
        {
            if (Fields[i].Group == group && Fields[i].Field == name) return i;
        }
        return -1;
    }

    private static double Value(ref Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.Number => reader.GetDouble(),
        JsonTokenType.String => reader.GetString() switch
        {
            "NaN" => double.NaN,
            "Infinity" => double.PositiveInfinity,
            "-Infinity" => double.NegativeInfinity,
            _ => double.NaN,
        },
        _ => double.NaN,
    };

    private sealed record LayerHistogramCell(double Low, double High, int[] Counts);

    private sealed record Cell(int Layer, long Step, double[] Values, LayerHistogramCell? Histogram);
}
