using System.Text.RegularExpressions;
using CovariateShift.Nn.Models;
using CovariateShift.Training.FineTuning;
using CovariateShift.Training.Training;
using TorchSharp;

namespace CovariateShift.Training.Runtime;

/// <summary>How a run treats an existing output directory.</summary>
public enum RunDirectoryMode
{
    /// <summary>A new run: the directory must be missing or empty.</summary>
    New,

    /// <summary>A new run into a previous run's directory: the files that run wrote are removed first.</summary>
    Overwrite,

    /// <summary>Continue the run in the directory (<c>--resume</c>).</summary>
    Resume,
}

/// <summary>
/// Opens a run directory for a run: creates it (refusing symbolic links, at the directory and anywhere inside it),
/// takes its exclusive <see cref="RunLock"/>, and refuses a non-empty directory unless resuming or overwriting.
/// <c>--overwrite</c> clears only what a covshift run writes (<see cref="IsRunFile"/>); a directory holding anything
/// else is refused, naming it. Dispose the returned lock to release it.
/// </summary>
public static partial class RunDirectory
{
    /// <summary>The files a covshift run writes at the top of its directory (besides <see cref="IsRunFile"/>'s patterns).</summary>
    public static IReadOnlyList<string> RunFileNames { get; } =
    [
        RunConfig.FileName, TrainerOptions.TrainingLogFileName, TrainerOptions.MetricsFileName, "log.clef", "model.json", "checkpoint.bin",
        "summary.json", FineTuneReport.FileName, "report.html", "ics.jsonl", RunLock.LockFileName, RunLock.PidFileName,
    ];

    /// <summary>
    /// Prepares <paramref name="directory"/> for a run in <paramref name="mode"/> and returns the held lock.
    /// </summary>
    /// <exception cref="IOException">The directory is in use by another run (the message names the process id), is not empty
    /// (for <see cref="RunDirectoryMode.New"/>), holds files covshift did not write (for <see cref="RunDirectoryMode.Overwrite"/>),
    /// is or holds a symbolic link, or cannot be created or written.</exception>
    public static RunLock Open(string directory, RunDirectoryMode mode)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var full = Path.GetFullPath(directory);
        SafeFile.RefuseSymlink(full.TrimEnd(Path.DirectorySeparatorChar));
        if (File.Exists(full)) throw new IOException($"--out '{directory}' is an existing file; expected a directory.");
        try
        {
            Directory.CreateDirectory(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot write to --out '{directory}': {e.Message} Expected a writable directory.", e);
        }
        RefuseLinksInside(full);
        var runLock = RunLock.Acquire(full);
        try
        {
            var entries = Directory.EnumerateFileSystemEntries(full).Where(e => !RunLock.IsLockFile(Path.GetFileName(e))).Order(StringComparer.Ordinal).ToList();
            switch (mode)
            {
                case RunDirectoryMode.New when entries.Count > 0:
                    throw new IOException(NotEmptyMessage(directory, full, entries.Count));
                case RunDirectoryMode.Overwrite when entries.Count > 0:
                    if (!LooksLikeRun(full))
                        throw new IOException($"--overwrite refuses to clear '{directory}': it is not a covshift run directory (no {RunConfig.FileName} or model.json there). Remove its contents yourself or choose another --out.");
                    if (FirstForeignEntry(full) is { } foreign)
                        throw new IOException($"--overwrite refuses to clear '{directory}': '{foreign}' was not written by a covshift run (and --overwrite deletes only what a run wrote). Move it away or choose another --out.");
                    foreach (var e in entries)
                    {
                        if (Directory.Exists(e)) Directory.Delete(e, recursive: true);
                        else File.Delete(e);
                    }
                    break;
            }
            return runLock;
        }
        catch
        {
            runLock.Dispose();
            throw;
        }
    }

    /// <summary>Whether <paramref name="directory"/> holds a run's config.json or model.json (or per-norm subdirectories with one).</summary>
    public static bool LooksLikeRun(string directory) =>
        File.Exists(Path.Combine(directory, RunConfig.FileName)) || File.Exists(Path.Combine(directory, "model.json"))
        || Directory.EnumerateDirectories(directory).Any(d => File.Exists(Path.Combine(d, RunConfig.FileName)));

    /// <summary>
    /// Whether <paramref name="name"/> (a file name at the top of a run directory) is one a covshift run writes: a
    /// <see cref="RunFileNames"/> entry, a report figure (<c>report-*.png</c>) or a hidden temporary file of an atomic write.
    /// </summary>
    public static bool IsRunFile(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return RunFileNames.Contains(name) || ReportFigure().IsMatch(name) || TemporaryFile().IsMatch(name);
    }

