using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CovariateShift.Cli.Sweeps;
using CovariateShift.Nn.Normalization;
using CovariateShift.Sinks;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// <c>covshift sweep --engine local</c> end to end: real point processes (covshift.dll beside the tests) training on the
/// synthetic gaussian data; results checked against the run directories' own files; reruns, failures, interruption.
/// </summary>
[Trait("Category", "Slow")]
[Collection(nameof(TrainCommandTests))]
public sealed class SweepLocalTests : IDisposable
{
    private const string Base = """{"dataset": "gaussian", "model": "mlp", "depth": 2, "width": 16, "steps": 20, "batch-size": 32, "record-every": 5, "log-every": 5}""";

    private const string Grid = "\"grid\": {\"norm\": [\"none\", \"batch\"], \"lr\": [0.01, 0.1]}";

    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-sweeplocal-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteSpec(string name, string json)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>A spec: base options and the rest ("grid": ... or "points": ...).</summary>
    internal static string Spec(string baseJson, string rest) => "{\"base\": " + baseJson + ", " + rest + "}";


    /// <summary>Mean JS divergence over the hidden activations' records with a shift, read straight from the JSON lines.</summary>
    internal static double MeanJs(string metricsPath) => File.ReadAllLines(metricsPath).Select(l => JsonDocument.Parse(l).RootElement)
        .Where(e => e.GetProperty("layer").GetString()!.EndsWith(".act", StringComparison.Ordinal) && e.GetProperty("shift").ValueKind == JsonValueKind.Object)
        .Select(e => JsonLinesSink.ReadNumber(e.GetProperty("shift").GetProperty("jensen_shannon"))).Average();

    /// <summary>results.csv as header → value maps (the ids hold commas, so quoted fields are honoured).</summary>
    internal static List<Dictionary<string, string>> ReadCsv(string path)
    {
        static List<string> Split(string line)
        {
            var cells = new List<string>();
            var cell = new System.Text.StringBuilder();
            bool quoted = false;
            for (int i = 0; i < line.Length; i++)
            {
                char c = line[i];
                if (quoted && c == '"' && i + 1 < line.Length && line[i + 1] == '"')
                {
                    cell.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = !quoted;
                }
                else if (c == ',' && !quoted)
                {
                    cells.Add(cell.ToString());
                    cell.Clear();
                }
                else
                {
                    cell.Append(c);
                }
            }
            cells.Add(cell.ToString());
            return cells;
        }
        var lines = File.ReadAllLines(path);
        var header = Split(lines[0]);
        return lines.Skip(1).Select(l => header.Zip(Split(l)).ToDictionary(p => p.First, p => p.Second)).ToList();
    }

