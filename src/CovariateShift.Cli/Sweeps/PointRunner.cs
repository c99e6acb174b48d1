using System.Globalization;
using System.Text;
using CovariateShift.Cli.Commands;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Sweeps;

/// <summary>
/// Runs one sweep point in this process (<c>covshift sweep run-point DIR --index I</c>: what a local worker process and
/// a Slurm array task execute): takes the point's lock, trains it with <c>covshift train</c> (a new run; <c>--resume</c>
/// when its run directory has an unfinished checkpoint; <c>--overwrite</c> when a previous attempt left files but no
/// checkpoint), and records the outcome in points/&lt;id&gt;/state.json. SIGTERM and Ctrl+C reach the train command's own
/// handler, which finishes the step and saves a checkpoint.
/// </summary>
public static class PointRunner
{
    /// <summary>Exit code of a point that failed without an exit code of its own.</summary>
    public const int FailedExitCode = 1;

    /// <summary>Runs point <paramref name="index"/> of the sweep in <paramref name="sweepDirectory"/>; returns the exit code
    /// (0 finished or diverged, 130 interrupted, otherwise the train command's code).</summary>
    /// <exception cref="ArgumentException">No such sweep directory or index.</exception>
    /// <exception cref="IOException">The point is already running elsewhere (its lock is held).</exception>
    public static int Run(string sweepDirectory, int index)
    {
        ArgumentNullException.ThrowIfNull(sweepDirectory);
        var dir = Path.GetFullPath(sweepDirectory);
        var manifest = SweepManifest.Load(dir);
        if (index < 0 || index >= manifest.Points.Count)
            throw new ArgumentException($"--index {index} is not a point of the sweep in '{dir}'; expected 0 to {manifest.Points.Count - 1}.");
        var point = manifest.Points[index];
        var pointDir = SweepLayout.CreateBelow(dir, SweepLayout.PointDirectory(dir, point.Id));
        SweepLayout.CreateBelow(dir, Path.Combine(dir, SweepLayout.RunsDirectoryName));
        using var pointLock = LockPoint(pointDir, point.Id);
        var runDir = SweepLayout.RunDirectory(dir, point.Id);
        var previous = PointState.Load(pointDir);
        var host = Environment.MachineName;
        var slurm = SlurmTask();

        if (RunSummary.TryLoad(runDir) is { } done)
        {
            Console.WriteLine($"covshift sweep: point {index} '{point.Id}' is already {(done.Diverged ? "diverged" : "finished")}; nothing to do.");
            if (previous?.Status is not (PointStatus.Finished or PointStatus.Diverged))
                (previous ?? new PointState(PointStatus.Pending, 0, null, null, 0, null, null, null, host, slurm)).WithOutcome(done.Diverged ? PointStatus.Diverged : PointStatus.Finished, 0, null).Save(pointDir);
            return 0;
        }

        var (args, how) = TrainArguments(point, runDir);
        var started = DateTimeOffset.UtcNow;
        var running = new PointState(PointStatus.Running, (previous?.Attempts ?? 0) + 1, started, null, previous?.ElapsedSeconds ?? 0, null, null, Environment.ProcessId, host, slurm);
        running.Save(pointDir);
        Console.WriteLine($"covshift sweep: point {index} '{point.Id}' ({how}) -> {runDir}");
        Console.WriteLine($"covshift {string.Join(" ", args.Select(Quote))}");
        Console.Out.Flush();

        var capture = new ErrorCapture(Console.Error);
        Console.SetError(capture);
        int code;
        try
        {
            code = CliApp.Run([.. args]);
        }
        finally
        {
            Console.SetError(capture.Inner);
        }
        var summary = RunSummary.TryLoad(runDir);
        var status = code switch
        {
            0 or TrainCommand.DivergedExitCode or TrainCommand.ForecastStopExitCode when summary is not null => summary.Diverged ? PointStatus.Diverged : PointStatus.Finished,
            TrainCommand.InterruptedExitCode => PointStatus.Interrupted,
            _ => PointStatus.Failed,
        };
        string? error = status == PointStatus.Failed
            ? capture.Best ?? (code == 0 ? $"covshift train exited 0 but wrote no {TrainCommand.SummaryFileName}" : $"covshift train exited with code {code}")
            : null;
        var elapsed = (DateTimeOffset.UtcNow - started).TotalSeconds;
        (running with { ElapsedSeconds = running.ElapsedSeconds + elapsed, Ended = DateTimeOffset.UtcNow }).WithOutcome(status, code, error).Save(pointDir);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"covshift sweep: point {index} '{point.Id}' {status.ToString().ToLowerInvariant()} (exit code {code}, {elapsed:F1} s){(error is null ? "" : ": " + error)}"));
        return status switch
        {
            PointStatus.Finished or PointStatus.Diverged => 0,
            PointStatus.Interrupted => TrainCommand.InterruptedExitCode,
            _ => code == 0 ? FailedExitCode : code,
        };
    }

    /// <summary>
    /// The train arguments for a point's next attempt and how it starts: "new", "resume" (an unfinished checkpoint),
    /// or "overwrite" (files of an attempt that left no usable checkpoint).
    /// </summary>
    public static (IReadOnlyList<string> Arguments, string How) TrainArguments(ManifestPoint point, string runDirectory)
    {
        ArgumentNullException.ThrowIfNull(point);
        var last = Path.Combine(runDirectory, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName);
        if (File.Exists(last))
        {
            bool finished;
            try
            {
                finished = RunCheckpoint.Load(last).State.Finished;
            }
            catch (Exception e) when (e is InvalidDataException or IOException or EndOfStreamException)
            {
                finished = true;   // unreadable: start over
            }
            if (!finished) return (["train", "--resume", runDirectory, .. DeviceOf(point)], "resume");
        }
        bool leftovers = Directory.Exists(runDirectory) && Directory.EnumerateFileSystemEntries(runDirectory).Any(e => !RunLock.IsLockFile(Path.GetFileName(e)));
        return leftovers
            ? (["train", .. point.Arguments, "--out", runDirectory, "--overwrite"], "overwrite")
            : (["train", .. point.Arguments, "--out", runDirectory], "new");
    }

    /// <summary>--device of the point (the one option --resume accepts).</summary>
    private static string[] DeviceOf(ManifestPoint point)
    {
        var args = point.Arguments;
        for (int i = 0; i + 1 < args.Count; i++)
        {
            if (args[i] == "--device") return ["--device", args[i + 1]];
        }
        return [];
    }

    private static RunLock LockPoint(string pointDir, string id)
    {
        try
        {
            return RunLock.Acquire(pointDir);
        }
        catch (IOException e)
        {
            string holder = "unknown";
            try
            {
                holder = File.ReadAllText(Path.Combine(pointDir, RunLock.PidFileName)).Trim();
            }
            catch (Exception r) when (r is IOException or UnauthorizedAccessException)
            {
                // keep "unknown"
            }
            throw new IOException($"sweep point '{id}' is already running (pid {holder}); wait for it to finish.", e);
        }
    }

    /// <summary>Whether another process runs the point now (its lock is held). Takes and releases the lock when free.</summary>
    public static bool IsRunning(string pointDirectory)
    {
        if (!Directory.Exists(pointDirectory)) return false;
        try
        {
            using var probe = RunLock.Acquire(pointDirectory);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>JOB_TASK of the Slurm array task this process runs in, the job id outside an array, or null.</summary>
    private static string? SlurmTask()
    {
        var job = Environment.GetEnvironmentVariable("SLURM_ARRAY_JOB_ID");
        var task = Environment.GetEnvironmentVariable("SLURM_ARRAY_TASK_ID");
        if (!string.IsNullOrEmpty(job) && !string.IsNullOrEmpty(task)) return $"{job}_{task}";
        var id = Environment.GetEnvironmentVariable("SLURM_JOB_ID");
        return string.IsNullOrEmpty(id) ? null : id;
    }

    private static PointState WithOutcome(this PointState s, PointStatus status, int code, string? error) => s with { Status = status, ExitCode = code, Error = error };

    private static string Quote(string a) => a.Length > 0 && a.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=,:+%".Contains(c)) ? a : "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>Passes stderr through and keeps the first "error: ..." line (else the last non-blank line).</summary>
    private sealed class ErrorCapture(TextWriter inner) : TextWriter
    {
        private readonly StringBuilder _line = new();
        private string? _last;

        public TextWriter Inner { get; } = inner;

        public string? FirstError { get; private set; }

        public override Encoding Encoding => Inner.Encoding;

        public override void Write(char value)
        {
            Inner.Write(value);
            if (value == '\n') EndLine();
            else if (value != '\r') _line.Append(value);
        }

        public override void Write(string? value)
        {
            if (value is null) return;
            foreach (var c in value) Write(c);
        }

        public override void WriteLine(string? value)
        {
            Write(value);
            Write('\n');
        }

        public override void Flush() => Inner.Flush();

        private void EndLine()
        {
            var text = _line.ToString().Trim();
            _line.Clear();
            if (text.Length == 0) return;
            _last = text;
            if (FirstError is null && text.StartsWith("error:", StringComparison.Ordinal)) FirstError = text;
        }

        public string? Best => FirstError ?? _last;
    }
}
