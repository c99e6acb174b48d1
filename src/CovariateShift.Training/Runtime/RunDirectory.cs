namespace CovariateShift.Training.Runtime;

/// <summary>How a run treats an existing output directory.</summary>
public enum RunDirectoryMode
{
    /// <summary>A new run: the directory must be missing or empty.</summary>
    New,

    /// <summary>A new run into a previous run's directory: its contents are removed first.</summary>
    Overwrite,

    /// <summary>Continue the run in the directory (<c>--resume</c>).</summary>
    Resume,
}

/// <summary>
/// Opens a run directory for a run: creates it (refusing symbolic links), takes its exclusive <see cref="RunLock"/>,
/// and refuses a non-empty directory unless resuming or overwriting. Dispose to release the lock.
/// </summary>
public static class RunDirectory
{
    /// <summary>
    /// Prepares <paramref name="directory"/> for a run in <paramref name="mode"/> and returns the held lock.
    /// </summary>
    /// <exception cref="IOException">The directory is in use by another run (the message names the process id), is not empty
    /// (for <see cref="RunDirectoryMode.New"/>), is a symbolic link, or cannot be created.</exception>
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
        var runLock = RunLock.Acquire(full);
        try
        {
            var entries = Directory.EnumerateFileSystemEntries(full).Where(e => !RunLock.IsLockFile(Path.GetFileName(e))).ToList();
            switch (mode)
            {
                case RunDirectoryMode.New when entries.Count > 0:
                    throw new IOException($"--out '{directory}' is not empty ({entries.Count} entries); use --resume {directory} to continue the run there, --overwrite to clear it first, or another --out.");
                case RunDirectoryMode.Overwrite when entries.Count > 0:
                    if (!LooksLikeRun(full))
                        throw new IOException($"--overwrite refuses to clear '{directory}': it is not a covshift run directory (no {RunConfig.FileName} or model.json there). Remove its contents yourself or choose another --out.");
                    foreach (var e in entries)
                    {
                        var info = new FileInfo(e);
                        if (info.LinkTarget is not null || !Directory.Exists(e)) File.Delete(e);   // a link is removed, never followed
                        else Directory.Delete(e, recursive: true);
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
}
