using CovariateShift.Cli.Commands;
using System.Diagnostics;
using System.Text.Json;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// <c>covshift train</c>'s run directory from the command line: refusing a used or locked directory, --overwrite,
/// --resume (also after SIGINT in a real process), symbolic links, bad data files and spec files.
/// </summary>
[Collection(nameof(TrainCommandTests))]
public sealed class RunDirectoryCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-rundir-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Error) Run(params string[] args) => CliConsole.Run(args);

    private static readonly string[] Tiny = ["train", "--dataset", "gaussian", "--model", "mlp", "--depth", "2", "--width", "16", "--batch-size", "50",
        "--train-limit", "400", "--test-limit", "100", "--log-every", "5", "--record-every", "3", "--optimizer", "adam"];

    private static List<string> Curve(string dir) =>
        File.ReadAllLines(Path.Combine(dir, "training.jsonl")).Select(l =>
        {
            var e = JsonDocument.Parse(l).RootElement;
            return string.Join(' ', e.EnumerateObject().Where(p => p.Name != "examples_per_s").Select(p => $"{p.Name}={p.Value.GetRawText()}"));
        }).ToList();

    [Fact]
    public void A_used_directory_is_refused_unless_resume_or_overwrite_and_a_finished_run_resumes_to_nothing()
    {
        var run = Path.Combine(_dir, "run");
        var (code, _, error) = Run([.. Tiny, "--steps", "24", "--out", run]);
        Assert.True(code == 0, error);
        var config = RunConfig.Load(run);
        Assert.Equal(("gaussian", "adam", 24, 3), (config.Dataset.Name, config.Optimizer.Name, config.Training.Steps, config.Monitor.RecordEvery));
        Assert.Equal(0.01, config.Optimizer.LearningRate);
        Assert.Equal("cpu", config.Device);
        Assert.Contains("torchsharp", config.Versions.Keys);
        var summary = File.ReadAllText(Path.Combine(run, "summary.json"));

        (code, _, error) = Run([.. Tiny, "--steps", "24", "--out", run]);
        Assert.Equal(2, code);
        Assert.Contains($"--out '{run}' is not empty", error);
        Assert.Contains("--resume", error);
        Assert.Equal(summary, File.ReadAllText(Path.Combine(run, "summary.json")));

        (code, var output, error) = Run("train", "--resume", run);
        Assert.True(code == 0, error);
        Assert.Contains("already finished (24 of 24 steps); nothing to do", output);
        Assert.Equal(summary, File.ReadAllText(Path.Combine(run, "summary.json")));

        (code, _, error) = Run("train", "--resume", run, "--lr", "0.5");
        Assert.Equal(2, code);
        Assert.Contains("drop --lr", error);

        // --overwrite: a new run from scratch (different steps) replaces every file.
        (code, _, error) = Run([.. Tiny, "--steps", "10", "--overwrite", "--out", run]);
        Assert.True(code == 0, error);
        Assert.Equal(10, RunConfig.Load(run).Training.Steps);
        Assert.Equal(10, JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json"))).RootElement.GetProperty("steps").GetInt32());
        Assert.Equal(2, Curve(run).Count(l => l.Contains("split=\"train\"", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_diverged_run_exits_3_unless_divergence_is_allowed_and_keeps_its_files()
    {
        var run = Path.Combine(_dir, "diverged");
        string[] args = ["train", "--dataset", "gaussian", "--model", "mlp", "--depth", "2", "--width", "16", "--steps", "50", "--lr", "1000"];
        var (code, _, error) = Run([.. args, "--out", run]);
        Assert.True(code == 3, error);   // TrainCommand.DivergedExitCode
        var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json"))).RootElement;
        Assert.Equal(JsonValueKind.Number, summary.GetProperty("diverged_at_step").ValueKind);
        (code, _, error) = Run([.. args, "--allow-divergence", "--overwrite", "--out", run]);
        Assert.True(code == 0, error);
    }

    [Fact]
    public void A_locked_directory_is_refused_naming_the_holder_and_nothing_is_written()
    {
        var run = Directory.CreateDirectory(Path.Combine(_dir, "locked")).FullName;
        using (RunLock.Acquire(run))
        {
            var (code, _, error) = Run([.. Tiny, "--out", run]);
            Assert.Equal(2, code);
            Assert.Contains($"'{run}' is in use by another covshift process (pid {Environment.ProcessId})", error);
            Assert.Single(error.TrimEnd('\n').Split('\n'));
        }
        Assert.DoesNotContain(Directory.GetFiles(run), f => !RunLock.IsLockFile(Path.GetFileName(f)));
    }

    [Fact]
    public void Resume_never_writes_through_a_planted_symlink()
    {
        var run = Path.Combine(_dir, "run");
        var (code, _, error) = Run([.. Tiny, "--out", run]);
        Assert.True(code == 0, error);
        // Pretend the run was interrupted: mark last unfinished by re-saving it, then plant a link as training.jsonl.
        var last = Path.Combine(run, "checkpoints", "last");
        var contents = RunCheckpoint.Load(last);
        RunCheckpoint.Save(last, contents with { State = contents.State with { Finished = false, Step = 20 } });
        var victim = Path.Combine(_dir, "victim.txt");
        File.WriteAllText(victim, "keep me");
        File.Delete(Path.Combine(run, "training.jsonl"));
        File.CreateSymbolicLink(Path.Combine(run, "training.jsonl"), victim);
        (code, _, error) = Run("train", "--resume", run);
        Assert.Equal(2, code);
        Assert.Contains("is a symbolic link", error);
        Assert.Equal("keep me", File.ReadAllText(victim));
    }

    [Fact]
    public void Bad_data_and_spec_files_are_one_line_errors_before_anything_is_written()
    {
        var outDir = Path.Combine(_dir, "out");
        var mnist = Directory.CreateDirectory(Path.Combine(_dir, "mnist")).FullName;
        foreach (var (prefix, n) in new[] { ("train", 20), ("t10k", 10) })
        {
            IdxReader.Write(Path.Combine(mnist, $"{prefix}-images-idx3-ubyte"), [n, 28, 28], new byte[n * 784]);
            var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
            if (prefix == "t10k") labels[7] = 200;
            IdxReader.Write(Path.Combine(mnist, $"{prefix}-labels-idx1-ubyte"), [n], labels);
        }
        var duplicate = Path.Combine(_dir, "dup.json");
        File.WriteAllText(duplicate, """{ "architecture": "mlp", "inputShape": [1, 28, 28], "depth": 2, "width": 8, "depth": 3 }""");
        var huge = Path.Combine(_dir, "huge.json");
        File.WriteAllText(huge, """{ "architecture": "mlp", "inputShape": [1, 28, 28], "depth": 2, "width": 2000000000 }""");
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--dataset", "mnist", "--data-dir", mnist, "--batch-size", "5"], "t10k-labels-idx1-ubyte', record 7: label 200 is out of range; expected 0..9"),
            (["--model", duplicate], $"Model spec '{duplicate}', field 'depth': given twice"),
            (["--model", huge], "parameters; expected at most"),
            (["--model", _dir], $"Model spec '{_dir}' is a directory"),
        })
        {
            var (code, _, error) = Run(["train", .. args, "--steps", "2", "--out", outDir]);
            Assert.Equal(2, code);
            Assert.StartsWith("error: ", error);
            Assert.Contains(expected, error);
            Assert.Single(error.TrimEnd('\n').Split('\n'));
            Assert.False(Directory.Exists(outDir));
        }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Sigint_finishes_the_step_saves_last_exits_130_and_resume_matches_a_straight_run()
    {
        string[] args = ["train", "--dataset", "gaussian", "--model", "mlp", "--depth", "3", "--width", "64", "--norm", "batch", "--batch-size", "32",
            "--steps", "3000", "--log-every", "7", "--record-every", "5", "--optimizer", "sgd", "--nesterov", "--lr", "0.02", "--schedule", "cosine", "--warmup-steps", "50"];
        var straight = Path.Combine(_dir, "straight");
        var (code, _, error) = Run([.. args, "--out", straight]);
        Assert.True(code == 0, error);

        var interrupted = Path.Combine(_dir, "interrupted");
        var cli = Path.Combine(AppContext.BaseDirectory, "covshift.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])[cli, .. args, "--out", interrupted]) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var training = Path.Combine(interrupted, "training.jsonl");
        var clock = Stopwatch.StartNew();
        while (!File.Exists(training) || File.ReadAllLines(training).Length < 20)
        {
            Assert.False(process.HasExited, $"exited early: {stderr}");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "no training lines within 120 s");
            Thread.Sleep(20);
        }
        // The last step the run had logged before the signal (training.jsonl also holds evaluation lines).
        long seenStep = File.ReadAllLines(training).Where(l => l.EndsWith('}')).Max(l => JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64());
        using (var kill = Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
        Assert.True(process.WaitForExit(60_000), "did not exit within 60 s of SIGINT");
        process.WaitForExit();
        Assert.Equal(130, process.ExitCode);
        Assert.Contains($"Resume with: covshift train --resume {interrupted}", stderr.ToString());
        var state = RunCheckpoint.Load(Path.Combine(interrupted, "checkpoints", "last")).State;
        Assert.InRange(state.Step, seenStep, 2999);   // saved at or after the last logged step, before the end
        var partial = TrainResult.Read(Path.Combine(interrupted, "summary.json"));   // how far it got, "interrupted": true
        Assert.True(partial.Interrupted);
        Assert.Equal(state.Step, partial.Steps);
        Assert.False(File.Exists(Path.Combine(interrupted, "checkpoint.bin")));

        (code, _, error) = Run("train", "--resume", interrupted);
        Assert.True(code == 0, error);
        Assert.Equal(Curve(straight), Curve(interrupted));
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "checkpoint.bin")), File.ReadAllBytes(Path.Combine(interrupted, "checkpoint.bin")));
        var straightMetrics = File.ReadAllLines(Path.Combine(straight, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64()).ToList();
        var resumedMetrics = File.ReadAllLines(Path.Combine(interrupted, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64()).ToList();
        Assert.Equal(straightMetrics, resumedMetrics);
    }
}
