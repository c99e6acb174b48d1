using System.Diagnostics;
using System.Text.Json;
using CovariateShift.Anomalies;
using CovariateShift.Cli.Commands;
using CovariateShift.Records;
using CovariateShift.Reports.Data;
using CovariateShift.Schema;
using CovariateShift.Sinks;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// File contracts end to end: runs of <c>covshift train</c> (in-process through <see cref="CliApp.Run"/>), read back
/// with the readers our own code uses (metrics, log.clef through the report's loader, summary.json, checkpoints).
/// </summary>
[Collection(nameof(TrainCommandTests))]
public sealed class RunContractTests : IDisposable
{
    private const string SummaryFile = "summary.json", ModelFile = "checkpoint.bin", LogFile = "log.clef";
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-contract-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Error) Run(params string[] args) => CliConsole.Run(args);

    private static readonly string[] Small = ["--dataset", "gaussian", "--model", "mlp", "--depth", "3", "--width", "32", "--batch-size", "32", "--train-limit", "640", "--test-limit", "200"];

    private static string[] Args(params string[] more) => ["train", .. Small, .. more];

    [Fact]
    public void With_record_every_1_metrics_carry_histograms_exactly_every_JsonLinesHistogramEvery_records_and_no_scratch_files()
    {
        var run = Path.Combine(_dir, "hist");
        var (code, _, err) = Run(Args("--steps", "25", "--record-every", "1", "--out", run));
        Assert.True(code == 0, err);
        var steps = MetricsReader.Read(Path.Combine(run, TrainerOptions.MetricsFileName)).Steps;
        Assert.Equal(Enumerable.Range(0, 25).Select(i => (long)i), steps.Select(s => s.Step));
        int every = new MonitorOptions().JsonLinesHistogramEvery;
        foreach (var s in steps)
        {
            bool expected = s.Step % every == 0;
            Assert.All(s.Layers, l => Assert.Equal(expected, l.Statistics!.Histogram is not null));
        }
        Assert.Empty(Directory.GetFiles(run, "*scratch*"));

        // config.json and summary.json are snake_case; their readers also read the camelCase of earlier versions
        // (made here from the files this run wrote).
        var config = RunConfig.Load(run);
        var summary = TrainResult.Read(Path.Combine(run, SummaryFile));
        Assert.Contains("\"learning_rate\"", File.ReadAllText(Path.Combine(run, RunConfig.FileName)), StringComparison.Ordinal);
        Assert.Contains("\"final_train_loss\"", File.ReadAllText(Path.Combine(run, SummaryFile)), StringComparison.Ordinal);
        var old = Path.Combine(_dir, "old");
        Directory.CreateDirectory(old);
        File.WriteAllText(Path.Combine(old, RunConfig.FileName), CamelCase(File.ReadAllText(Path.Combine(run, RunConfig.FileName))));
        File.WriteAllText(Path.Combine(old, SummaryFile), CamelCase(File.ReadAllText(Path.Combine(run, SummaryFile))));
        Assert.Contains("\"learningRate\"", File.ReadAllText(Path.Combine(old, RunConfig.FileName)), StringComparison.Ordinal);
        var oldConfig = RunConfig.Load(old);
        Assert.Equal(config.ToJson(), oldConfig.ToJson());
        var oldSummary = TrainResult.Read(Path.Combine(old, SummaryFile));
        Assert.Equal((summary.Steps, summary.FinalTrainLoss, summary.TestAccuracy, summary.BestTestAccuracy), (oldSummary.Steps, oldSummary.FinalTrainLoss, oldSummary.TestAccuracy, oldSummary.BestTestAccuracy));
        Assert.Equal(summary.Evaluations, oldSummary.Evaluations);
    }

    /// <summary>The JSON document with every property name outside <c>model</c> in camelCase (the earlier convention).</summary>
    private static string CamelCase(string json)
    {
        static void Rename(System.Text.Json.Nodes.JsonObject o)
        {
            foreach (var (name, value) in o.ToList())
            {
                if (name == "model") continue;
                if (value is System.Text.Json.Nodes.JsonObject child) Rename(child);
                if (value is System.Text.Json.Nodes.JsonArray list) foreach (var item in list.OfType<System.Text.Json.Nodes.JsonObject>()) Rename(item);
                var parts = name.Split('_');
                var camel = parts[0] + string.Concat(parts.Skip(1).Select(p => p.Length == 0 ? p : char.ToUpperInvariant(p[0]) + p[1..]));
                if (camel == name) continue;
                o.Remove(name);
                o[camel] = value;
            }
        }
        var root = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        Rename(root);
        return root.ToJsonString();
    }

    /// <summary>The anomalies of the records in metrics.jsonl, as the monitor's sink warns them: per (layer, kind) the
    /// step where it first started and how many times it started (present at a record, absent at the one before).</summary>
    private static Dictionary<(string Layer, string Kind), (long First, int Count)> ExpectedWarnings(string metricsPath)
    {
        var options = new MonitorOptions();
        var expected = new Dictionary<(string, string), (long, int)>();
        var active = new HashSet<(string, string)>();
        foreach (var step in MetricsReader.Read(metricsPath).Steps)
        {
            var now = step.Layers.SelectMany(l => AnomalyDetector.Detect(l, options)).Select(a => (a.Layer, a.Kind.ToString())).ToHashSet();
            foreach (var key in now.Where(k => !active.Contains(k)))
                expected[key] = expected.TryGetValue(key, out var v) ? (v.Item1, v.Item2 + 1) : (step.Step, 1);
            active = now;
        }
        return expected;
    }

    [Fact]
    public void Anomalies_of_a_real_run_reach_the_report_and_the_log_has_one_warning_per_kind_per_record_with_the_advice_once()
    {
        var run = Path.Combine(_dir, "anomalies");
        var (code, _, err) = Run(Args("--steps", "40", "--record-every", "2", "--norm", "none", "--lr", "0.5", "--allow-divergence", "--out", run));
        Assert.True(code == 0, err);
        var expected = ExpectedWarnings(Path.Combine(run, TrainerOptions.MetricsFileName));
        Assert.NotEmpty(expected);   // the run must trigger anomalies for the test to mean anything

        var warnings = RunLoader.Load(run, "anomalies").Warnings;
        Assert.Equal(expected.OrderBy(e => e.Key).Select(e => $"{e.Key.Layer} {e.Key.Kind} first {e.Value.First} x{e.Value.Count}"),
            warnings.OrderBy(w => (w.Layer, w.Kind)).Select(w => $"{w.Layer} {w.Kind} first {w.FirstStep} x{w.Count}"));
        Assert.All(warnings, w => Assert.False(string.IsNullOrWhiteSpace(w.Hint), $"{w.Layer} {w.Kind}: no hint"));

        // log.clef: at most one anomaly Warning per kind per step; the advice (Hint) only on the first of each kind.
        var events = File.ReadAllLines(Path.Combine(run, LogFile)).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("@l", out var level) && level.GetString() == "Warning" && e.TryGetProperty(LogProperties.Kind, out _)
                        && !e.TryGetProperty(LogProperties.Repeats, out _))
            .ToList();
        var perStep = events.GroupBy(e => (e.GetProperty(LogProperties.Step).GetInt64(), e.GetProperty(LogProperties.Kind).GetString())).ToList();
        Assert.All(perStep, g => Assert.Single(g));
        foreach (var kind in events.GroupBy(e => e.GetProperty(LogProperties.Kind).GetString()))
        {
            var hints = kind.Select(e => e.GetProperty(LogProperties.Hint).GetString()!.Trim()).ToList();
            Assert.NotEmpty(hints[0]);
            Assert.All(hints.Skip(1), h => Assert.Empty(h));
        }

        // The report embeds them.
        var report = Path.Combine(_dir, "anomalies.html");
        Assert.Equal(0, Run("report", run, "--out", report).Code);
        var table = ContractTests.Payload(report).GetProperty("runs")[0].GetProperty("warnings").EnumerateArray()
            .Select(w => $"{w.GetProperty("layer").GetString()} {w.GetProperty("kind").GetString()} first {w.GetProperty("firstStep").GetInt64()} x{w.GetProperty("count").GetInt32()}");
        Assert.Equal(expected.Select(e => $"{e.Key.Layer} {e.Key.Kind} first {e.Value.First} x{e.Value.Count}").Order(StringComparer.Ordinal), table.Order(StringComparer.Ordinal));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void A_run_killed_after_its_final_checkpoint_and_before_its_summary_is_completed_by_resume()
    {
        var run = Path.Combine(_dir, "killed");
        var (code, _, err) = Run(Args("--steps", "30", "--record-every", "5", "--out", run));
        Assert.True(code == 0, err);
        var straight = TrainResult.Read(Path.Combine(run, SummaryFile));
        Assert.True(RunCheckpoint.Load(Path.Combine(run, "checkpoints", "last")).State.Finished);
        // Killed between checkpoints/last and summary.json: no summary, no checkpoint.bin, the dead process's .lock.pid left.
        File.Delete(Path.Combine(run, SummaryFile));
        File.Delete(Path.Combine(run, ModelFile));
        using (var dead = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            dead.WaitForExit();
            File.WriteAllText(Path.Combine(run, RunLock.PidFileName), $"{dead.Id}\n");
        }

        (code, var output, err) = Run("train", "--resume", run);
        Assert.True(code == 0, err);
        Assert.Contains("completing it", output, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(run, ModelFile)));
        var completed = TrainResult.Read(Path.Combine(run, SummaryFile));
        Assert.Equal((straight.Steps, straight.FinalTrainLoss, straight.TestAccuracy, straight.BestTestAccuracy), (completed.Steps, completed.FinalTrainLoss, completed.TestAccuracy, completed.BestTestAccuracy));
        Assert.Equal(straight.Evaluations, completed.Evaluations);
        Assert.False(File.Exists(Path.Combine(run, RunLock.PidFileName)));

        // Now it is finished: a second resume has nothing to do and leaves the summary as it is.
        var before = File.ReadAllText(Path.Combine(run, SummaryFile));
        (code, output, err) = Run("train", "--resume", run);
        Assert.True(code == 0, err);
        Assert.Contains("already finished", output, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllText(Path.Combine(run, SummaryFile)));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Resuming_a_multi_norm_run_prints_the_comparison_and_writes_the_report()
    {
        var run = Path.Combine(_dir, "norms");
        var (code, _, err) = Run(Args("--steps", "20", "--record-every", "5", "--norm", "none", "batch", "--out", run));
        Assert.True(code == 0, err);
        File.Delete(Path.Combine(run, "report.html"));
        File.Delete(Path.Combine(run, "batch", SummaryFile));   // the second run stopped before its summary

        (code, var output, err) = Run("train", "--resume", run);
        Assert.True(code == 0, err);
        Assert.Contains("| none |", output, StringComparison.Ordinal);
        Assert.Contains("| batch |", output, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(run, "report.html")));
    }

    [Fact]
    public void Experiment_refuses_an_existing_non_empty_directory_without_overwrite()
    {
        var out_ = Path.Combine(_dir, "exp");
        Directory.CreateDirectory(out_);
        File.WriteAllText(Path.Combine(out_, "keep.txt"), "keep");
        var (code, _, err) = Run("experiment", "depth-sweep", "--dataset", "mnist", "--data-dir", _dir, "--out", out_);
        Assert.Equal(2, code);
        Assert.Contains("not empty", err, StringComparison.Ordinal);
        Assert.Contains("--overwrite", err, StringComparison.Ordinal);
        Assert.Equal(["keep.txt"], Directory.GetFileSystemEntries(out_).Select(Path.GetFileName));
    }
}
