using System.Buffers.Binary;
using System.IO.Compression;

namespace CovariateShift.Training.Data;

/// <summary>
/// Reads the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed): a big-endian header with magic
/// 0x0000 08 dd (unsigned bytes, dd dimensions), the dd dimension sizes as 32-bit integers, then the bytes.
/// </summary>
public static class IdxReader
{
    /// <summary>Reads <paramref name="path"/> (".gz" is decompressed) and returns its dimensions and bytes.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an unsigned-byte IDX file or is truncated; the message says what was found.</exception>
    public static (int[] Shape, byte[] Data) Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX file not found: '{path}'.", path);
        using var file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        Span<byte> head = stackalloc byte[4];
        ReadExactly(stream, head, path, "the 4-byte magic number");
        if (head[0] != 0 || head[1] != 0 || head[2] != 0x08)
            throw new InvalidDataException($"'{path}' is not an unsigned-byte IDX file: magic bytes {head[0]:X2} {head[1]:X2} {head[2]:X2} {head[3]:X2}, expected 00 00 08 <dims>.");
        int dims = head[3];
        if (dims is < 1 or > 4) throw new InvalidDataException($"'{path}': {dims} dimensions in the header, expected 1 to 4.");
        var shape = new int[dims];
        Span<byte> four = stackalloc byte[4];
        long total = 1;
        for (int i = 0; i < dims; i++)
        {
            ReadExactly(stream, four, path, $"dimension {i}");
            shape[i] = BinaryPrimitives.ReadInt32BigEndian(four);
            if (shape[i] < 0) throw new InvalidDataException($"'{path}': dimension {i} is {shape[i]}, expected a size >= 0.");
            total *= shape[i];
        }
        if (total > int.MaxValue) throw new InvalidDataException($"'{path}': {total} bytes of data is more than this reader supports.");
        var data = new byte[total];
        ReadExactly(stream, data, path, $"{total} data bytes (shape {string.Join("x", shape)})");
        if (stream is GZipStream)
        {
            // Read to the end so that the gzip trailer (CRC-32 and length) is checked too.
            var rest = new byte[4096];
            while (Read(stream, rest, path) > 0)
            {
            }
        }
        return (shape, data);
    }

    private static void ReadExactly(Stream s, Span<byte> buffer, string path, string what)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = Read(s, buffer[read..], path);
            if (n == 0) throw new InvalidDataException($"'{path}' is truncated: it ended while reading {what} ({read} of {buffer.Length} bytes).");
            read += n;
        }
    }

    /// <summary>One read; a gzip stream's decompression error becomes one naming the file.</summary>
    private static int Read(Stream s, Span<byte> buffer, string path)
    {
        try
        {
            return s.Read(buffer);
        }
        catch (InvalidDataException e) when (s is GZipStream)
        {
            throw new InvalidDataException($"'{path}' is not a valid gzip file: decompressing it failed ({e.Message.TrimEnd('.')}); the file is damaged or not gzip-compressed. Expected a gzip-compressed IDX file (replace it, or decompress it and drop the .gz).", e);
        }
    }

    /// <summary>Writes an unsigned-byte IDX file (gzip-compressed when the name ends in .gz). Used to make small test files.</summary>
    public static void Write(string path, int[] shape, byte[] data)
    {
        using var file = File.Create(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionLevel.Fastest) : file;
        stream.Write([0, 0, 0x08, (byte)shape.Length]);
        Span<byte> four = stackalloc byte[4];
        foreach (var d in shape)
        {
            BinaryPrimitives.WriteInt32BigEndian(four, d);
            stream.Write(four);
        }
        stream.Write(data);
    }
}
