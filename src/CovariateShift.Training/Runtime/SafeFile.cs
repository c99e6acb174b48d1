using CovariateShift.Files;

namespace CovariateShift.Training.Runtime;

/// <summary>
/// File writes that a crash, a kill or a full disk cannot leave half-done: whole files go to a temporary file in the
/// same directory and are renamed over the target (<see cref="WriteAtomic(string, Action{Stream})"/>); outputs are
/// never written through a symbolic link. The run directory's name for the core library's <see cref="OutputFile"/>
/// (one implementation for runs, reports and experiments).
/// </summary>
public static class SafeFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/> into a temporary file in the same directory,
    /// flushes it to disk and renames it over <paramref name="path"/>: readers see the old file or the new one, never a
    /// part. A failure removes the temporary file and leaves the old file as it was.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written (the message names it), or <paramref name="path"/> is a symbolic link.</exception>
    public static void WriteAtomic(string path, Action<Stream> write) => OutputFile.Write(path, write);

    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> atomically (see <see cref="WriteAtomic(string, Action{Stream})"/>).</summary>
    /// <exception cref="IOException">The file cannot be written; the message names it.</exception>
    public static void WriteAtomic(string path, string text) => OutputFile.Write(path, text);

    /// <summary>Throws when <paramref name="path"/> exists as a symbolic link (outputs are never written through one).</summary>
    /// <exception cref="IOException"><paramref name="path"/> is a symbolic link; the message names it and its target.</exception>
    public static void RefuseSymlink(string path) => OutputFile.RefuseSymlink(path);

    internal static void TryDelete(string path) => OutputFile.TryDelete(path);
}
