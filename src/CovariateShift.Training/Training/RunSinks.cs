using System.Globalization;
using System.Text.Json;
using CovariateShift.Records;
using CovariateShift.Sinks;
using CovariateShift.Training.Runtime;
using Serilog.Core;
using Serilog.Events;
using TorchSharp;

namespace CovariateShift.Training.Training;

/// <summary>
/// Receives the monitor's records and writes them to the run directory with the run's step numbers: a resumed run's
/// monitor counts from 0 again, so its records are renumbered by the step at which it was attached. metrics.jsonl
/// lines are produced by the monitor's own <see cref="JsonLinesSink"/> format and appended as whole lines
/// (<see cref="LineFile"/>); TensorBoard through <see cref="TensorBoardSink"/>.
/// </summary>
internal sealed class MonitorRelay : IObserver<StepRecord>, IDisposable
{
    private readonly LineFile? _metrics;
    private readonly string? _scratch;
    private readonly TensorBoardSink? _tensorBoard;
    private readonly LineFile? _forecast;

    public MonitorRelay(string? metricsPath, string? tensorBoardDirectory, int histogramEvery, string? forecastPath = null)
    {
        if (forecastPath is not null) _forecast = new LineFile(forecastPath);
        if (metricsPath is not null)
        {
            _metrics = new LineFile(metricsPath);
            _scratch = Path.Combine(Path.GetDirectoryName(_metrics.Path)!, $".{Path.GetFileName(metricsPath)}.scratch-{Environment.ProcessId}");
        }
        if (tensorBoardDirectory is not null) _tensorBoard = new TensorBoardSink(tensorBoardDirectory, histogramEvery);
    }

    /// <summary>Added to the monitor's step numbers.</summary>
    public long Offset { get; set; }

    /// <summary>The run's step of the first forecaster warning (<see cref="Records.AnomalyKind.DivergenceAhead"/>), or null.</summary>
    public long? FirstForecastStep { get; private set; }

    /// <summary>The first exception a sink threw (re-thrown by the trainer after the step).</summary>
    public Exception? Failure { get; private set; }

    public void OnNext(StepRecord value)
    {
        if (Failure is not null) return;
        try
        {
            var record = Offset == 0 ? value : value with
            {
                Step = value.Step + Offset,
                Layers = value.Layers.Select(l => l with { Step = l.Step + Offset }).ToList(),
                Anomalies = value.Anomalies.Select(a => a with { Step = a.Step + Offset }).ToList(),
            };
            if (_metrics is not null)
            {
                using (var sink = new JsonLinesSink(_scratch!)) sink.Write(record);
                _metrics.Append(File.ReadAllBytes(_scratch!));
            }
            _tensorBoard?.Write(record);
            foreach (var a in record.Anomalies)
            {
                if (a.Forecast is not { } f) continue;
                FirstForecastStep ??= a.Step;
                _forecast?.Append(CovariateShift.Forecast.ForecastFile.Line(f with { Step = a.Step }));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Failure = e;
        }
    }

    public void OnError(Exception error)
    {
    }

    public void OnCompleted()
    {
    }

    public void Dispose()
    {
        _metrics?.Dispose();
        _tensorBoard?.Dispose();
        _forecast?.Dispose();
        if (_scratch is not null) SafeFile.TryDelete(_scratch);
    }
}

/// <summary>Adds an offset to the <c>Step</c> property of the monitor's Serilog events (see <see cref="MonitorRelay"/>).</summary>
internal sealed class StepOffsetEnricher(Func<long> offset) : ILogEventEnricher
{
    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        long o = offset();
        if (o == 0 || !logEvent.Properties.TryGetValue("Step", out var v) || v is not ScalarValue s) return;
        long? step = s.Value switch
        {
            long l => l,
            int i => i,
            _ => null,
        };
        if (step is { } k) logEvent.AddOrUpdateProperty(new LogEventProperty("Step", new ScalarValue(k + o)));
    }
}

/// <summary>
/// training.jsonl (one whole line per logged training step and per evaluation) and, optionally, the TensorBoard
/// curves train/loss, train/lr, test/loss, test/accuracy.
/// </summary>
internal sealed class TrainingLog : IDisposable
{
    private readonly LineFile _file;
    private readonly TorchSharp.Modules.SummaryWriter? _tensorBoard;

    public TrainingLog(string path, string? tensorBoardDirectory)
    {
        _file = new LineFile(path);
        if (tensorBoardDirectory is not null)
        {
            Directory.CreateDirectory(tensorBoardDirectory);
            _tensorBoard = torch.utils.tensorboard.SummaryWriter(tensorBoardDirectory, filename_suffix: ".training");
        }
    }

    public string Path => _file.Path;

    public void Train(long step, double epoch, double loss, double learningRate, double examplesPerSecond)
    {
        _file.Append(Line(w =>
        {
            w.WriteNumber("step", step);
            w.WriteNumber("epoch", epoch);
            w.WriteString("split", "train");
            Number(w, "loss", loss);
            w.WriteNumber("lr", learningRate);
            Number(w, "examples_per_s", examplesPerSecond);
        }));
        _tensorBoard?.add_scalar("train/loss", (float)loss, checked((int)step));
        _tensorBoard?.add_scalar("train/lr", (float)learningRate, checked((int)step));
    }

    public void Test(long step, double epoch, double loss, double accuracy)
    {
        _file.Append(Line(w =>
        {
            w.WriteNumber("step", step);
            w.WriteNumber("epoch", epoch);
            w.WriteString("split", "test");
            Number(w, "loss", loss);
            w.WriteNumber("accuracy", accuracy);
        }));
        _tensorBoard?.add_scalar("test/loss", (float)loss, checked((int)step));
        _tensorBoard?.add_scalar("test/accuracy", (float)accuracy, checked((int)step));
    }

    public void Flush()
    {
        _file.Flush();
    }

    public void Dispose()
    {
        _file.Dispose();
    }

    private static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteString(name, value.ToString(CultureInfo.InvariantCulture));
    }

    private static byte[] Line(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }
}