    /// <summary>
    /// The first entry under <paramref name="directory"/> (a path relative to it) that a covshift run does not write,
    /// or null when every entry is a run's: the files of <see cref="IsRunFile"/>, <c>checkpoints/</c> (last, epoch-NNNN),
    /// <c>tensorboard/</c> (event files) and per-norm subdirectories that are run directories themselves.
    /// </summary>
    public static string? FirstForeignEntry(string directory) => FirstForeignEntry(directory, "", nested: false);

    private static string? FirstForeignEntry(string directory, string prefix, bool nested)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(entry);
            var relative = prefix + name;
            if (new FileInfo(entry).LinkTarget is not null) return relative;
            if (!Directory.Exists(entry))
            {
                if (!IsRunFile(name)) return relative;
                continue;
            }
            string? foreign = name switch
            {
                TrainerOptions.CheckpointsDirectoryName => FirstMismatch(entry, relative + "/", n => n == TrainerOptions.LastCheckpointName || EpochCheckpoint().IsMatch(n) || TemporaryFile().IsMatch(n)),
                TrainerOptions.TensorBoardDirectoryName => FirstMismatch(entry, relative + "/", n => n.StartsWith("events.out.tfevents.", StringComparison.Ordinal)),
                _ when !nested && File.Exists(Path.Combine(entry, RunConfig.FileName)) => FirstForeignEntry(entry, relative + "/", nested: true),
                _ => relative + "/",
            };
            if (foreign is not null) return foreign;
        }
        return null;
    }

    private static string? FirstMismatch(string directory, string prefix, Func<string, bool> ours)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(entry);
            if (new FileInfo(entry).LinkTarget is not null || Directory.Exists(entry) || !ours(name)) return prefix + name;
        }
        return null;
    }

    /// <summary>
    /// Refuses a symbolic link anywhere in the run directory <paramref name="directory"/> (its files, checkpoints/,
    /// tensorboard/ and per-norm subdirectories): a run never writes through one, and a linked directory would send
    /// checkpoints or event files elsewhere.
    /// </summary>
    /// <exception cref="IOException">A symbolic link was found; the message names it and its target.</exception>
    public static void RefuseLinksInside(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, MaxRecursionDepth = 3 }))
        {
            if (new FileInfo(entry).LinkTarget is { } target)
                throw new IOException($"'{entry}' in the run directory is a symbolic link (to '{target}'); covshift does not write through symbolic links. Remove the link (or the run directory) and run again.");
        }
    }

    /// <summary>
    /// Reads <c>checkpoints/last</c> of the run in <paramref name="runDirectory"/> for <c>--resume</c> and checks that its
    /// weights fit <paramref name="model"/> (names and shapes), before anything is written. <paramref name="command"/>
    /// (train or finetune) goes into the advice when there is no checkpoint.
    /// </summary>
    /// <exception cref="InvalidDataException">No checkpoint (the run stopped before its first one: the message says to
    /// start it again with --overwrite), a damaged one, or one of another model; one line naming the file.</exception>
    public static RunCheckpoint.Contents LoadLastCheckpoint(string runDirectory, ModelSpec model, string command)
    {
        ArgumentNullException.ThrowIfNull(runDirectory);
        ArgumentNullException.ThrowIfNull(model);
        var last = Path.Combine(runDirectory, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName);
        if (!File.Exists(last))
            throw new InvalidDataException($"Cannot resume '{runDirectory}': it has no {TrainerOptions.CheckpointsDirectoryName}/{TrainerOptions.LastCheckpointName} (the run stopped before its first checkpoint). Start it again with covshift {command} --overwrite --out {runDirectory} and the same options.");
        var contents = RunCheckpoint.Load(last);
        using var scope = torch.NewDisposeScope();
        using var net = ModelZoo.Create(model);
        if (FineTuningSetup.StateMismatch(net, contents.Model) is { } mismatch)
            throw new InvalidDataException($"Checkpoint '{last}' does not belong to the run's model ({model.Architecture} in {RunConfig.FileName}): {mismatch}.");
        return contents;
    }

    private static string NotEmptyMessage(string directory, string full, int count)
    {
        bool run = File.Exists(Path.Combine(full, RunConfig.FileName));
        bool checkpoint = File.Exists(Path.Combine(full, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName));
        if (run && !checkpoint)
            return $"--out '{directory}' holds a run that stopped before its first checkpoint ({count} entries, no {TrainerOptions.CheckpointsDirectoryName}/{TrainerOptions.LastCheckpointName}), so it cannot be resumed; use --overwrite to start it again, or another --out.";
        return $"--out '{directory}' is not empty ({count} entries); use --resume {directory} to continue the run there, --overwrite to clear it first, or another --out.";
    }

    [GeneratedRegex(@"^report-.+\.png$")]
    private static partial Regex ReportFigure();

    [GeneratedRegex(@"^epoch-\d+$")]
    private static partial Regex EpochCheckpoint();

    [GeneratedRegex(@"^\..+\.(tmp|scratch)-\d+$")]
    private static partial Regex TemporaryFile();
}
