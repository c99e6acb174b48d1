using System.Globalization;

namespace CovariateShift.Training.Runtime;

/// <summary>
/// An exclusive lock on a run directory held for the life of a run: an advisory lock (flock) on <c>DIR/.lock</c>
/// that the operating system releases when the process ends, however it ends. The holder's process id is in
/// <c>DIR/.lock.pid</c> so that a refused run can name it.
/// </summary>
public sealed class RunLock : IDisposable
{
    /// <summary>Name of the locked file in the run directory.</summary>
    public const string LockFileName = ".lock";

    /// <summary>Name of the file holding the lock holder's process id.</summary>
    public const string PidFileName = ".lock.pid";

    private readonly FileStream _stream;

    private RunLock(string directory, FileStream stream)
    {
        Directory = directory;
        _stream = stream;
    }

    /// <summary>The locked directory (full path).</summary>
    public string Directory { get; }

    /// <summary>Takes the lock on <paramref name="directory"/> (which must exist).</summary>
    /// <exception cref="IOException">Another process holds it (the message names the directory and the holder's process id),
    /// or the directory is not writable (the message says so).</exception>
    public static RunLock Acquire(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var full = Path.GetFullPath(directory);
        var lockPath = Path.Combine(full, LockFileName);
        var pidPath = Path.Combine(full, PidFileName);
        SafeFile.RefuseSymlink(lockPath);
        FileStream stream;
        bool existed = File.Exists(lockPath);
        try
        {
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (Exception e) when (e is UnauthorizedAccessException || (e is IOException && !existed))
        {
            // Not another process: the lock file could not be created (a read-only directory or file system, no permission).
            throw new IOException($"Cannot write to the run directory '{full}': {e.Message} Expected a writable directory.", e);
        }
        catch (IOException e)
        {
            string holder = "unknown";
            try
            {
                holder = File.ReadAllText(pidPath).Trim();
            }
            catch (Exception r) when (r is IOException or UnauthorizedAccessException)
            {
                // keep "unknown"
            }
            throw new IOException($"The run directory '{full}' is in use by another covshift process (pid {holder}); wait for it to finish or stop it, or choose another --out. ({e.Message})", e);
        }
        try
        {
            SafeFile.WriteAtomic(pidPath, Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        return new RunLock(full, stream);
    }

    /// <summary>Whether <paramref name="name"/> is one of the lock's own files (kept when a run directory is cleared).</summary>
    public static bool IsLockFile(string name) => name is LockFileName or PidFileName;

    /// <summary>Releases the lock.</summary>
    public void Dispose()
    {
        SafeFile.TryDelete(Path.Combine(Directory, PidFileName));
        _stream.Dispose();
    }
}
