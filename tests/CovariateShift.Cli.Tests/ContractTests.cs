using System.Text.Json;
using System.Text.RegularExpressions;
using CovariateShift.Forecast;
using CovariateShift.Nn.Models;
using CovariateShift.Reports.Data;
using CovariateShift.Schema;
using CovariateShift.Sinks;
using CovariateShift.Training.Data;
using CovariateShift.Training.FineTuning;
using CovariateShift.Training.Training;
using TorchSharp;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// File contracts end to end for the outputs besides a plain train run: a resumed run, a fine-tuning run, an experiment
/// and a forecast warning, each written by our own code, read back through the readers every consumer uses
/// (<see cref="MetricsReader"/>, the report's <see cref="RunLoader"/> for training.jsonl / log.clef / ics.jsonl,
/// <see cref="FineTuneReport.Load"/>, <see cref="ForecastFile.Read"/>) and found in the report's embedded data.
/// </summary>
[Collection(nameof(TrainCommandTests))]
public sealed partial class ContractTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-contracts-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Error) Run(params string[] args) => CliConsole.Run(args);

    [GeneratedRegex("<script type=\"application/json\" id=\"report-data\">(.*?)</script>", RegexOptions.Singleline)]
    private static partial Regex DataScript();

    /// <summary>The data a report page embeds (what its drawing code shows).</summary>
    internal static JsonElement Payload(string htmlPath)
    {
        var m = DataScript().Match(File.ReadAllText(htmlPath));
        Assert.True(m.Success, $"{htmlPath} has no embedded report data");
        return JsonDocument.Parse(m.Groups[1].Value).RootElement.Clone();
    }

    /// <summary>`covshift report DIR... --out FILE`, returning the embedded data.</summary>
    private JsonElement Report(string name, params string[] dirs)
    {
        var html = Path.Combine(_dir, name + ".html");
        var (code, _, err) = Run(["report", .. dirs, "--out", html, "--no-figures"]);
        Assert.True(code == 0, err);
        return Payload(html);
    }

    private static float[] Floats(JsonElement values, string key)
    {
        var bytes = values.GetProperty(key).GetBytesFromBase64();
        var f = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return f;
    }

    private static List<(long Step, double? Loss)> TrainCurve(JsonElement run) =>
        [.. run.GetProperty("train").EnumerateArray().Select(p => (p[0].GetInt64(), p[1].ValueKind == JsonValueKind.Null ? (double?)null : p[1].GetDouble()))];

    private sealed class CancelAt(CancellationTokenSource source, int step) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value)
        {
            if (value.Step >= step) source.Cancel();
        }
    }

    [Fact]
    public void A_resumed_run_reads_back_like_the_straight_run_and_its_report_shows_the_same_curves_and_records()
    {
        var spec = new ModelSpec { Architecture = "mlp", InputShape = [Datasets.GaussianFeatures], Classes = Datasets.GaussianClasses, Depth = 2, Width = 16 };
        TrainResult Train(string dir, Func<TrainerOptions, TrainerOptions> change)
        {
            using var train = Datasets.Gaussian(Datasets.GaussianFeatures, Datasets.GaussianClasses, 320, seed: 4, "g/train", 0);
            using var test = Datasets.Gaussian(Datasets.GaussianFeatures, Datasets.GaussianClasses, 100, seed: 4, "g/test", 1);
            torch.manual_seed(4);
            using var model = ModelZoo.Create(spec);
            return new Trainer(change(new TrainerOptions
            {
                Steps = 30, BatchSize = 32, LearningRate = 0.05, Seed = 4, RecordEvery = 3, LogEvery = 5, EvaluateEvery = 10,
                OutputDirectory = dir, WriteCheckpoints = true,
            })).Train(model, train, test);
        }
        var straight = Path.Combine(_dir, "straight");
        var resumed = Path.Combine(_dir, "resumed");
        Train(straight, o => o);
        using var cancel = new CancellationTokenSource();
        Assert.True(Train(resumed, o => o with { Cancellation = cancel.Token, Progress = new CancelAt(cancel, 15) }).Interrupted);
        var result = Train(resumed, o => o with { Resume = true });
        Assert.Equal(15, result.StartStep);

        // metrics.jsonl through the core's reader: the same records (timing aside) at the same steps.
        var a = MetricsReader.Read(Path.Combine(straight, TrainerOptions.MetricsFileName)).Steps;
        var b = MetricsReader.Read(Path.Combine(resumed, TrainerOptions.MetricsFileName)).Steps;
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 3L * i), b.Select(s => s.Step));
        Assert.Equal(a.Select(s => (s.Step, s.Loss)), b.Select(s => (s.Step, s.Loss)));
        Assert.Equal(a.SelectMany(s => s.Layers).Select(l => (l.Layer, l.Statistics!.Mean, l.Statistics.Std)),
            b.SelectMany(s => s.Layers).Select(l => (l.Layer, l.Statistics!.Mean, l.Statistics.Std)));
        // training.jsonl through the report's reader: one curve, no repeated or missing step around the resume.
        var ra = RunLoader.Load(straight, "straight");
        var rb = RunLoader.Load(resumed, "resumed");
        Assert.Equal([5L, 10, 15, 20, 25, 30], rb.Train.Select(p => p.Step));
        Assert.Equal(ra.Train, rb.Train);
        Assert.Equal(ra.Test, rb.Test);
        Assert.Equal(result.Evaluations.Select(e => ((long)e.Step, e.Accuracy)), rb.Test.Select(p => (p.Step, p.Accuracy!.Value)));

        var page = Report("resume", straight, resumed).GetProperty("runs");
        Assert.Equal(TrainCurve(page[0]), TrainCurve(page[1]));
        Assert.Equal(b.Select(s => s.Step), page[1].GetProperty("steps").EnumerateArray().Select(s => s.GetInt64()));
        Assert.Equal(Floats(page[0].GetProperty("values"), "std"), Floats(page[1].GetProperty("values"), "std"));
    }

    /// <summary>The checked-in model directory (models/fashion-mnist-mlp-bn), found from the test's directory upwards.</summary>
    private static string Shipped()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "models", "fashion-mnist-mlp-bn");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("models/fashion-mnist-mlp-bn not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void A_fine_tuning_run_reads_back_and_its_report_shows_the_reference_shift_finetune_json_names()
    {
        var ft = Path.Combine(_dir, "ft");
        var (code, _, err) = Run("finetune", "--from", Shipped(), "--shift", "noise:0.5", "--steps", "10", "--record-every", "5", "--log-every", "5",
            "--train-limit", "300", "--test-limit", "200", "--out", ft);
        Assert.True(code == 0, err);
        var steps = MetricsReader.Read(Path.Combine(ft, TrainerOptions.MetricsFileName)).Steps;
        Assert.Equal([0L, 5], steps.Select(s => s.Step));
        var report = FineTuneReport.Load(Path.Combine(ft, FineTuneReport.FileName));
        Assert.NotEmpty(report.Layers);

        var run = RunLoader.Load(ft, "ft");
        Assert.Equal([5L, 10], run.Train.Select(p => p.Step));
        Assert.Contains(run.Facts, f => f.Key.StartsWith("finetune.", StringComparison.Ordinal));
        var page = Report("ft", ft).GetProperty("runs")[0];
        var layers = page.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("name").GetString()!).ToList();
        Assert.Equal(steps[0].Layers.Select(l => l.Layer), layers);
        // finetune.json's per-layer reference shift at the last record is the report's reference-shift heatmap there.
        var drift = Floats(page.GetProperty("values"), "reference_shift_mean_drift");
        int cols = page.GetProperty("steps").GetArrayLength();
        foreach (var l in report.Layers)
        {
            Assert.Equal(steps[^1].Step, l.LastStep);
            Assert.Equal((float)l.Last.MeanDrift, drift[layers.IndexOf(l.Layer) * cols + cols - 1]);
        }
        Assert.Contains(page.GetProperty("facts").EnumerateArray(), f => f[0].GetString()!.StartsWith("finetune.", StringComparison.Ordinal));
    }

    [Fact]
    public void An_experiments_runs_and_their_gradient_ics_are_in_its_report()
    {
        var exp = Path.Combine(_dir, "ics");
        var (code, _, err) = Run("experiment", "ics", "--steps", "8", "--norms", "none", "batch", "--depth", "2", "--width", "16",
            "--batch-size", "32", "--train-limit", "300", "--test-limit", "100", "--out", exp);
        Assert.True(code == 0, err);
        var page = Payload(Path.Combine(exp, "report.html")).GetProperty("runs");
        Assert.Equal(["none", "batch"], page.EnumerateArray().Select(r => r.GetProperty("name").GetString()));
        foreach (var r in page.EnumerateArray())
        {
            var dir = Path.Combine(exp, r.GetProperty("name").GetString()!);
            var steps = MetricsReader.Read(Path.Combine(dir, TrainerOptions.MetricsFileName)).Steps;
            Assert.Equal(steps.Select(s => s.Step), r.GetProperty("steps").EnumerateArray().Select(s => s.GetInt64()));
            // Every ics.jsonl line (the probe's writer) is one finite cell of the report's ics matrices, at its layer and step.
            var lines = File.ReadAllLines(Path.Combine(dir, RunLoader.IcsFile));
            Assert.NotEmpty(lines);
            var l2 = Floats(r.GetProperty("values"), "ics_l2");
            Assert.Equal(lines.Length, l2.Count(float.IsFinite));
            Assert.DoesNotContain(RunLoader.Load(dir, "x").Notes, n => n.Contains(RunLoader.IcsFile, StringComparison.Ordinal));
            Assert.Equal(TrainCurve(r).Select(p => p.Step), RunLoader.Load(dir, "x").Train.Select(p => p.Step));
        }
    }

    [Fact]
    public void A_forecast_warning_of_covshift_train_is_in_forecast_jsonl_log_clef_and_the_report()
    {
        // 8x64 MLP without normalization warmed up to lr 0.5, recorded every step: warned within about 20 steps
        // (measured 2026-12-03: at step 18, 5 s); --on-forecast stop ends the run at the warning.
        var run = Path.Combine(_dir, "forecast");
        var (code, _, err) = Run("train", "--depth", "8", "--width", "64", "--lr", "0.5", "--warmup-steps", "100", "--steps", "150", "--train-limit", "2000",
            "--test-limit", "200", "--record-every", "1", "--seed", "2", "--on-forecast", "stop", "--out", run);
        Assert.True(code == 4, $"exit {code}: {err}");
        var forecasts = ForecastFile.Read(Path.Combine(run, ForecastFile.FileName));
        var first = Assert.Single(forecasts);
        Assert.Equal(first.Step, TrainResult.Read(Path.Combine(run, "summary.json")).FirstForecastStep);
        // log.clef: the same warning as a Warning event with the schema's property names.
        var events = File.ReadAllLines(Path.Combine(run, "log.clef")).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty(LogProperties.Kind, out var k) && k.GetString() == "DivergenceAhead").ToList();
        var ev = Assert.Single(events);
        Assert.Equal("Warning", ev.GetProperty("@l").GetString());
        Assert.Equal((first.Step, first.Layer), (ev.GetProperty(LogProperties.Step).GetInt64(), ev.GetProperty(LogProperties.Layer).GetString()));

        var page = Report("forecast", run).GetProperty("runs")[0];
        var marker = Assert.Single(page.GetProperty("forecasts").EnumerateArray());
        Assert.Equal((first.Step, first.Horizon, first.Score), (marker.GetProperty("step").GetInt64(), marker.GetProperty("horizon").GetInt32(), marker.GetProperty("score").GetDouble()));
        var row = Assert.Single(page.GetProperty("warnings").EnumerateArray(), w => w.GetProperty("kind").GetString() == "DivergenceAhead");
        Assert.Equal((first.Layer, first.Step, 1), (row.GetProperty("layer").GetString(), row.GetProperty("firstStep").GetInt64(), row.GetProperty("count").GetInt32()));
    }
}
