using System.Text;

namespace CovariateShift.Files;

/// <summary>
/// Whole output files written so that a crash, a kill or a full disk cannot leave them half-done, and never through a
/// symbolic link: the bytes go to a hidden temporary file in the same directory, are flushed to disk and renamed over
/// the target (a rename replaces a link at the target instead of following it, and a link found there is refused
/// first). Used by every writer of run directories, reports and experiments.
/// </summary>
public static class OutputFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/> into a temporary file in the same directory,
    /// flushes it to disk and renames it over <paramref name="path"/>: readers see the old file or the new one, never a
    /// part. A failure removes the temporary file and leaves the old file as it was.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written (the message names it), or <paramref name="path"/> is a symbolic link.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        var full = Path.GetFullPath(path);
        RefuseSymlink(full);
        var dir = Path.GetDirectoryName(full)!;
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new IOException($"Cannot write '{full}': {e.Message}", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> (see <see cref="Write(string, Action{Stream})"/>).</summary>
    /// <exception cref="IOException">The file cannot be written, or is a symbolic link; the message names it.</exception>
    public static void Write(string path, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        Write(path, s => s.Write(bytes));
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> (see <see cref="Write(string, Action{Stream})"/>).</summary>
    /// <exception cref="IOException">The file cannot be written, or is a symbolic link; the message names it.</exception>
    public static void Write(string path, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Write(path, Encoding.UTF8.GetBytes(text));
    }

    /// <summary>Throws when <paramref name="path"/> exists as a symbolic link (outputs are never written through one).</summary>
    /// <exception cref="IOException"><paramref name="path"/> is a symbolic link; the message names it and its target.</exception>
    public static void RefuseSymlink(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (info.LinkTarget is { } target)
            throw new IOException($"'{path}' is a symbolic link (to '{target}'); covshift does not write through symbolic links. Remove it or choose another --out.");
    }

    /// <summary>Deletes <paramref name="path"/> if it can (best effort: a leftover temporary file is hidden and replaced by the next write).</summary>
    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort.
        }
    }
}
