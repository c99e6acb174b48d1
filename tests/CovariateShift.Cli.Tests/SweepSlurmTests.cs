using System.Diagnostics;
using CovariateShift.Cli.Sweeps;

namespace CovariateShift.Cli.Tests;

/// <summary>A fact that runs only as root: scripts/slurm-local.sh installs Slurm and starts its daemons.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    /// <summary>Skips with the reason where the process is not root.</summary>
    public RootFactAttribute()
    {
        if (!Environment.IsPrivilegedProcess)
            Skip = "needs root: scripts/slurm-local.sh installs slurm-wlm and munge and starts munged, slurmctld and slurmd (the daemons cannot start otherwise)";
    }
}

/// <summary>
/// <c>covshift sweep --engine slurm</c> on a real one-node Slurm that the test starts itself with scripts/slurm-local.sh
/// (and stops at the end, also when it fails).
/// </summary>
[Trait("Category", "Slow")]
[Collection(nameof(TrainCommandTests))]
public sealed class SweepSlurmTests : IDisposable
{
    private const string Spec = """{"base": {"dataset": "gaussian", "model": "mlp", "depth": 2, "width": 16, "steps": 20, "batch-size": 32, "record-every": 5}, "grid": {"norm": ["none", "batch"], "lr": [0.01, 0.1]}}""";

    private static readonly string[] Ids = ["norm=none,lr=0.01", "norm=none,lr=0.1", "norm=batch,lr=0.01", "norm=batch,lr=0.1"];

    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-sweepslurm-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Script()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var s = Path.Combine(d.FullName, "scripts", "slurm-local.sh");
            if (File.Exists(s) && File.Exists(Path.Combine(d.FullName, "CovariateShift.sln"))) return s;
        }
        throw new FileNotFoundException("scripts/slurm-local.sh not found above the test directory.");
    }

    private static (int Code, string Output) Shell(string program, params string[] args)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var log = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) p.Kill(entireProcessTree: true);
        p.WaitForExit();
        lock (log) return (p.ExitCode, log.ToString());
    }

    [RootFact]
    public void A_job_array_trains_every_point_and_a_rerun_after_scancel_completes_only_the_cancelled_point()
    {
        var script = Script();
        var (code, output) = Shell("bash", script, "start");
        try
        {
            Assert.True(code == 0, $"scripts/slurm-local.sh start failed ({code}): {output}");
            var spec = Path.Combine(_dir, "spec.json");
            File.WriteAllText(spec, Spec);

            // 1. Four points through sbatch, followed to the end.
            var first = Path.Combine(_dir, "first");
            string error;
            (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", first, "--engine", "slurm", "--wait", "--poll", "1");
            Assert.True(code == 0, error + output);
            var manifest = SweepManifest.Load(first);
            var job = Assert.Single(manifest.SlurmJobs);
            Assert.Equal([0, 1, 2, 3], job.Indices);
            Assert.Contains("#SBATCH --array=0-3", File.ReadAllLines(Path.Combine(first, "sweep.sbatch")));
            Assert.Contains("4 points: 4 finished", output);
            var rows = SweepLocalTests.ReadCsv(Path.Combine(first, "results.csv"));
            Assert.Equal(Ids, rows.Select(r => r["id"]));
            foreach (var (id, i) in Ids.Select((id, i) => (id, i)))
            {
                var run = Path.Combine(first, "runs", id);
                foreach (var f in new[] { "config.json", "metrics.jsonl", "training.jsonl", "summary.json", "model.json" }) Assert.True(File.Exists(Path.Combine(run, f)), $"{id}: no {f}");
                Assert.Equal("finished", rows[i]["status"]);
                Assert.Equal("20", rows[i]["steps"]);
                Assert.Equal(SweepLocalTests.MeanJs(Path.Combine(run, "metrics.jsonl")), double.Parse(rows[i]["mean_js_bits"], System.Globalization.CultureInfo.InvariantCulture), 12);
                Assert.Equal($"{job.JobId}_{i}", PointState.Load(Path.Combine(first, "points", id))!.SlurmJob);
            }

            // 2. A second sweep, one task at a time; its last task is cancelled while it waits in the queue.
            var second = Path.Combine(_dir, "second");
            (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", second, "--engine", "slurm", "--max-running", "1");
            Assert.True(code == 0, error + output);
            var jobId = SweepManifest.Load(second).SlurmJobs.Single().JobId;
            var (c, o) = Shell("scancel", $"{jobId}_3");
            Assert.True(c == 0, o);
            var clock = Stopwatch.StartNew();
            while (SlurmEngine.Queue([jobId]) is { Count: > 0 })
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "the second job did not leave the queue within 120 s");
                Thread.Sleep(500);
            }
            (code, output, _) = SweepSpecTests.Run("sweep", "status", second);
            Assert.Equal(0, code);
            Assert.Contains("4 points: 3 finished, 0 diverged, 0 failed, 0 interrupted, 0 running, 1 pending", output);
            Assert.Contains("pending", output.Split('\n').Single(l => l.Contains($" {Ids[3]} ", StringComparison.Ordinal)));
            var written = Ids.Take(3).Select(id => File.GetLastWriteTimeUtc(Path.Combine(second, "runs", id, "summary.json"))).ToList();

            // 3. The rerun submits and completes only the cancelled point.
            (code, output, error) = SweepSpecTests.Run("sweep", spec, "--out", second, "--engine", "slurm", "--wait", "--poll", "1");
            Assert.True(code == 0, error + output);
            Assert.Contains("3 already done, 1 to run", output);
            Assert.Equal([3], SweepManifest.Load(second).SlurmJobs[^1].Indices);
            Assert.Equal(written, Ids.Take(3).Select(id => File.GetLastWriteTimeUtc(Path.Combine(second, "runs", id, "summary.json"))));
            Assert.True(File.Exists(Path.Combine(second, "runs", Ids[3], "summary.json")));
            Assert.Equal(["finished", "finished", "finished", "finished"], SweepLocalTests.ReadCsv(Path.Combine(second, "results.csv")).Select(r => r["status"]));
        }
        finally
        {
            var (stopCode, stopOutput) = Shell("bash", script, "stop");
            Assert.True(stopCode == 0, $"scripts/slurm-local.sh stop failed: {stopOutput}");
        }
    }
}
