using System.CommandLine;
using System.Globalization;
using CovariateShift.Cli.Sweeps;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift sweep SPEC.json --out DIR</c>: a grid of <c>covshift train</c> runs, each point into DIR/runs/&lt;id&gt;,
/// run locally (one after another or <c>--parallel N</c>) or as a Slurm job array (<c>--engine slurm</c>); reruns skip
/// finished points, resume interrupted ones and rerun failed ones. Writes DIR/sweep.json, results.csv, results.jsonl
/// and report.html. <c>covshift sweep status DIR</c> shows every point; <c>covshift sweep collect DIR</c> rewrites the
/// results. Exit codes: 0 every point finished (or diverged), 1 a point failed or did not finish, 2 user mistake
/// (nothing run), 130 interrupted.
/// </summary>
internal static class SweepCommand
{
    /// <summary>Exit code when a point failed or did not finish.</summary>
    public const int PointFailedExitCode = 1;

    public static Command Create()
    {
        var spec = new Argument<string>("SPEC") { Description = "Sweep spec (JSON): base (train options), grid (option -> list of values) or points (list of option objects), optional repeat (seeds)." };
        var output = new Option<string?>("--out") { Description = "Sweep directory: sweep.json, runs/<id>/, points/<id>/, results.csv, results.jsonl, report.html." };
        var engine = new Option<string>("--engine") { Description = "local (this machine) or slurm (a job array submitted with sbatch).", DefaultValueFactory = _ => "local" };
        var parallel = CliNumbers.WholeNumber("--parallel", "local: points trained at once (one process each).", 1, 1);
        var partition = new Option<string?>("--partition") { Description = "slurm: partition of the tasks." };
        var time = new Option<string?>("--time") { Description = "slurm: time limit per task (e.g. 30, 2:00:00, 1-00:00:00); a task gets SIGTERM --signal-before seconds earlier and checkpoints." };
        var cpus = CliNumbers.OptionalInt("--cpus-per-task", "slurm: CPUs per task.", 1);
        var gpus = CliNumbers.OptionalInt("--gpus-per-task", "slurm: GPUs per task.", 1);
        var mem = new Option<string?>("--mem") { Description = "slurm: memory per task (e.g. 4G)." };
        var maxRunning = CliNumbers.OptionalInt("--max-running", "slurm: at most N tasks of the array at once (the array's %N).", 1);
        var signalBefore = CliNumbers.WholeNumber("--signal-before", "slurm: seconds before the time limit at which a task gets SIGTERM.", 60, 1);
        var wait = new Option<bool>("--wait") { Description = "slurm: follow the job to its end (counts as they change), write the results, exit 1 if a point failed." };
        var poll = CliNumbers.WholeNumber("--poll", "slurm --wait: seconds between squeue calls.", 5, 1);
        var noReport = new Option<bool>("--no-report") { Description = "Write results.csv and results.jsonl but not report.html." };
        var cmd = new Command("sweep", "Train a grid of covshift train runs (local processes or a Slurm job array) into DIR/runs/<id>; results.csv, results.jsonl, report.html. Subcommands: status, collect.")
        {
            spec, output, engine, parallel, partition, time, cpus, gpus, mem, maxRunning, signalBefore, wait, poll, noReport,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var eng = parse.GetValue(engine)!.Trim().ToLowerInvariant();
            if (eng is not ("local" or "slurm")) throw new ArgumentException($"--engine '{eng}' is not known; expected local or slurm.");
            var slurmOnly = new Option[] { partition, time, cpus, gpus, mem, maxRunning, signalBefore, wait, poll }.Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
            if (eng == "local" && slurmOnly.Count > 0) throw new ArgumentException($"{string.Join(", ", slurmOnly)} apply to --engine slurm only.");
            if (eng == "slurm" && parse.GetResult(parallel) is { Implicit: false }) throw new ArgumentException("--parallel applies to --engine local only; Slurm runs the tasks (limit them with --max-running).");
            var slurm = new SlurmOptions
            {
                Partition = NonEmpty(parse.GetValue(partition), "--partition"),
                Time = NonEmpty(parse.GetValue(time), "--time"),
                CpusPerTask = parse.GetValue(cpus),
                GpusPerTask = parse.GetValue(gpus),
                Memory = NonEmpty(parse.GetValue(mem), "--mem"),
                MaxRunning = parse.GetValue(maxRunning),
                SignalSeconds = parse.GetValue(signalBefore),
            };
            var outArg = parse.GetValue(output) ?? throw new ArgumentException("Option '--out' is required: the sweep directory (e.g. --out runs/sweep1).");
            return Run(parse.GetValue(spec)!, outArg, eng, parse.GetValue(parallel), slurm, parse.GetValue(wait), TimeSpan.FromSeconds(parse.GetValue(poll)), !parse.GetValue(noReport));
        }));
        cmd.Subcommands.Add(CreateStatus());
        cmd.Subcommands.Add(CreateCollect());
        cmd.Subcommands.Add(CreateRunPoint());
        return cmd;
    }

    private static string? NonEmpty(string? value, string option) =>
        value is null ? null
        : string.IsNullOrWhiteSpace(value) || value.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)) ? throw new ArgumentException($"{option} '{value}' must be one word without spaces.") : value;

    private static Command CreateStatus()
    {
        var dir = new Argument<string>("DIR") { Description = "Sweep directory." };
        var cmd = new Command("status", "Per point: pending, running, finished (final and best test accuracy), failed (the error's first line), diverged, interrupted; then the counts. Reads the run directories and, for Slurm, squeue.") { dir };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var d = Path.GetFullPath(parse.GetValue(dir)!);
            var manifest = SweepManifest.Load(d);
            var queue = manifest.SlurmJobs.Count > 0 ? SlurmEngine.Queue(manifest.SlurmJobs.Select(j => j.JobId)) : null;
            var reports = SweepStatus.Read(d, manifest, queue);
            Console.WriteLine($"sweep {d}{(manifest.SlurmJobs.Count > 0 ? $" (slurm jobs {string.Join(", ", manifest.SlurmJobs.Select(j => j.JobId))}{(queue is null ? "; squeue not available" : "")})" : "")}");
            Console.Write(SweepStatus.Format(reports));
            return 0;
        }));
        return cmd;
    }

    private static Command CreateCollect()
    {
        var dir = new Argument<string>("DIR") { Description = "Sweep directory." };
        var noReport = new Option<bool>("--no-report") { Description = "Skip report.html." };
        var cmd = new Command("collect", "Write results.csv, results.jsonl (one row per point) and report.html (every run that ended) of a sweep directory.") { dir, noReport };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var d = Path.GetFullPath(parse.GetValue(dir)!);
            var manifest = SweepManifest.Load(d);
            var queue = manifest.SlurmJobs.Count > 0 ? SlurmEngine.Queue(manifest.SlurmJobs.Select(j => j.JobId)) : null;
            Collect(d, manifest, SweepStatus.Read(d, manifest, queue), !parse.GetValue(noReport));
            return 0;
        }));
        return cmd;
    }

    private static Command CreateRunPoint()
    {
        var dir = new Argument<string>("DIR") { Description = "Sweep directory." };
        var index = CliNumbers.WholeNumber("--index", "Point index (the Slurm array task id).", 0, 0);
        var cmd = new Command("run-point", "Train one point of a sweep (what each local worker and Slurm array task runs).") { dir, index };
        cmd.Hidden = true;
        cmd.SetAction(parse => CliRunner.Run(() => PointRunner.Run(parse.GetValue(dir)!, parse.GetValue(index))));
        return cmd;
    }

    private static int Run(string specPath, string outArg, string engine, int parallel, SlurmOptions slurm, bool wait, TimeSpan poll, bool report)
    {
        // 1. Everything that can be refused without writing: the spec, every point (train's own parser), the engine.
        var plan = SweepPlan.Create(SweepSpec.Load(specPath));
        plan.Validate();
        if (string.IsNullOrWhiteSpace(outArg)) throw new ArgumentException("--out must name a directory; got an empty value.");
        var dir = Path.GetFullPath(outArg);
        if (File.Exists(dir)) throw new ArgumentException($"--out '{outArg}' is an existing file; expected a sweep directory (created when missing).");
        if (engine == "slurm")
        {
            SlurmEngine.CheckDirectory(dir);
            if (!SlurmEngine.Available()) throw new ArgumentException("--engine slurm needs sbatch on PATH (the Slurm client tools); none found. For a one-node Slurm on this machine: scripts/slurm-local.sh start.");
        }

        // 2. The directory: locked for this sweep; an earlier sweep's points must match this spec's.
        var existed = Directory.Exists(dir);
        using var sweepLock = SweepLayout.Lock(dir);
        var manifest = SweepManifest.From(plan, DateTimeOffset.UtcNow);
        IReadOnlyDictionary<int, SlurmTaskState>? queue = null;
        if (SweepManifest.Exists(dir))
        {
            var old = SweepManifest.Load(dir);
            old.CheckCompatible(manifest, dir);
            var dropped = old.Points.Count(p => manifest.Points.All(n => n.Id != p.Id));
            if (dropped > 0) Console.WriteLine($"note: {dropped} point(s) of the previous spec are not in this one; their run directories stay in {Path.Combine(dir, SweepLayout.RunsDirectoryName)}.");
            if (old.SlurmJobs.Count > 0)
            {
                queue = SlurmEngine.Queue(old.SlurmJobs.Select(j => j.JobId));
                if (queue is { Count: > 0 })
                {
                    var jobs = string.Join(", ", queue.Values.Select(q => q.JobId).Distinct());
                    throw new ArgumentException($"The sweep in '{dir}' still has {queue.Count} task(s) in the Slurm queue (job {jobs}); wait for them (covshift sweep status {dir}) or cancel them (scancel {jobs}) before running it again.");
                }
            }
            manifest = manifest with { Created = old.Created, SlurmJobs = old.SlurmJobs };
        }
        else if (existed && Directory.EnumerateFileSystemEntries(dir).Any(e => !RunLock.IsLockFile(Path.GetFileName(e))))
        {
            throw new ArgumentException($"--out '{outArg}' is not empty and holds no {SweepManifest.FileName}; expected a new directory or one an earlier covshift sweep wrote.");
        }
        manifest.Save(dir);

        // 3. What is left to do.
        var reports = SweepStatus.Read(dir, manifest, queue);
        var todo = reports.Where(r => r.Status is not (PointStatus.Finished or PointStatus.Diverged or PointStatus.Running)).Select(r => r.Point.Index).ToList();
        int done = reports.Count(r => r.Status is PointStatus.Finished or PointStatus.Diverged);
        var elsewhere = reports.Where(r => r.Status == PointStatus.Running).ToList();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sweep {dir}: {manifest.Points.Count} points{(plan.Spec.Grid.Count > 0 ? $" ({string.Join(" x ", plan.Spec.Grid.Select(a => $"{a.Values.Count} {a.Name}"))}{(plan.Spec.Seeds is { } s ? $" x {s.Count} seeds" : "")})" : "")}; {done} already done, {todo.Count} to run{(elsewhere.Count > 0 ? $", {elsewhere.Count} running elsewhere" : "")} ({engine})"));
        if (todo.Count == 0)
        {
            Collect(dir, manifest, reports, report);
            return elsewhere.Count > 0 || reports.Any(r => r.Status is not (PointStatus.Finished or PointStatus.Diverged)) ? PointFailedExitCode : 0;
        }

        if (engine == "local")
        {
            using var cancel = InterruptHandler.Install();
            LocalEngine.Run(dir, manifest, todo, parallel, done, Console.Out, cancel.Token);
            reports = SweepStatus.Read(dir, manifest);
            Console.WriteLine(SweepStatus.CountLine(reports));
            Collect(dir, manifest, reports, report);
            if (cancel.Token.IsCancellationRequested)
            {
                Console.Error.WriteLine($"Interrupted: the running points saved checkpoints. Run the same command again to resume: covshift sweep {specPath} --out {outArg}");
                return TrainCommand.InterruptedExitCode;
            }
            return Outcome(reports, dir);
        }

        // Slurm: the script for the points left, submitted as one array.
        var script = Path.Combine(dir, SweepLayout.ScriptFileName);
        SweepLayout.CreateBelow(dir, Path.Combine(dir, SweepLayout.LogsDirectoryName));
        SafeFile.WriteAtomic(script, SlurmEngine.Script(dir, todo, slurm, CovshiftExecutable.Command()));
        var jobId = SlurmEngine.Submit(script);
        manifest = manifest with { SlurmJobs = [.. manifest.SlurmJobs, new SlurmSubmission(jobId, DateTimeOffset.UtcNow, todo)] };
        manifest.Save(dir);
        Console.WriteLine($"submitted slurm job {jobId}: array {SlurmEngine.ArraySpec(todo, slurm.MaxRunning)} ({todo.Count} task(s)); script {script}; task output in {Path.Combine(dir, SweepLayout.LogsDirectoryName)}");
        if (!wait)
        {
            Console.WriteLine($"follow it with: covshift sweep status {dir}   (results: covshift sweep collect {dir})");
            return 0;
        }
        using (var cancel = InterruptHandler.Install())
        {
            SlurmEngine.Wait(dir, manifest, jobId, Console.Out, poll, cancel.Token);
            if (cancel.Token.IsCancellationRequested)
            {
                Console.Error.WriteLine($"Stopped following job {jobId} (it keeps running): covshift sweep status {dir}");
                return TrainCommand.InterruptedExitCode;
            }
        }
        reports = SweepStatus.Read(dir, manifest, SlurmEngine.Queue(manifest.SlurmJobs.Select(j => j.JobId)));
        Console.Write(SweepStatus.Format(reports));
        Collect(dir, manifest, reports, report);
        return Outcome(reports, dir);
    }

    private static int Outcome(IReadOnlyList<PointReport> reports, string dir)
    {
        var bad = reports.Where(r => r.Status is not (PointStatus.Finished or PointStatus.Diverged)).ToList();
        if (bad.Count == 0) return 0;
        foreach (var r in bad.Take(10)) Console.Error.WriteLine($"error: point '{r.Point.Id}' {SweepResults.StatusName(r.Status)}{(r.Note is null ? "" : ": " + r.Note)}");
        Console.Error.WriteLine($"error: {bad.Count} of {reports.Count} points did not finish; rerun the same sweep to run them again (finished points are skipped). Logs: {Path.Combine(dir, SweepLayout.PointsDirectoryName)}/<id>/");
        return PointFailedExitCode;
    }

    private static void Collect(string dir, SweepManifest manifest, IReadOnlyList<PointReport> reports, bool report)
    {
        var rows = SweepResults.Compute(dir, reports);
        var written = SweepResults.Write(dir, manifest.AxisNames, rows, report);
        Console.WriteLine($"results: {written.CsvPath}, {written.JsonLinesPath}{(written.Report is { } r ? $"; report: {r.HtmlPath} ({r.Runs.Count} runs)" : "")}");
    }
}
