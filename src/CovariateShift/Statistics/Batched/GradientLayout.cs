using CovariateShift.Capture;
using TorchSharp.Modules;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// Where the parameters (and gradients) of every monitored layer go in the batched engine's flat parameter buffer:
/// each layer's parameters back to back, the layer padded with zeros up to a multiple of <see cref="ChunkLength"/>, so
/// that sums of squares over the [chunks, ChunkLength] view give per-chunk partial sums of exactly one layer each.
/// </summary>
internal sealed class GradientLayout
{
    /// <summary>One layer's parameters: their objects, element counts, and the layer's chunk range.</summary>
    public sealed record Segment(MonitoredLayer Layer, Parameter[] Parameters, long[] Counts, long Pad, int FirstChunk, int ChunkCount);

    private GradientLayout(IReadOnlyList<Segment> segments, int chunkLength, long length)
    {
        Segments = segments;
        ChunkLength = chunkLength;
        Length = length;
    }

    /// <summary>Layers with gradients, in monitor order.</summary>
    public IReadOnlyList<Segment> Segments { get; }

    /// <summary>Elements per chunk (power of two, at most <see cref="ActivationLayout.MaxChunkLength"/>).</summary>
    public int ChunkLength { get; }

    /// <summary>Elements of the padded buffer.</summary>
    public long Length { get; }

    /// <summary>Chunks of the buffer.</summary>
    public int Chunks => (int)(Length / ChunkLength);

    /// <summary>Largest padding of one layer (elements).</summary>
    public long MaxPad => Segments.Count == 0 ? 0 : Segments.Max(s => s.Pad);

    /// <summary>Whether this layout is for exactly these parameter objects, in this order.</summary>
    public bool Matches(IReadOnlyList<(MonitoredLayer Layer, Parameter[] Parameters)> entries)
    {
        if (entries.Count != Segments.Count) return false;
        for (int i = 0; i < entries.Count; i++)
        {
            var (layer, ps) = entries[i];
            var s = Segments[i];
            if (!ReferenceEquals(layer, s.Layer) || ps.Length != s.Parameters.Length) return false;
            for (int k = 0; k < ps.Length; k++)
            {
                if (!ReferenceEquals(ps[k], s.Parameters[k]) || ps[k].numel() != s.Counts[k]) return false;
            }
        }
        return true;
    }

    /// <summary>Builds the layout; the chunk length is the largest power of two that pads by at most 12.5 %.</summary>
    public static GradientLayout Build(IReadOnlyList<(MonitoredLayer Layer, Parameter[] Parameters)> entries)
    {
        var counts = entries.Select(e => e.Parameters.Select(p => p.numel()).ToArray()).ToArray();
        var totals = counts.Select(c => c.Sum()).ToArray();
        long real = totals.Sum();
        int chunk = ActivationLayout.MaxChunkLength;
        while (chunk > 1 && totals.Sum(t => ActivationLayout.RoundUp(t, chunk)) > real * 1.125) chunk /= 2;
        var segments = new List<Segment>();
        long offset = 0;
        for (int i = 0; i < entries.Count; i++)
        {
            long padded = ActivationLayout.RoundUp(totals[i], chunk);
            segments.Add(new Segment(entries[i].Layer, entries[i].Parameters, counts[i], padded - totals[i], (int)(offset / chunk), (int)(padded / chunk)));
            offset += padded;
        }
        return new GradientLayout(segments, chunk, offset);
    }

}
