using CovariateShift.Records;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Sinks;

/// <summary>
/// Writes standard TensorBoard event files through TorchSharp's <c>SummaryWriter</c>: per layer the scalars
/// <c>{layer}/mean</c>, <c>/std</c>, <c>/near_zero_fraction</c>, <c>/mean_drift</c>, <c>/variance_ratio</c>,
/// <c>/kl_divergence</c>, <c>/grad_norm</c>, <c>/update_to_weight_ratio</c> (the metrics schema's names), <c>loss</c> and the
/// monitor's own cost <c>monitor/monitor_ms</c>, <c>monitor/step_ms</c>, <c>monitor/overhead</c> (their ratio: the share of
/// the step time) and <c>monitor/steps_since_previous</c>; and every <see cref="MonitorOptions.TensorBoardHistogramEvery"/>
/// recorded steps a histogram <c>{layer}/activations</c> rebuilt from the layer's fixed-edge histogram (bin centres
/// repeated by their counts). Non-finite scalars are skipped (TensorBoard cannot plot them).
/// </summary>
public sealed class TensorBoardSink : IStepSink
{
    private readonly TorchSharp.Modules.SummaryWriter _writer;
    private readonly int _histogramEvery;
    private long _written;
    private long _recordsBefore;

    /// <summary>Records the run wrote before this sink (from <see cref="MonitorOptions.FirstStep"/>, or the count in the
    /// imported <see cref="Records.MonitorState"/>): the histogram cadence counts them. Set before the first record.</summary>
    internal long RecordsBefore
    {
        get => _recordsBefore;
        set
        {
            _recordsBefore = value;
            _written = value;
        }
    }

    /// <summary>Writes event files into <paramref name="directory"/> (created when missing).</summary>
    /// <exception cref="IOException">The directory cannot be created or written; the message names it.</exception>
    public TensorBoardSink(string directory, int histogramEvery = 10)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(histogramEvery, 1);
        Directory = Path.GetFullPath(directory);
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            var probe = Path.Combine(Directory, $".covshift-write-test-{Guid.NewGuid():N}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot write TensorBoard files to '{Directory}': {e.Message} Expected a writable directory.", e);
        }
        _writer = utils.tensorboard.SummaryWriter(Directory);
        _histogramEvery = histogramEvery;
    }

    /// <summary>Full path of the event-file directory.</summary>
    public string Directory { get; }

    /// <inheritdoc />
    public string Target => Directory;

    /// <inheritdoc />
    public void Write(StepRecord record)
    {
        int step = checked((int)record.Step);
        if (record.Loss is { } loss) Scalar("loss", loss, step);
        if (record.MonitorMs is { } monitorMs && record.StepMs is { } stepMs)
        {
            Scalar("monitor/monitor_ms", monitorMs, step);
            Scalar("monitor/step_ms", stepMs, step);
            if (stepMs > 0) Scalar("monitor/overhead", monitorMs / stepMs, step);
        }
        if (record.StepsSincePrevious is { } distance) Scalar("monitor/steps_since_previous", distance, step);
        bool histograms = _written++ % _histogramEvery == 0;
        foreach (var r in record.Layers)
        {
            if (r.Statistics is { } s)
            {
                Scalar($"{r.Layer}/{Tag(nameof(s.Mean))}", s.Mean, step);
                Scalar($"{r.Layer}/{Tag(nameof(s.Std))}", s.Std, step);
                Scalar($"{r.Layer}/{Tag(nameof(s.NearZeroFraction))}", s.NearZeroFraction, step);
                if (histograms && s.Histogram is not null) Histogram($"{r.Layer}/activations", s.Histogram, step);
            }
            if (r.Shift is { } sh)
            {
                Scalar($"{r.Layer}/{Tag(nameof(sh.MeanDrift))}", sh.MeanDrift, step);
                Scalar($"{r.Layer}/{Tag(nameof(sh.VarianceRatio))}", sh.VarianceRatio, step);
                Scalar($"{r.Layer}/{Tag(nameof(sh.KlDivergence))}", sh.KlDivergence, step);
            }
            if (r.Gradients is { } g)
            {
                Scalar($"{r.Layer}/{Tag(nameof(g.GradNorm))}", g.GradNorm, step);
                if (g.UpdateToWeightRatio is { } u) Scalar($"{r.Layer}/{Tag(nameof(g.UpdateToWeightRatio))}", u, step);
            }
        }
    }

    /// <summary>A record property's name as the metrics schema writes it (snake_case), the tag's last part.</summary>
    private static string Tag(string propertyName) => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(propertyName);

    private void Scalar(string tag, double value, int step)
    {
        if (double.IsFinite(value)) _writer.add_scalar(tag, (float)value, step);
    }

    private void Histogram(string tag, Histogram h, int step)
    {
        var values = new List<float>();
        for (int i = 0; i < h.Counts.Length; i++)
        {
            double at = i == 0 ? h.Low : i == h.Counts.Length - 1 ? h.High : h.Edge(i - 1) + h.BinWidth / 2;
            for (long c = 0; c < h.Counts[i]; c++) values.Add((float)at);
        }
        if (values.Count == 0) return;
        using var t = tensor(values.ToArray());
        _writer.add_histogram(tag, t, step, TorchSharp.Utils.tensorboard.Enums.HistogramBinSelector.Tensorflow);
    }

    /// <inheritdoc />
    public void Dispose() { }
}
