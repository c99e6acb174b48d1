using System.Text;
using System.Text.Json;
using CovariateShift.Records;

namespace CovariateShift.Sinks;

/// <summary>
/// Writes one JSON object per layer per recorded step to a JSON Lines file. A step's lines are serialized in memory
/// first and then written with one write and a flush, so after a crash the file holds whole lines of every finished
/// step (at most the step in progress is lost). Non-finite numbers are written as the strings "NaN", "Infinity",
/// "-Infinity" (JSON has no such numbers).
/// </summary>
/// <remarks>Fields: step, layer, type, called, loss; when called: count, mean, std, min, max, p15, p50, p85, near_zero, dead_units,
/// saturated (null unless sigmoid/tanh), nan, inf, channel_sq_mean and channel_var (null unless 4-D),
/// hist {low, high, counts (underflow first, overflow last)}; shift and ref_shift {mean_drift, variance_ratio, kl, js, w1}
/// or null; grad {norm, weight_norm, ratio, update_norm, update_ratio} or null.</remarks>
public sealed class JsonLinesSink : IStepSink
{
    private readonly FileStream _stream;
    private readonly MemoryStream _buffer = new();
    private static readonly byte[] NewLine = "\n"u8.ToArray();

    /// <summary>Creates (or truncates) the file at <paramref name="path"/>; its directory is created when missing.</summary>
    /// <exception cref="IOException">The file cannot be created; the message names the path.</exception>
    public JsonLinesSink(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Path = System.IO.Path.GetFullPath(path);
        try
        {
            var dir = System.IO.Path.GetDirectoryName(Path);
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            _stream = new FileStream(Path, FileMode.Create, FileAccess.Write, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot write the metrics file '{Path}': {e.Message} Expected a writable file path.", e);
        }
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <inheritdoc />
    public void Write(StepRecord record)
    {
        _buffer.SetLength(0);
        foreach (var layer in record.Layers)
        {
            using (var w = new Utf8JsonWriter(_buffer))
                WriteLayer(w, record, layer);
            _buffer.Write(NewLine);
        }
        _buffer.Position = 0;
        _buffer.CopyTo(_stream);
        _stream.Flush();
    }

    private static void WriteLayer(Utf8JsonWriter w, StepRecord step, LayerRecord r)
    {
        w.WriteStartObject();
        w.WriteNumber("step", r.Step);
        w.WriteString("layer", r.Layer);
        w.WriteString("type", r.LayerType);
        w.WriteBoolean("called", r.Statistics is not null);
        Number(w, "loss", step.Loss);
        if (r.Statistics is { } s)
        {
            w.WriteNumber("count", s.Count);
            Number(w, "mean", s.Mean);
            Number(w, "std", s.Std);
            Number(w, "min", s.Min);
            Number(w, "max", s.Max);
            Number(w, "p15", s.P15);
            Number(w, "p50", s.P50);
            Number(w, "p85", s.P85);
            Number(w, "near_zero", s.NearZeroFraction);
            Number(w, "dead_units", s.DeadUnitFraction);
            Number(w, "saturated", s.SaturatedFraction);
            w.WriteNumber("nan", s.NanCount);
            w.WriteNumber("inf", s.InfCount);
            Number(w, "channel_sq_mean", s.ChannelSquaredMean);
            Number(w, "channel_var", s.ChannelVariance);
            if (s.Histogram is { } h)
            {
                w.WriteStartObject("hist");
                Number(w, "low", h.Low);
                Number(w, "high", h.High);
                w.WriteStartArray("counts");
                foreach (var c in h.Counts) w.WriteNumberValue(c);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            else
            {
                w.WriteNull("hist");
            }
        }
        Shift(w, "shift", r.Shift);
        Shift(w, "ref_shift", r.ReferenceShift);
        if (r.Gradients is { } g)
        {
            w.WriteStartObject("grad");
            Number(w, "norm", g.GradNorm);
            Number(w, "weight_norm", g.WeightNorm);
            Number(w, "ratio", g.GradToWeightRatio);
            Number(w, "update_norm", g.UpdateNorm);
            Number(w, "update_ratio", g.UpdateToWeightRatio);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("grad");
        }

        w.WriteEndObject();
    }

    private static void Shift(Utf8JsonWriter w, string name, ShiftMetrics? m)
    {
        if (m is null)
        {
            w.WriteNull(name);
            return;
        }
        w.WriteStartObject(name);
        Number(w, "mean_drift", m.MeanDrift);
        Number(w, "variance_ratio", m.VarianceRatio);
        Number(w, "kl", m.KlDivergence);
        Number(w, "js", m.JensenShannon);
        Number(w, "w1", m.Wasserstein1);
        w.WriteEndObject();
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is not { } v) w.WriteNull(name);
        else if (double.IsFinite(v)) w.WriteNumber(name, v);
        else w.WriteString(name, double.IsNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
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
        _stream.Dispose();
        _buffer.Dispose();
    }
}
