using CovariateShift.Capture;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// Where every monitored layer's output goes in the batched engine's device buffer, and how the buffer is cut into
/// equal chunks. A layer output of shape [N, U, ...] has U units (features or channels, dimension 1) of
/// N * B elements each (B = product of the trailing dimensions; a 1-D output is one unit). Each unit is stored
/// contiguously ("unit-major": all of channel c's N x H x W values together) and padded with NaN up to a multiple of
/// <see cref="ChunkLength"/>, so every chunk of the buffer belongs to exactly one unit of one layer. Reductions over the
/// [chunks, ChunkLength] view of the buffer then give per-chunk partial results for all layers at once, whatever the
/// number of layers; the host merges chunks into units and units into layers in double precision.
/// </summary>
internal sealed class ActivationLayout
{
    /// <summary>Largest chunk length considered (elements).</summary>
    public const int MaxChunkLength = 4096;

    /// <summary>Padding allowed when choosing the chunk length: at most this fraction of extra (NaN) elements.</summary>
    private const double PaddingAllowance = 0.125;

    /// <summary>One layer's place in the buffer.</summary>
    public sealed record Slot(MonitoredLayer Layer, long[] Shape, long Batch, long Units, long Block, long UnitLength,
        long PaddedUnitLength, long Offset, int FirstChunk, int FirstUnit, int SampleOffset, int SampleCount, bool FourD)
    {
        /// <summary>Elements of the layer's output.</summary>
        public long Count => Batch * Units * Block;

        /// <summary>Chunks of one unit.</summary>
        public int ChunksPerUnit(int chunkLength) => (int)(PaddedUnitLength / chunkLength);

        /// <summary>Strides of the view of the buffer that has the output's shape and writes into this slot.</summary>
        public long[] Strides()
        {
            var strides = new long[Shape.Length];
            if (Shape.Length == 0) return strides;
            if (Shape.Length == 1)
            {
                strides[0] = 1;
                return strides;
            }
            strides[0] = Block;
            strides[1] = PaddedUnitLength;
            long s = 1;
            for (int k = Shape.Length - 1; k >= 2; k--)
            {
                strides[k] = s;
                s *= Shape[k];
            }
            return strides;
        }

        /// <summary>Buffer position of element <paramref name="e"/> of the output in its own row-major order.</summary>
        public long Position(long e)
        {
            long n = e / (Units * Block);
            long u = e / Block % Units;
            long j = e % Block;
            return Offset + u * PaddedUnitLength + n * Block + j;
        }
    }

    private ActivationLayout(IReadOnlyList<Slot> slots, int chunkLength, long length)
    {
        Slots = slots;
        ChunkLength = chunkLength;
        Length = length;
    }

    /// <summary>The layers, in capture order.</summary>
    public IReadOnlyList<Slot> Slots { get; }

    /// <summary>Elements per chunk (a power of two, at most <see cref="MaxChunkLength"/>).</summary>
    public int ChunkLength { get; }

    /// <summary>Elements of the buffer (a multiple of <see cref="ChunkLength"/>).</summary>
    public long Length { get; }

    /// <summary>Chunks of the buffer.</summary>
    public int Chunks => (int)(Length / ChunkLength);

    /// <summary>Units of all layers together.</summary>
    public int TotalUnits => Slots.Count == 0 ? 0 : Slots[^1].FirstUnit + (int)Slots[^1].Units;

    /// <summary>Sampled values of all layers together.</summary>
    public int TotalSamples => Slots.Count == 0 ? 0 : Slots[^1].SampleOffset + Slots[^1].SampleCount;

    /// <summary>Whether this layout holds exactly these layers with these shapes, in this order.</summary>
    public bool Matches(IReadOnlyList<(MonitoredLayer Layer, long[] Shape)> entries)
    {
        if (entries.Count != Slots.Count) return false;
        for (int i = 0; i < entries.Count; i++)
        {
            if (!ReferenceEquals(entries[i].Layer, Slots[i].Layer) || !entries[i].Shape.AsSpan().SequenceEqual(Slots[i].Shape))
                return false;
        }
        return true;
    }

    /// <summary>The slot of <paramref name="layer"/> with shape <paramref name="shape"/>, or null.</summary>
    public Slot? Find(MonitoredLayer layer, long[] shape)
    {
        foreach (var s in Slots)
        {
            if (ReferenceEquals(s.Layer, layer)) return s.Shape.AsSpan().SequenceEqual(shape) ? s : null;
        }
        return null;
    }

    /// <summary>(batch, units, block) of an output shape: units along dimension 1, a 0-D or 1-D output is one unit.</summary>
    public static (long Batch, long Units, long Block) Split(long[] shape) => shape.Length switch
    {
        0 => (1, 1, 1),
        1 => (1, 1, shape[0]),
        _ => (shape[0], shape[1], shape[2..].Aggregate(1L, (a, b) => a * b)),
    };

    /// <summary>
    /// Builds the layout for <paramref name="entries"/> (layer, output shape), choosing the largest power-of-two chunk
    /// length up to <see cref="MaxChunkLength"/> that pads the buffer by at most 12.5 %.
    /// </summary>
    public static ActivationLayout Build(IReadOnlyList<(MonitoredLayer Layer, long[] Shape)> entries, int sampleSize)
    {
        var split = entries.Select(e => Split(e.Shape)).ToArray();
        long real = split.Sum(s => s.Batch * s.Units * s.Block);
        int chunk = MaxChunkLength;
        while (chunk > 1)
        {
            long padded = 0;
            foreach (var (n, u, b) in split) padded += u * RoundUp(n * b, chunk);
            if (padded <= real * (1 + PaddingAllowance)) break;
            chunk /= 2;
        }

        var slots = new List<Slot>(entries.Count);
        long offset = 0;
        int firstUnit = 0, sampleOffset = 0;
        for (int i = 0; i < entries.Count; i++)
        {
            var (n, u, b) = split[i];
            long unitLength = n * b;
            long paddedUnit = RoundUp(unitLength, chunk);
            long count = n * u * b;
            int samples = (int)Math.Min(count, sampleSize);
            slots.Add(new Slot(entries[i].Layer, entries[i].Shape, n, u, b, unitLength, paddedUnit, offset,
                (int)(offset / chunk), firstUnit, sampleOffset, samples, entries[i].Shape.Length == 4));
            offset += u * paddedUnit;
            firstUnit += (int)u;
            sampleOffset += samples;
        }
        return new ActivationLayout(slots, chunk, offset);
    }

    /// <summary>Buffer positions of every layer's stratified sample (the same positions the CPU kernel reads), in slot order.</summary>
    public long[] SamplePositions(Func<MonitoredLayer, LayerBuffers> buffers, int sampleSize, int seed)
    {
        var positions = new long[TotalSamples];
        foreach (var s in Slots)
        {
            var sample = buffers(s.Layer).SampleFor(s.Count, sampleSize, seed);
            for (int k = 0; k < s.SampleCount; k++) positions[s.SampleOffset + k] = s.Position(sample.Positions[k]);
        }
        return positions;
    }

    /// <summary><paramref name="value"/> rounded up to a multiple of <paramref name="multiple"/>.</summary>
    internal static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;
}
