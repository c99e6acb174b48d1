using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace CovariateShift.Cli.Sweeps;

/// <summary>A sweep task in the Slurm queue.</summary>
/// <param name="JobId">The array job id.</param>
/// <param name="Index">The array task id (point index).</param>
/// <param name="State">Slurm's state (PENDING, RUNNING, COMPLETING, ...).</param>
public sealed record SlurmTaskState(string JobId, int Index, string State);

/// <summary>Resources and limits of each Slurm array task (<c>covshift sweep --engine slurm</c> flags).</summary>
public sealed record SlurmOptions
{
    /// <summary>--partition, or null for the cluster's default.</summary>
    public string? Partition { get; init; }

    /// <summary>--time limit per task (Slurm syntax: minutes, MM:SS, HH:MM:SS, D-HH), or null.</summary>
    public string? Time { get; init; }

    /// <summary>--cpus-per-task, or null.</summary>
    public int? CpusPerTask { get; init; }

    /// <summary>--gpus-per-task, or null.</summary>
    public int? GpusPerTask { get; init; }

    /// <summary>--mem per task (e.g. 4G), or null.</summary>
    public string? Memory { get; init; }

    /// <summary>The array's %M: at most this many tasks at once, or null for no limit.</summary>
    public int? MaxRunning { get; init; }

    /// <summary>Seconds before the time limit at which a task gets SIGTERM (and checkpoints).</summary>
    public int SignalSeconds { get; init; } = 60;

    /// <summary>--job-name.</summary>
    public string JobName { get; init; } = "covshift-sweep";
}