    [Fact]
    public void A_local_grid_trains_every_point_writes_results_from_the_runs_and_a_rerun_skips_them()
    {
        var spec = WriteSpec("spec.json", Spec(Base, Grid));
        var outDir = Path.Combine(_dir, "sweep");
        var (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", outDir, "--parallel", "2");
        Assert.True(code == 0, error + output);
        string[] ids = ["norm=none,lr=0.01", "norm=none,lr=0.1", "norm=batch,lr=0.01", "norm=batch,lr=0.1"];

        // Progress: one line per point ended, with done / total.
        foreach (var id in ids) Assert.Contains(output.Split('\n'), l => l.StartsWith('[') && l.Contains($"] {id}: finished", StringComparison.Ordinal));
        Assert.Contains("[4/4]", output);

        // Every point is a normal run directory trained with its own options.
        var rows = ReadCsv(Path.Combine(outDir, "results.csv"));
        Assert.Equal(ids, rows.Select(r => r["id"]));
        var jsonl = SweepResults.Read(outDir);
        Assert.Equal(ids, jsonl.Select(r => r.Id));
        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var run = Path.Combine(outDir, "runs", id);
            var config = RunConfig.Load(run);   // the run directory's own reader
            var norm = id.Split(',')[0].Split('=')[1];
            var lr = double.Parse(id.Split(',')[1].Split('=')[1], CultureInfo.InvariantCulture);
            Assert.Equal(norm, config.Model.Norm.ToCliName());
            Assert.Equal(lr, config.Optimizer.LearningRate);
            Assert.Equal(16, config.Model.Width);
            var summary = TrainResult.Read(Path.Combine(run, "summary.json"));
            var row = rows[i];
            Assert.Equal("finished", row["status"]);
            Assert.Equal(norm, row["norm"]);
            Assert.Equal(id.Split(',')[1].Split('=')[1], row["lr"]);
            Assert.Equal("20", row["steps"]);
            Assert.Equal(summary.TestAccuracy!.Value, double.Parse(row["final_test_accuracy"], CultureInfo.InvariantCulture));
            Assert.Equal(summary.BestTestAccuracy!.Value, double.Parse(row["best_test_accuracy"], CultureInfo.InvariantCulture));
            Assert.Equal(summary.FinalTrainLoss, double.Parse(row["final_train_loss"], CultureInfo.InvariantCulture));
            Assert.Equal("false", row["diverged"]);
            Assert.Equal(MeanJs(Path.Combine(run, "metrics.jsonl")), double.Parse(row["mean_js_bits"], CultureInfo.InvariantCulture), 12);
            Assert.Equal("2", row["hidden_layers"]);
            Assert.True(double.Parse(row["wall_time_s"], CultureInfo.InvariantCulture) > 0);
            Assert.Equal(jsonl[i].MeanJensenShannon, double.Parse(row["mean_js_bits"], CultureInfo.InvariantCulture));
            Assert.Equal(jsonl[i].FinalTestAccuracy, summary.TestAccuracy);
        }
        var report = File.ReadAllText(Path.Combine(outDir, "report.html"));
        foreach (var id in ids) Assert.Contains(id, report);
        var manifest = SweepManifest.Load(outDir);
        Assert.Equal(ids, manifest.Points.Select(p => p.Id));

        // Status: one line per point with its accuracies from summary.json, then the counts.
        (code, output, error) = SweepSpecTests.Run("sweep", "status", outDir);
        Assert.True(code == 0, error);
        foreach (var id in ids)
        {
            var summary = TrainResult.Read(Path.Combine(outDir, "runs", id, "summary.json"));
            var line = output.Split('\n').Single(l => l.Contains($" {id} ", StringComparison.Ordinal));
            Assert.Contains("finished", line);
            Assert.Contains(summary.TestAccuracy!.Value.ToString("F4", CultureInfo.InvariantCulture), line);
            Assert.Contains("20/20", line);
        }
        Assert.Contains("4 points: 4 finished, 0 diverged, 0 failed, 0 interrupted, 0 running, 0 pending", output);

        // A rerun of the same sweep trains nothing.
        var written = ids.Select(id => File.GetLastWriteTimeUtc(Path.Combine(outDir, "runs", id, "summary.json"))).ToList();
        (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", outDir);
        Assert.True(code == 0, error + output);
        Assert.Contains("4 already done, 0 to run", output);
        Assert.Equal(written, ids.Select(id => File.GetLastWriteTimeUtc(Path.Combine(outDir, "runs", id, "summary.json"))));

        // A second sweep into the same directory while this one holds it: refused.
        var manifestBytes = File.ReadAllBytes(Path.Combine(outDir, "sweep.json"));
        using (SweepLayout.Lock(outDir))
        {
            (code, _, error) = SweepSpecTests.Run("sweep", spec, "--out", outDir);
            Assert.Equal(2, code);
            Assert.Contains($"in use by another covshift sweep (pid {Environment.ProcessId})", error);
        }

        // A changed spec that would reuse the run directories for different points: refused, nothing changed.
        var changed = WriteSpec("changed.json", Spec(Base.Replace("\"steps\": 20", "\"steps\": 25", StringComparison.Ordinal), Grid));
        (code, _, error) = SweepSpecTests.Run("sweep", changed, "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("point 'norm=none,lr=0.01' has different options", error);
        Assert.Contains("--steps 20", error);
        Assert.Contains("--steps 25", error);
        Assert.Equal(manifestBytes, File.ReadAllBytes(Path.Combine(outDir, "sweep.json")));
    }

    [Fact]
    public void A_failed_point_is_reported_with_its_error_and_a_rerun_runs_only_that_point()
    {
        var csv = Path.Combine(_dir, "data.csv");
        var spec = WriteSpec("spec.json", Spec(Base, "\"points\": [{\"dataset\": \"gaussian\"}, {\"dataset\": \"csv:" + csv + "\", \"label-column\": \"label\"}]"));
        var outDir = Path.Combine(_dir, "sweep");
        var (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", outDir);
        Assert.True(code == 1, $"expected exit 1 (a point failed); got {code}: {error}{output}");
        var plan = SweepManifest.Load(outDir);
        var good = plan.Points[0].Id;
        var bad = plan.Points[1].Id;
        Assert.Equal("dataset=gaussian", good);
        Assert.Contains($"error: point '{bad}' failed", error);
        Assert.Contains("1 of 2 points did not finish", error);

        (code, output, _) = SweepSpecTests.Run("sweep", "status", outDir);
        Assert.Equal(0, code);
        var badLine = output.Split('\n').Single(l => l.Contains($" {bad} ", StringComparison.Ordinal));
        Assert.Contains("failed", badLine);
        Assert.Contains("data.csv", badLine);   // the error's first line names the missing file
        Assert.Contains("2 points: 1 finished, 0 diverged, 1 failed", output);
        Assert.Contains("failed", ReadCsv(Path.Combine(outDir, "results.csv"))[1]["status"]);

        // Provide the data; the rerun trains only the failed point.
        var random = new Random(1);
        File.WriteAllLines(csv, ["a,b,c,label", .. Enumerable.Range(0, 200).Select(i => string.Create(CultureInfo.InvariantCulture, $"{random.NextDouble() + i % 2},{random.NextDouble()},{random.NextDouble() - i % 2},{i % 2}"))]);
        var goodSummary = Path.Combine(outDir, "runs", good, "summary.json");
        var before = File.GetLastWriteTimeUtc(goodSummary);
        (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", outDir);
        Assert.True(code == 0, error + output);
        Assert.Contains("1 already done, 1 to run", output);
        Assert.Equal(before, File.GetLastWriteTimeUtc(goodSummary));
        Assert.True(File.Exists(Path.Combine(outDir, "runs", bad, "summary.json")));
        var state = PointState.Load(Path.Combine(outDir, "points", bad))!;
        Assert.Equal(PointStatus.Finished, state.Status);
        Assert.Equal(2, state.Attempts);
        Assert.Equal(["finished", "finished"], ReadCsv(Path.Combine(outDir, "results.csv")).Select(r => r["status"]));
    }

    [Fact]
    public void Sigterm_to_a_local_sweep_checkpoints_the_running_point_and_a_rerun_resumes_it()
    {
        var spec = WriteSpec("spec.json", Spec(Base.Replace("\"steps\": 20", "\"steps\": 3000", StringComparison.Ordinal).Replace("\"record-every\": 5", "\"record-every\": 500", StringComparison.Ordinal).Replace("\"log-every\": 5", "\"log-every\": 500", StringComparison.Ordinal), "\"grid\": {\"lr\": [0.05]}"));
        var outDir = Path.Combine(_dir, "sweep");
        var run = Path.Combine(outDir, "runs", "lr=0.05");
        var checkpoint = Path.Combine(run, "checkpoints", "last");
        var cli = Path.Combine(AppContext.BaseDirectory, "covshift.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { cli, "sweep", spec, "--out", outDir }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var log = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        string Log()
        {
            lock (log) return log.ToString();
        }
        var clock = Stopwatch.StartNew();
        try
        {
            // The first checkpoint is written at the end of the first epoch (4000 / 32 = 125 steps).
            while (!File.Exists(checkpoint))
            {
                Assert.False(process.HasExited, $"the sweep ended before the first checkpoint: {Log()}");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "no checkpoint within 120 s");
                Thread.Sleep(20);
            }
            using var kill = Process.Start("/bin/sh", ["-c", $"kill -TERM {process.Id}"])!;
            kill.WaitForExit();
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)), "the sweep did not stop within 60 s of SIGTERM");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
        Assert.True(process.ExitCode == 130, $"exit {process.ExitCode}: {Log()}");
        var state = PointState.Load(Path.Combine(outDir, "points", "lr=0.05"))!;
        Assert.Equal(PointStatus.Interrupted, state.Status);
        Assert.True(TrainResult.Read(Path.Combine(run, "summary.json")).Interrupted);   // how far it got; not an ended run
        var saved = CovariateShift.Training.Runtime.RunCheckpoint.Load(checkpoint).State;
        Assert.False(saved.Finished);
        Assert.InRange(saved.Step, 125, 2999);

        var (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", outDir);
        Assert.True(code == 0, error + output);
        var summary = TrainResult.Read(Path.Combine(run, "summary.json"));
        Assert.Equal(3000, summary.Steps);
        Assert.False(summary.Interrupted);
        Assert.Equal(saved.Step, summary.StartStep);   // continued from the checkpoint, not retrained
        Assert.Contains("(resume)", File.ReadAllText(Path.Combine(outDir, "points", "lr=0.05", "output.log")));
        state = PointState.Load(Path.Combine(outDir, "points", "lr=0.05"))!;
        Assert.Equal(PointStatus.Finished, state.Status);
        Assert.Equal(2, state.Attempts);
    }
}
