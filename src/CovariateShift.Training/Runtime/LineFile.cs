using System.Text;

namespace CovariateShift.Training.Runtime;

/// <summary>
/// An append-only text file of whole lines (JSON Lines, CLEF): every <see cref="Append(string)"/> is one write and one
/// flush, and a write that fails part-way (a full disk) is cut back to where it began, so the file only ever holds
/// whole lines. The file is opened without following a symbolic link at its path (one there is refused).
/// </summary>
public sealed class LineFile : IDisposable
{
    private readonly FileStream _stream;
    private readonly object _gate = new();

    /// <summary>Opens (creating when missing) <paramref name="path"/> for appending; a trailing partial line left by a crash is cut off first.</summary>
    /// <exception cref="IOException">The file cannot be opened, or it is a symbolic link; the message names it.</exception>
    public LineFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        Path = System.IO.Path.GetFullPath(path);
        SafeFile.RefuseSymlink(Path);
        try
        {
            _stream = new FileStream(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
            _stream.SetLength(WholeLinesLength(_stream));
            _stream.Seek(0, SeekOrigin.End);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot open '{Path}' for writing: {e.Message}", e);
        }
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>Appends <paramref name="lines"/> (each ending in a newline) with one write and a flush.</summary>
    /// <exception cref="IOException">The write failed; the file is cut back to its previous whole lines and the message names it.</exception>
    public void Append(string lines)
    {
        ArgumentNullException.ThrowIfNull(lines);
        Append(Encoding.UTF8.GetBytes(lines));
    }

    /// <summary>Appends UTF-8 <paramref name="bytes"/> that end in a newline, with one write and a flush.</summary>
    /// <exception cref="IOException">The write failed; the file is cut back to its previous whole lines and the message names it.</exception>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            long before = _stream.Length;
            try
            {
                _stream.Write(bytes);
                _stream.Flush();
            }
            catch (IOException e)
            {
                try
                {
                    _stream.SetLength(before);
                    _stream.Seek(before, SeekOrigin.Begin);
                }
                catch (IOException)
                {
                    // The cut itself failed; the reader still ignores a last line without its newline.
                }
                throw new IOException($"Writing '{Path}' failed ({e.Message}); the file was cut back to its last whole line.", e);
            }
        }
    }

    /// <summary>Flushes to the disk.</summary>
    public void Flush()
    {
        lock (_gate) _stream.Flush(flushToDisk: true);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate) _stream.Dispose();
    }

    /// <summary>
    /// Keeps the lines of <paramref name="path"/> for which <paramref name="keep"/> is true and drops a trailing partial
    /// line; rewrites the file atomically only when something changes. A missing file is left missing.
    /// </summary>
    /// <returns>The number of lines dropped.</returns>
    public static int Filter(string path, Func<string, bool> keep)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(keep);
        if (!File.Exists(path)) return 0;
        SafeFile.RefuseSymlink(path);
        var text = File.ReadAllText(path);
        int end = text.LastIndexOf('\n') + 1;
        var lines = text[..end].Split('\n', StringSplitOptions.None)[..^1];
        var kept = lines.Where(keep).ToList();
        int dropped = lines.Length - kept.Count;
        if (dropped == 0 && end == text.Length) return 0;
        SafeFile.WriteAtomic(path, string.Concat(kept.Select(l => l + "\n")));
        return dropped + (end == text.Length ? 0 : 1);
    }

    private static long WholeLinesLength(FileStream stream)
    {
        long length = stream.Length;
        if (length == 0) return 0;
        var buffer = new byte[4096];
        long pos = length;
        while (pos > 0)
        {
            int n = (int)Math.Min(buffer.Length, pos);
            pos -= n;
            stream.Seek(pos, SeekOrigin.Begin);
            stream.ReadExactly(buffer, 0, n);
            int i = Array.LastIndexOf(buffer, (byte)'\n', n - 1);
            if (i >= 0) return pos + i + 1;
        }
        return 0;
    }
}
