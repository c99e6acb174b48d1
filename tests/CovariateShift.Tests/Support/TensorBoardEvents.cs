namespace CovariateShift.Tests.Support;

/// <summary>
/// Reads TensorBoard event files (TFRecord framing: length, its CRC, an <c>Event</c> protocol buffer, its CRC) far enough
/// for tests: per event its step and, for a summary, each value's tag and whether it is a histogram (Summary.Value
/// field 5) or a scalar (field 2). Written from the protocol-buffer wire format, independent of the sink that writes them.
/// </summary>
internal static class TensorBoardEvents
{
    internal readonly record struct Value(long Step, string Tag, bool Histogram, float? Scalar);

    /// <summary>Every summary value in every event file under <paramref name="directory"/>.</summary>
    public static List<Value> Read(string directory)
    {
        var values = new List<Value>();
        foreach (var file in Directory.GetFiles(directory, "events.out.tfevents.*", SearchOption.AllDirectories).Order())
        {
            var bytes = File.ReadAllBytes(file);
            int at = 0;
            while (at < bytes.Length)
            {
                long length = BitConverter.ToInt64(bytes, at);
                at += 8 + 4;   // the length and its CRC
                ReadEvent(bytes.AsSpan(at, checked((int)length)), values);
                at += (int)length + 4;   // the event and its CRC
            }
        }
        return values;
    }

    private static void ReadEvent(ReadOnlySpan<byte> e, List<Value> values)
    {
        long step = 0;
        var summaries = new List<(int Start, int Length)>();
        int at = 0;
        while (at < e.Length)
        {
            var (field, wire) = Key(e, ref at);
            if (field == 2 && wire == 0)
            {
                step = (long)Varint(e, ref at);
            }
            else if (field == 5 && wire == 2)
            {
                int n = (int)Varint(e, ref at);
                summaries.Add((at, n));
                at += n;
            }
            else
            {
                Skip(e, ref at, wire);
            }
        }
        foreach (var (start, length) in summaries)
        {
            var summary = e.Slice(start, length);
            int s = 0;
            while (s < summary.Length)
            {
                var (field, wire) = Key(summary, ref s);
                if (field != 1 || wire != 2)
                {
                    Skip(summary, ref s, wire);
                    continue;
                }
                int n = (int)Varint(summary, ref s);
                values.Add(ReadValue(step, summary.Slice(s, n)));
                s += n;
            }
        }
    }

    private static Value ReadValue(long step, ReadOnlySpan<byte> v)
    {
        string tag = "";
        bool histogram = false;
        float? scalar = null;
        int at = 0;
        while (at < v.Length)
        {
            var (field, wire) = Key(v, ref at);
            if (field == 1 && wire == 2)
            {
                int n = (int)Varint(v, ref at);
                tag = System.Text.Encoding.UTF8.GetString(v.Slice(at, n));
                at += n;
            }
            else if (field == 2 && wire == 5)
            {
                scalar = BitConverter.ToSingle(v.Slice(at, 4));
                at += 4;
            }
            else
            {
                if (field == 5) histogram = true;
                Skip(v, ref at, wire);
            }
        }
        return new Value(step, tag, histogram, scalar);
    }

    private static (int Field, int Wire) Key(ReadOnlySpan<byte> b, ref int at)
    {
        ulong key = Varint(b, ref at);
        return ((int)(key >> 3), (int)(key & 7));
    }

    private static ulong Varint(ReadOnlySpan<byte> b, ref int at)
    {
        ulong value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte next = b[at++];
            value |= (ulong)(next & 0x7f) << shift;
            if (next < 0x80) return value;
        }
    }

    private static void Skip(ReadOnlySpan<byte> b, ref int at, int wire)
    {
        switch (wire)
        {
            case 0: Varint(b, ref at); break;
            case 1: at += 8; break;
            case 2:
                int n = (int)Varint(b, ref at);   // read before adding: `at += Varint(ref at)` would add to the old offset
                at += n;
                break;
            case 5: at += 4; break;
            default: throw new InvalidDataException($"Unexpected protocol-buffer wire type {wire} at byte {at}.");
        }
    }
}