/// <summary>
/// The Slurm engine: DIR/sweep.sbatch is a job array with one task per point to run; each task executes
/// <c>covshift sweep run-point DIR --index $SLURM_ARRAY_TASK_ID</c> in place of the batch shell (so the task's SIGTERM,
/// sent <see cref="SlurmOptions.SignalSeconds"/> before the time limit or on preemption, reaches the trainer, which
/// saves a checkpoint; a requeued or rerun task resumes from it). Submitted with <c>sbatch --parsable</c>; the queue is
/// read with <c>squeue</c>.
/// </summary>
public static class SlurmEngine
{
    /// <summary>The array specification of <paramref name="indices"/>: ranges joined by ',' (0-3,7), with %M when limited.</summary>
    public static string ArraySpec(IReadOnlyList<int> indices, int? maxRunning)
    {
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.Count == 0) throw new ArgumentException("No point to submit.", nameof(indices));
        var sorted = indices.Distinct().Order().ToList();
        var parts = new List<string>();
        for (int i = 0; i < sorted.Count;)
        {
            int j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] == sorted[j] + 1) j++;
            parts.Add(i == j ? sorted[i].ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{sorted[i]}-{sorted[j]}"));
            i = j + 1;
        }
        var spec = string.Join(",", parts);
        return maxRunning is { } m ? string.Create(CultureInfo.InvariantCulture, $"{spec}%{m}") : spec;
    }

    /// <summary>The batch script that runs <paramref name="indices"/> of the sweep in <paramref name="sweepDirectory"/> with <paramref name="command"/> (covshift).</summary>
    public static string Script(string sweepDirectory, IReadOnlyList<int> indices, SlurmOptions options, IReadOnlyList<string> command)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(command);
        var dir = Path.GetFullPath(sweepDirectory);
        var sb = new StringBuilder();
        sb.Append("#!/bin/bash\n");
        sb.Append("# Written by covshift sweep --engine slurm. One array task per point: each runs covshift sweep run-point, which\n");
        sb.Append("# trains runs/<id> (with --resume when it holds an unfinished checkpoint) and records points/<id>/state.json.\n");
        sb.Append("# The paths below must exist on every compute node (a shared file system). Submit again with: sbatch sweep.sbatch\n");
        sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --job-name={options.JobName}\n");
        sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --array={ArraySpec(indices, options.MaxRunning)}\n");
        sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --output={Path.Combine(dir, SweepLayout.LogsDirectoryName, "slurm-%A_%a.out")}\n");
        sb.Append("#SBATCH --open-mode=append\n");
        sb.Append("#SBATCH --requeue\n");
        sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --signal=B:TERM@{options.SignalSeconds}\n");
        if (options.Partition is { } p) sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --partition={p}\n");
        if (options.Time is { } t) sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --time={t}\n");
        if (options.CpusPerTask is { } c) sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --cpus-per-task={c}\n");
        if (options.GpusPerTask is { } g) sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --gpus-per-task={g}\n");
        if (options.Memory is { } m) sb.Append(CultureInfo.InvariantCulture, $"#SBATCH --mem={m}\n");
        sb.Append("set -u\n");
        sb.Append("# exec: the task's signals (SIGTERM before the time limit, scancel, preemption) go straight to covshift.\n");
        sb.Append(CultureInfo.InvariantCulture, $"exec {string.Join(" ", command.Select(ShellQuote))} sweep run-point {ShellQuote(dir)} --index \"$SLURM_ARRAY_TASK_ID\"\n");
        return sb.ToString();
    }

    /// <summary>Refuses sweep directories that #SBATCH lines cannot carry (whitespace, quotes, '%').</summary>
    public static void CheckDirectory(string sweepDirectory)
    {
        var full = Path.GetFullPath(sweepDirectory);
        if (full.Any(c => char.IsWhiteSpace(c) || c is '"' or '\'' or '%' or '\\'))
            throw new ArgumentException($"--out '{full}' holds a space, quote, '%' or backslash, which #SBATCH lines cannot carry; choose a plain path for --engine slurm.");
    }

    /// <summary>Submits <paramref name="scriptPath"/> with <c>sbatch --parsable</c>; returns the job id.</summary>
    /// <exception cref="InvalidOperationException">sbatch is missing or refused the job (its message is included).</exception>
    public static string Submit(string scriptPath)
    {
        var (code, stdout, stderr) = Tool("sbatch", ["--parsable", scriptPath], TimeSpan.FromSeconds(60));
        if (code != 0) throw new InvalidOperationException($"sbatch refused {scriptPath} (exit code {code}): {FirstLine(stderr) ?? FirstLine(stdout)}");
        var id = stdout.Trim().Split(';')[0].Trim();
        if (id.Length == 0 || !id.All(char.IsAsciiDigit)) throw new InvalidOperationException($"sbatch --parsable printed '{stdout.Trim()}'; expected a job id.");
        return id;
    }

    /// <summary>Whether sbatch is on PATH.</summary>
    public static bool Available() => FindOnPath("sbatch") is not null;

    /// <summary>
    /// The tasks of <paramref name="jobIds"/> still in the queue, by point index (<c>squeue -r</c>); null when squeue
    /// is not available or fails.
    /// </summary>
    public static IReadOnlyDictionary<int, SlurmTaskState>? Queue(IEnumerable<string> jobIds)
    {
        ArgumentNullException.ThrowIfNull(jobIds);
        var ids = jobIds.ToList();
        if (FindOnPath("squeue") is null) return null;
        var result = new Dictionary<int, SlurmTaskState>();
        if (ids.Count == 0) return result;
        var (code, stdout, _) = Tool("squeue", ["-h", "-r", "-j", string.Join(",", ids), "-o", "%F|%K|%T"], TimeSpan.FromSeconds(30));
        if (code != 0)
        {
            // squeue fails for job ids the controller no longer knows; ask one by one.
            if (ids.Count == 1) return result;
            foreach (var id in ids)
            {
                if (Queue([id]) is not { } one) return null;
                foreach (var (k, v) in one) result[k] = v;
            }
            return result;
        }
        foreach (var line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split('|');
            if (parts.Length == 3 && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                result[index] = new SlurmTaskState(parts[0], index, parts[2]);
        }
        return result;
    }

    /// <summary>
    /// Follows <paramref name="jobId"/> until none of its tasks is in the queue, printing the counts when they change.
    /// </summary>
    public static void Wait(string sweepDirectory, SweepManifest manifest, string jobId, TextWriter output, TimeSpan poll, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(output);
        string? last = null;
        int failures = 0;
        while (!cancel.IsCancellationRequested)
        {
            var queue = Queue([jobId]);
            if (queue is null)
            {
                if (++failures >= 5) throw new InvalidOperationException($"squeue failed 5 times in a row while following job {jobId}; see covshift sweep status {sweepDirectory}.");
                cancel.WaitHandle.WaitOne(poll);
                continue;
            }
            failures = 0;
            var reports = SweepStatus.Read(sweepDirectory, manifest, queue);
            var line = string.Create(CultureInfo.InvariantCulture,
                $"slurm job {jobId}: {queue.Values.Count(q => q.State == "RUNNING")} running, {queue.Values.Count(q => q.State == "PENDING")} pending in the queue; {SweepStatus.CountLine(reports)}");
            if (line != last) output.WriteLine(line);
            last = line;
            if (queue.Count == 0) return;
            cancel.WaitHandle.WaitOne(poll);
        }
    }

    /// <summary>Runs a Slurm tool; returns its exit code and output.</summary>
    /// <exception cref="InvalidOperationException">It is not installed, or did not finish within <paramref name="timeout"/>.</exception>
    public static (int Code, string Stdout, string Stderr) Tool(string name, IReadOnlyList<string> args, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(args);
        var path = FindOnPath(name) ?? throw new InvalidOperationException($"{name} is not on PATH: --engine slurm needs the Slurm client tools (sbatch, squeue) on this machine (for a one-node Slurm to try it: scripts/slurm-local.sh start).");
        var info = new ProcessStartInfo(path) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(info) ?? throw new InvalidOperationException($"Cannot start {path}.");
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"{name} did not answer within {timeout.TotalSeconds:F0} s (is slurmctld running?)."));
            }
            p.WaitForExit();
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"Cannot run {path}: {e.Message}", e);
        }
    }

    private static string? FindOnPath(string name)
    {
        foreach (var d in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(d, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static string? FirstLine(string text) => text.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0);

    /// <summary>Single-quotes <paramref name="s"/> for bash when it holds anything but safe characters.</summary>
    public static string ShellQuote(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=,:+@".Contains(c)) ? s : "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
    }
}
