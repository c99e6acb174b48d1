using System.Globalization;
using System.Text.Json;
using CovariateShift.Forecast;
using CovariateShift.Records;
using CovariateShift.Sinks;

namespace CovariateShift.Reports.Data;

/// <summary>
/// Loads run directories for the report: metrics.jsonl (the monitor), training.jsonl or summary.json (curves),
/// config.json / model.json / summary.json / finetune.json (facts), log.clef (warnings), forecast.jsonl (the divergence forecaster's
/// warnings, through <see cref="ForecastFile.Read"/>), ics.jsonl (the gradient-ICS probe). Every file
/// is optional; what is missing, empty, half-written or unreadable is skipped and said in <see cref="RunData.Notes"/>.
/// </summary>
public static class RunLoader
{
    /// <summary>File names read in a run directory.</summary>
    public const string MetricsFile = "metrics.jsonl", TrainingFile = "training.jsonl", ConfigFile = "config.json",
        ModelFile = "model.json", SummaryFile = "summary.json", LogFile = "log.clef", IcsFile = "ics.jsonl", FineTuneFile = "finetune.json";

    /// <summary>
    /// Loads every directory in <paramref name="directories"/> (in order, names made unique).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">A path does not exist (or is a file); the message names it.</exception>
    public static IReadOnlyList<RunData> LoadAll(IReadOnlyList<string> directories)
    {
        ArgumentNullException.ThrowIfNull(directories);
        if (directories.Count == 0) throw new ArgumentException("No run directory given; expected at least one.", nameof(directories));
        var full = directories.Select(d => Path.GetFullPath(d)).ToList();
        foreach (var (d, f) in directories.Zip(full))
        {
            if (!System.IO.Directory.Exists(f))
            {
                throw new DirectoryNotFoundException(File.Exists(f)
                    ? $"Run directory '{d}' is a file; expected a directory holding metrics.jsonl."
                    : $"Run directory '{d}' does not exist; expected a directory holding metrics.jsonl.");
            }
        }
        var names = UniqueNames(full);
        var runs = new RunData[full.Count];
        Parallel.For(0, full.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) },
            i => runs[i] = Load(full[i], names[i]));
        return runs;
    }

    /// <summary>Loads one run directory under the display name <paramref name="name"/>.</summary>
    public static RunData Load(string directory, string name)
    {
        var notes = new List<string>();
        RunMetrics? metrics = null;
        var metricsPath = Path.Combine(directory, MetricsFile);
        if (!File.Exists(metricsPath))
        {
            notes.Add($"no {MetricsFile}: no heatmaps, percentiles or histograms for this run.");
        }
        else
        {
            try
            {
                metrics = MetricsAdapter.Read(metricsPath, notes);
                if (metrics is null) notes.Add($"{MetricsFile} holds no complete metrics line.");
            }
            catch (IOException e)
            {
                notes.Add($"{MetricsFile} could not be read: {e.Message}");
            }
        }
        if (metrics is not null) metrics = MergeIcs(directory, metrics, notes);

        var (train, test) = ReadTraining(directory, metrics, notes);
        var forecasts = ReadForecasts(directory, notes);
        // forecast.jsonl holds every forecast warning with its horizon, score and signals; log.clef's DivergenceAhead
        // events are the same warnings, so they are read only when the run has no forecast.jsonl (a user's own loop).
        var warnings = ReadWarnings(directory, notes, forecasts is null ? null : nameof(AnomalyKind.DivergenceAhead));
        if (forecasts is not null) warnings = [.. warnings.Concat(ForecastWarnings(forecasts)).OrderBy(w => w.FirstStep).ThenBy(w => w.Layer, StringComparer.Ordinal)];
        var facts = ReadFacts(directory, notes);
        return new RunData(name, directory, metrics, train, test, warnings, facts, notes) { Forecasts = forecasts ?? [] };
    }

    private static List<string> UniqueNames(IReadOnlyList<string> dirs)
    {
        // The last path component, extended by parent components until every name differs.
        var parts = dirs.Select(d => d.TrimEnd(Path.DirectorySeparatorChar).Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries)).ToList();
        for (int depth = 1; ; depth++)
        {
            var names = parts.Select(p => string.Join('/', p.Skip(Math.Max(0, p.Length - depth)))).ToList();
            if (names.Distinct(StringComparer.Ordinal).Count() == names.Count || depth > parts.Max(p => p.Length))
            {
                return names.Select((n, i) => names.Take(i).Contains(n) ? $"{n} ({i + 1})" : n).ToList();
            }
        }
    }

    private static IEnumerable<JsonElement> JsonLines(string path, List<string> notes, List<JsonDocument> keep)
    {
        var text = File.ReadAllText(path);
        var lines = text.Split('\n');
        int bad = 0;
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            if (i == lines.Length - 1)
            {
                notes.Add($"{Path.GetFileName(path)}: the last line is incomplete; it was skipped.");
                break;
            }
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(lines[i]);
            }
            catch (JsonException)
            {
                bad++;
                continue;
            }
            keep.Add(doc);
            yield return doc.RootElement;
        }
        if (bad > 0) notes.Add($"{Path.GetFileName(path)}: {bad} malformed line(s) skipped.");
    }

    private static double Number(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v)) return double.NaN;
        return v.ValueKind switch
        {
            JsonValueKind.Number => v.GetDouble(),
            JsonValueKind.String => double.TryParse(v.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : double.NaN,
            _ => double.NaN,
        };
    }

    private static (List<CurvePoint> Train, List<CurvePoint> Test) ReadTraining(string dir, RunMetrics? metrics, List<string> notes)
    {
        var train = new List<CurvePoint>();
        var test = new List<CurvePoint>();
        var path = Path.Combine(dir, TrainingFile);
        if (File.Exists(path))
        {
            var docs = new List<JsonDocument>();
            try
            {
                foreach (var e in JsonLines(path, notes, docs))
                {
                    if (!e.TryGetProperty("step", out var s) || s.ValueKind != JsonValueKind.Number) continue;
                    var split = e.TryGetProperty("split", out var sp) ? sp.GetString() : null;
                    if (split == "test") test.Add(new CurvePoint(s.GetInt64(), Number(e, "loss"), Number(e, "accuracy")));
                    else if (split == "train") train.Add(new CurvePoint(s.GetInt64(), Number(e, "loss"), null));
                }
            }
            catch (IOException e)
            {
                notes.Add($"{TrainingFile} could not be read: {e.Message}");
            }
            finally
            {
                foreach (var d in docs) d.Dispose();
            }
        }
        if (train.Count == 0 && metrics is not null)
        {
            for (int i = 0; i < metrics.Steps.Count; i++)
            {
                train.Add(new CurvePoint(metrics.Steps[i], metrics.Loss[i], null));
            }
            if (train.Count > 0 && !File.Exists(path)) notes.Add($"no {TrainingFile}: the training-loss curve is the loss at the monitor's recorded steps.");
        }
        if (test.Count == 0)
        {
            var summary = Path.Combine(dir, SummaryFile);
            if (File.Exists(summary))
            {
                try
                {
                    using var doc = JsonDocument.Parse(File.ReadAllText(summary));
                    if (doc.RootElement.TryGetProperty("evaluations", out var ev) && ev.ValueKind == JsonValueKind.Array)
                    {
                        foreach (var e in ev.EnumerateArray())
                        {
                            if (e.TryGetProperty("step", out var s) && s.ValueKind == JsonValueKind.Number)
                                test.Add(new CurvePoint(s.GetInt64(), Number(e, "loss"), Number(e, "accuracy")));
                        }
                    }
                }
                catch (Exception e) when (e is JsonException or IOException or InvalidOperationException)
                {
                    notes.Add($"{SummaryFile} could not be read: {e.Message}");
                }
            }
        }
        if (test.Count == 0) notes.Add("no test evaluations found (training.jsonl or summary.json).");
        return (train, test);
    }

    /// <summary>forecast.jsonl's warnings in step order, or null when the run has no forecast.jsonl.</summary>
    private static List<DivergenceForecast>? ReadForecasts(string dir, List<string> notes)
    {
        var path = Path.Combine(dir, ForecastFile.FileName);
        if (!File.Exists(path)) return null;
        try
        {
            var forecasts = ForecastFile.Read(path).OrderBy(f => f.Step).ToList();
            // The reader skips what is not a forecast line; say how many there were.
            var text = File.ReadAllText(path);
            int end = text.LastIndexOf('\n');
            int lines = (end < 0 ? "" : text[..end]).Split('\n').Count(l => !string.IsNullOrWhiteSpace(l));
            if (lines > forecasts.Count) notes.Add($"{ForecastFile.FileName}: {lines - forecasts.Count} line(s) are not forecast lines of a known version; skipped.");
            if (!string.IsNullOrWhiteSpace(text[(end + 1)..])) notes.Add($"{ForecastFile.FileName}: the last line is incomplete; it was skipped.");
            return forecasts;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            notes.Add($"{ForecastFile.FileName} could not be read: {e.Message}");
            return null;
        }
    }

    /// <summary>The forecast warnings as rows of the warnings table: per layer of the top signal, the first step and how many.</summary>
    private static IEnumerable<RunWarning> ForecastWarnings(List<DivergenceForecast> forecasts) =>
        forecasts.GroupBy(f => f.Layer, StringComparer.Ordinal)
            .Select(g => new RunWarning(g.Key, nameof(AnomalyKind.DivergenceAhead), g.Min(f => f.Step), g.Count(), ForecastAnomaly.From(g.MinBy(f => f.Step)!).Hint));

    private static List<RunWarning> ReadWarnings(string dir, List<string> notes, string? skipKind)
    {
        var path = Path.Combine(dir, LogFile);
        var result = new Dictionary<(string, string), RunWarning>();
        var kindHints = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path)) return [];
        var docs = new List<JsonDocument>();
        try
        {
            foreach (var e in JsonLines(path, notes, docs))
            {
                if (!(e.TryGetProperty("@l", out var level) && level.GetString() == "Warning")) continue;
                // The monitor's anomaly warnings (property names: LogProperties): one per kind per record listing the
                // layers, or a summary of repeats; logs written before that have one warning per layer (and older
                // ones the kind under its former name).
                if (!e.TryGetProperty(LogProperties.Kind, out var kindE) && !e.TryGetProperty(LogProperties.LegacyKind, out kindE)) continue;
                var kind = kindE.ToString();
                if (kind == skipKind) continue;
                long step = e.TryGetProperty(LogProperties.Step, out var s) && s.ValueKind == JsonValueKind.Number ? s.GetInt64() : -1;
                var hint = e.TryGetProperty(LogProperties.Hint, out var h) ? h.ToString().Trim() : "";
                long repeats = e.TryGetProperty(LogProperties.Repeats, out var r) && r.ValueKind == JsonValueKind.Number ? r.GetInt64() : 0;
                List<string> layers = e.TryGetProperty(LogProperties.Layers, out var ls) && ls.ValueKind == JsonValueKind.Array
                    ? [.. ls.EnumerateArray().Select(l => l.ToString())]
                    : e.TryGetProperty(LogProperties.Layer, out var layerE) ? [layerE.ToString()] : [];
                if (kindHints.TryGetValue(kind, out var known) && known.Length > 0) hint = known;
                else if (hint.Length > 0) kindHints[kind] = hint;
                foreach (var layer in layers)
                {
                    var key = (layer, kind);
                    if (repeats > 0)
                    {
                        if (result.TryGetValue(key, out var w)) result[key] = w with { Count = w.Count + (int)repeats };
                        continue;
                    }
                    result[key] = result.TryGetValue(key, out var v)
                        ? v with { Count = v.Count + 1, FirstStep = Math.Min(v.FirstStep, step) }
                        : new RunWarning(layer, kind, step, 1, hint);
                }
            }
            foreach (var (key, w) in result.ToList())
            {
                if (w.Hint.Length == 0 && kindHints.TryGetValue(w.Kind, out var hint)) result[key] = w with { Hint = hint };
            }
        }
        catch (IOException e)
        {
            notes.Add($"{LogFile} could not be read: {e.Message}");
        }
        finally
        {
            foreach (var d in docs) d.Dispose();
        }
        return result.Values.OrderBy(w => w.FirstStep).ThenBy(w => w.Layer, StringComparer.Ordinal).ToList();
    }

    private static List<KeyValuePair<string, string>> ReadFacts(string dir, List<string> notes)
    {
        var facts = new List<KeyValuePair<string, string>>();
        foreach (var file in new[] { ConfigFile, ModelFile, SummaryFile, FineTuneFile })
        {
            var path = Path.Combine(dir, file);
            if (!File.Exists(path)) continue;
            if (file == ModelFile && File.Exists(Path.Combine(dir, ConfigFile))) continue;
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(path));
                Flatten(doc.RootElement, file switch { SummaryFile => "result", FineTuneFile => "finetune", _ => "" }, facts, depth: 0);
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                notes.Add($"{file} could not be read: {e.Message}");
            }
        }
        return facts;
    }

    private static void Flatten(JsonElement e, string prefix, List<KeyValuePair<string, string>> into, int depth)
    {
        if (e.ValueKind == JsonValueKind.Object && depth < 2)
        {
            foreach (var p in e.EnumerateObject())
            {
                if (p.Name is "evaluations" or "losses") continue;
                Flatten(p.Value, prefix.Length == 0 ? p.Name : $"{prefix}.{p.Name}", into, depth + 1);
            }
            return;
        }
        var text = e.ValueKind == JsonValueKind.String ? e.GetString()! : e.GetRawText();
        if (text.Length > 200) text = text[..200] + "...";
        into.Add(new(prefix, text));
    }

    private static RunMetrics MergeIcs(string dir, RunMetrics metrics, List<string> notes)
    {
        var path = Path.Combine(dir, IcsFile);
        if (!File.Exists(path)) return metrics;
        var l2 = NaNMatrix(metrics);
        var cos = NaNMatrix(metrics);
        var stepIndex = metrics.Steps.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
        var docs = new List<JsonDocument>();
        int unmatched = 0;
        try
        {
            foreach (var e in JsonLines(path, notes, docs))
            {
                if (!e.TryGetProperty("step", out var s) || !e.TryGetProperty("layer", out var l)) continue;
                int li = metrics.LayerIndex(l.GetString() ?? "");
                if (li < 0 || !stepIndex.TryGetValue(s.GetInt64(), out int si))
                {
                    unmatched++;
                    continue;
                }
                l2[li][si] = Number(e, "l2");
                cos[li][si] = Number(e, "cos");
            }
        }
        finally
        {
            foreach (var d in docs) d.Dispose();
        }
        if (unmatched > 0) notes.Add($"{IcsFile}: {unmatched} line(s) name a layer or step not in {MetricsFile}; skipped.");
        var values = new Dictionary<string, double[][]>(metrics.Values) { ["ics_l2"] = l2, ["ics_cos"] = cos };
        return metrics with { Values = values };
    }

    private static double[][] NaNMatrix(RunMetrics m)
    {
        var r = new double[m.Layers.Count][];
        for (int i = 0; i < r.Length; i++)
        {
            r[i] = new double[m.Steps.Count];
            Array.Fill(r[i], double.NaN);
        }
        return r;
    }
}
