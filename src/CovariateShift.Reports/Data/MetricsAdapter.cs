using System.Collections;
using System.Text;
using System.Text.Json;
using CovariateShift.Sinks;

namespace CovariateShift.Reports.Data;

/// <summary>
/// Reads a monitor's metrics.jsonl into the report's <see cref="RunMetrics"/>. The only place in the report that knows
/// the file's field names (see <see cref="JsonLinesSink"/>). Tolerant by design: a half-written last line, a malformed
/// line or a missing field is skipped or read as "no value", and each kind of problem is reported once in the notes.
/// </summary>
/// <remarks>Long runs write gigabytes, so lines are read with a forward-only reader without allocating per field, and
/// histogram counts are only located on the first pass; they are parsed from the file when a step's counts are asked for.</remarks>
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

    private static readonly byte[][] FieldNames = Fields.Select(f => Encoding.UTF8.GetBytes(f.Field)).ToArray();

    private enum Group
    {
        None, Hist, Shift, RefShift, Grad, Other,
    }

    private static readonly Group[] FieldGroups = Fields.Select(f => f.Group switch
    {
        null => Group.None,
        "shift" => Group.Shift,
        "ref_shift" => Group.RefShift,
        "grad" => Group.Grad,
        _ => Group.Other,
    }).ToArray();

    /// <summary>
    /// Reads <paramref name="path"/>; problems that were skipped are added to <paramref name="notes"/>. Returns null
    /// when the file holds no usable line.
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static RunMetrics? Read(string path, ICollection<string> notes)
    {
        ArgumentNullException.ThrowIfNull(notes);
        if (!File.Exists(path)) throw new FileNotFoundException($"Metrics file not found: '{path}'.", path);
        var fullPath = Path.GetFullPath(path);
        var steps = new SortedSet<long>();
        var layerBytes = new List<byte[]>();
        var layers = new List<LayerInfo>();
        var cells = new List<Cell>();
        var lossByStep = new Dictionary<long, double>();
        int bad = 0, firstBad = 0, lineNumber = 0;
        bool partial = false;
        var scratch = new byte[4096];
        long lastStep = long.MinValue;
        // Streamed in chunks (a long run's file is hundreds of megabytes): whole lines are parsed, the rest carried over.
        var buffer = new byte[1 << 22];
        int filled = 0;
        long bufferOffset = 0;
        using (var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.SequentialScan))
        {
            while (true)
            {
                int n = stream.Read(buffer, filled, buffer.Length - filled);
                filled += n;
                int start = 0;
                while (start < filled)
                {
                    int rel = buffer.AsSpan(start, filled - start).IndexOf((byte)'\n');
                    if (rel < 0) break;
                    int end = start + rel;
                    lineNumber++;
                    long lineStart = bufferOffset + start;
                    var line = buffer.AsSpan(start, end - start);
                    start = end + 1;
                    if (line.Trim(" \r\t"u8).Length == 0) continue;
                    try
                    {
                        // The histogram counts are most of a line's tokens: cut them out (copying the rest into a scratch buffer)
                        // and only note where they are; they are parsed when asked for.
                        long countsOffset = 0;
                        int countsLength = 0;
                        int at = line.IndexOf("\"counts\":["u8);
                        ReadOnlySpan<byte> parseSpan = line;
                        if (at >= 0)
                        {
                            int open = at + 9, close = line[open..].IndexOf((byte)']');
                            if (close > 0)
                            {
                                countsOffset = lineStart + open;
                                countsLength = close + 1;
                                if (scratch.Length < line.Length) scratch = new byte[line.Length * 2];
                                line[..(open + 1)].CopyTo(scratch);
                                line[(open + close)..].CopyTo(scratch.AsSpan(open + 1));
                                parseSpan = scratch.AsSpan(0, line.Length - close + 1);
                            }
                        }
                        var cell = ParseLine(parseSpan, layerBytes, layers, out double loss);
                        if (countsLength > 0 && cell.HasHistogramRange) cell = cell with { CountsOffset = countsOffset, CountsLength = countsLength };
                        if (cell.Step != lastStep)
                        {
                            steps.Add(cell.Step);
                            lastStep = cell.Step;
                        }
                        if (!double.IsNaN(loss)) lossByStep.TryAdd(cell.Step, loss);
                        cells.Add(cell);
                    }
                    catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
                    {
                        if (bad++ == 0) firstBad = lineNumber;
                    }
                }
                if (n == 0)
                {
                    // No newline after it: a line the writer had not finished (a run killed mid-write, or still running).
                    if (buffer.AsSpan(start, filled - start).Trim(" \r\t"u8).Length > 0)
                    {
                        partial = true;
                        lineNumber++;
                    }
                    break;
                }
                // Keep the unfinished line; grow the buffer when one line does not fit.
                Buffer.BlockCopy(buffer, start, buffer, 0, filled - start);
                filled -= start;
                bufferOffset += start;
                if (filled == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
            }
        }
        if (partial) notes.Add($"{Path.GetFileName(path)}: the last line is incomplete (a run still writing or killed mid-write); it was skipped.");
        if (bad > 0) notes.Add($"{Path.GetFileName(path)}: {bad} line(s) are not metrics objects (first: line {firstBad}); they were skipped.");
        if (cells.Count == 0) return null;

        var stepList = steps.ToList();
        var stepIndex = new Dictionary<long, int>(stepList.Count);
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
        var histOffsets = new long[]?[layers.Count];
        var histLengths = new int[]?[layers.Count];
        var histRange = new (double Low, double High)?[layers.Count];
        foreach (var cell in cells)
        {
            int s = stepIndex[cell.Step];
            for (int f = 0; f < Fields.Length; f++) matrices[Fields[f].Key][cell.Layer][s] = cell.Values[f];
            if (cell.CountsLength > 0)
            {
                if (histOffsets[cell.Layer] is null)
                {
                    histOffsets[cell.Layer] = new long[stepList.Count];
                    histLengths[cell.Layer] = new int[stepList.Count];
                }
                // The monitor fixes a layer's edges after its first record with a spread; earlier provisional ranges are dropped.
                if (histRange[cell.Layer] is not { } r || r.Low != cell.HistLow || r.High != cell.HistHigh)
                {
                    Array.Clear(histLengths[cell.Layer]!);
                    histRange[cell.Layer] = (cell.HistLow, cell.HistHigh);
                }
                histOffsets[cell.Layer]![s] = cell.CountsOffset;
                histLengths[cell.Layer]![s] = cell.CountsLength;
            }
        }
        var histograms = new LayerHistograms?[layers.Count];
        for (int l = 0; l < layers.Count; l++)
        {
            if (histRange[l] is { } r) histograms[l] = new LayerHistograms(r.Low, r.High, new LazyCounts(fullPath, histOffsets[l]!, histLengths[l]!));
        }
        var lossSeries = stepList.Select(s => lossByStep.TryGetValue(s, out var v) ? v : double.NaN).ToArray();
        return new RunMetrics(stepList, layers, matrices, histograms, lossSeries);
    }

    /// <summary>One line with a forward-only reader; property names are compared as bytes.</summary>
    private static Cell ParseLine(ReadOnlySpan<byte> line, List<byte[]> layerBytes, List<LayerInfo> layers, out double loss)
    {
        var values = new double[Fields.Length];
        Array.Fill(values, double.NaN);
        var reader = new Utf8JsonReader(line);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw new FormatException("not a JSON object");
        var group = Group.None;
        long step = 0;
        int layer = -1;
        bool hasStep = false;
        string type = "";
        byte[]? newLayer = null;
        double low = double.NaN, high = double.NaN;
        loss = double.NaN;
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                if (group == Group.None) break;
                group = Group.None;
                continue;
            }
            if (reader.TokenType != JsonTokenType.PropertyName) throw new FormatException("unexpected token " + reader.TokenType);
            var name = reader.ValueSpan;
            if (!reader.Read()) throw new FormatException("truncated line");
            if (reader.TokenType == JsonTokenType.StartObject)
            {
                if (group != Group.None)
                {
                    reader.Skip();
                    continue;
                }
                group = name.SequenceEqual("hist"u8) ? Group.Hist : name.SequenceEqual("shift"u8) ? Group.Shift
                    : name.SequenceEqual("ref_shift"u8) ? Group.RefShift : name.SequenceEqual("grad"u8) ? Group.Grad : Group.Other;
                continue;
            }
            if (reader.TokenType == JsonTokenType.StartArray)
            {
                reader.Skip();
                continue;
            }
            if (group == Group.None)
            {
                if (name.SequenceEqual("step"u8))
                {
                    step = reader.GetInt64();
                    hasStep = true;
                    continue;
                }
                if (name.SequenceEqual("layer"u8))
                {
                    if (reader.TokenType != JsonTokenType.String || reader.ValueIsEscaped)
                    {
                        newLayer = Encoding.UTF8.GetBytes(reader.GetString() ?? throw new FormatException("layer is null"));
                        layer = layerBytes.FindIndex(b => b.AsSpan().SequenceEqual(newLayer));
                    }
                    else
                    {
                        var span = reader.ValueSpan;
                        layer = -1;
                        for (int i = 0; i < layerBytes.Count; i++)
                        {
                            if (span.SequenceEqual(layerBytes[i]))
                            {
                                layer = i;
                                break;
                            }
                        }
                        if (layer < 0) newLayer = span.ToArray();
                    }
                    continue;
                }
                if (name.SequenceEqual("type"u8))
                {
                    if (layer < 0 && reader.TokenType == JsonTokenType.String) type = reader.GetString()!;
                    continue;
                }
                if (name.SequenceEqual("loss"u8))
                {
                    loss = Value(ref reader);
                    continue;
                }
            }
            else if (group == Group.Hist)
            {
                if (name.SequenceEqual("low"u8)) low = Value(ref reader);
                else if (name.SequenceEqual("high"u8)) high = Value(ref reader);
                continue;
            }
            for (int f = 0; f < Fields.Length; f++)
            {
                if (FieldGroups[f] == group && name.SequenceEqual(FieldNames[f]))
                {
                    values[f] = Value(ref reader);
                    break;
                }
            }
        }
        if (!hasStep || (layer < 0 && newLayer is null)) throw new FormatException("a metrics line needs step and layer");
        if (layer < 0)
        {
            layer = layerBytes.Count;
            layerBytes.Add(newLayer!);
            layers.Add(new LayerInfo(Encoding.UTF8.GetString(newLayer!), type));
        }
        return new Cell(layer, step, values, low, high, 0, 0);
    }

    private static double Value(ref Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.Number => reader.GetDouble(),
        JsonTokenType.String => reader.ValueSpan switch
        {
            var s when s.SequenceEqual("Infinity"u8) => double.PositiveInfinity,
            var s when s.SequenceEqual("-Infinity"u8) => double.NegativeInfinity,
            _ => double.NaN,
        },
        _ => double.NaN,
    };

    private sealed record Cell(int Layer, long Step, double[] Values, double HistLow, double HistHigh, long CountsOffset, int CountsLength)
    {
        public bool HasHistogramRange => double.IsFinite(HistLow) && double.IsFinite(HistHigh);
    }

    /// <summary>Histogram counts of one layer per step, parsed from the metrics file when asked for.</summary>
    private sealed class LazyCounts(string path, long[] offsets, int[] lengths) : IReadOnlyList<int[]?>, IHistogramPresence
    {
        public int Count => offsets.Length;

        public bool Has(int index) => lengths[index] > 0;

        public int[]? this[int index]
        {
            get
            {
                if (lengths[index] <= 0) return null;
                var buffer = new byte[lengths[index]];
                using (var handle = File.OpenHandle(path))
                {
                    int read = 0;
                    while (read < buffer.Length)
                    {
                        int n = RandomAccess.Read(handle, buffer.AsSpan(read), offsets[index] + read);
                        if (n == 0) return null;
                        read += n;
                    }
                }
                var reader = new Utf8JsonReader(buffer);
                var counts = new List<int>(72);
                try
                {
                    reader.Read();
                    while (reader.Read() && reader.TokenType == JsonTokenType.Number) counts.Add(reader.GetInt32());
                }
                catch (JsonException)
                {
                    return null;   // the file changed since it was read
                }
                return counts.ToArray();
            }
        }

        public IEnumerator<int[]?> GetEnumerator()
        {
            for (int i = 0; i < Count; i++) yield return this[i];
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
