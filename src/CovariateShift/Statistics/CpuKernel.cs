using System.Buffers;
using System.Collections.Immutable;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CovariateShift.Capture;

namespace CovariateShift.Statistics;

/// <summary>
/// One vectorized pass over a contiguous float32 buffer (a CPU tensor's own memory, no copy) that computes every
/// exact reduction of a <see cref="LayerSummary"/>, with one reduction path for every layout.
/// <para>The buffer is cut into <em>segments</em>, each belonging to a <em>group</em>: for a flat layout ([N] or
/// [N, features]) the whole buffer is one segment of one group; for a blocked layout ([N, C, ...]) every block of
/// <c>blockLength</c> elements (one sample's map of one channel) is a segment of its channel's group. Every segment is
/// reduced by the same chunk primitive (<see cref="Chunk"/>): runs of at most <see cref="ChunkLength"/> elements in whole
/// vectors, float first, redone in double with masks (<see cref="MaskedChunk"/>) when the float result is not finite. A segment's
/// last elements past its whole vectors go into one more vector, loaded so that it stays inside the buffer, whose other
/// lanes are masked out. Blocks shorter than <see cref="GatherBelow"/> are first gathered per group into contiguous runs.
/// Only a buffer shorter than one vector goes through the scalar tail (<see cref="Tail"/>).
/// All partial moments of a group are about the group's pivot (its first finite value) and simply add; the groups'
/// moments are combined with one Chan merge (<see cref="Moments.Merge"/>).</para>
/// </summary>
internal static class CpuKernel
{
    /// <summary>Most elements summed in float vectors before the sums are added to double vectors.</summary>
    private const int ChunkLength = 2048;

    /// <summary>
    /// Blocks shorter than this are gathered per group into contiguous runs before they are reduced: a segment costs a
    /// few dozen instructions beyond its elements (measured: 3x3 blocks ~1.4x and 1x1 blocks ~4x faster gathered).
    /// </summary>
    private const int GatherBelow = 32;

    /// <summary>Most floats of the samples whose short blocks are gathered together (64 KB, cache-resident).</summary>
    private const int GatherTile = 16384;

    /// <summary>A flat layout is reduced in slices of this many elements (whole chunks, 8 KB), each slice's sampled values
    /// copied right after it.</summary>
    private const int SampleSlice = ChunkLength;

    /// <summary>
    /// Summarizes <paramref name="data"/>, a contiguous [N, units, ...] buffer. When <paramref name="blockLength"/> &gt; 0
    /// the buffer is N x <paramref name="units"/> blocks of <paramref name="blockLength"/> elements (one block per sample
    /// and channel, e.g. H*W); each channel's moments are then taken about its own first finite value and the channels
    /// merged (Chan et al.), so a channel whose spread is tiny next to its offset keeps its variance. Otherwise the buffer
    /// is rows of <paramref name="units"/> features (or one unit when <paramref name="units"/> is 1). Brock et al.'s
    /// channel statistics are filled when <paramref name="channelStatistics"/> is set (4-D outputs). When
    /// <paramref name="sample"/> is given, the values at its positions are copied into <paramref name="sampleBuffer"/> (as
    /// long as its positions) during the pass, and the summary's sample is the finite ones among them: the buffer itself
    /// when all are finite, with <paramref name="sampleLease"/> (the pooled buffer's lease, if it is one); otherwise a copy,
    /// and the lease is returned at once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static LayerSummary Summarize(ReadOnlySpan<float> data, int units, int blockLength, bool channelStatistics, float nearZero,
        SaturationBounds? saturation, StratifiedSample? sample = null, float[]? sampleBuffer = null, SampleLease? sampleLease = null)
    {
        if (sample is not null && sample.Length != data.Length)
            throw new ArgumentException($"Sample positions are for {sample.Length} elements, the data has {data.Length}.", nameof(sample));
        if (sample is not null && (sampleBuffer is null || sampleBuffer.Length != sample.Positions.Length))
            throw new ArgumentException($"The sample buffer must hold exactly {sample.Positions.Length} values, it holds {(sampleBuffer is null ? "none" : sampleBuffer.Length)}.", nameof(sampleBuffer));
        bool blocked = blockLength > 0;
        int segmentLength = blocked ? blockLength : data.Length;
        int segments = segmentLength > 0 ? data.Length / segmentLength : 0;
        // The groups' running reductions: on the stack for a flat layout, lent from the shared pool for one per channel (a
        // conv output of 256 channels would otherwise allocate ~37 KB per call).
        int groupCount = blocked ? Math.Max(units, 0) : 1;
        var rentedGroups = groupCount > 1 ? ArrayPool<Group>.Shared.Rent(groupCount) : null;
        Span<Group> groups = rentedGroups is null ? stackalloc Group[1] : rentedGroups;
        groups = groups[..groupCount];
        groups.Clear();
        try
        {
            return Summarize(data, groups, units, blocked, segmentLength, segments, channelStatistics, nearZero, saturation,
                sample, sampleBuffer, sampleLease);
        }
        finally
        {
            if (rentedGroups is not null) ArrayPool<Group>.Shared.Return(rentedGroups);
        }
    }

    /// <summary>The pass and the summary, with one cleared <see cref="Group"/> per group in <paramref name="groups"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static LayerSummary Summarize(ReadOnlySpan<float> data, Span<Group> groups, int units, bool blocked, int segmentLength,
        int segments, bool channelStatistics, float nearZero, SaturationBounds? saturation, StratifiedSample? sample,
        float[]? sampleBuffer, SampleLease? sampleLease)
    {
        for (int c = 0; c < groups.Length; c++)
        {
            groups[c].Pivot = FirstFinite(data, c, segmentLength, groups.Length, segments);
            // Segments c, c + groups, c + 2 groups, ...
            groups[c].Elements = (long)(segments / groups.Length + (c < segments % groups.Length ? 1 : 0)) * segmentLength;
        }
        var whole = WholeTensor.Create();
        var copy = sample is null ? default : new SampleCopy(sample, sampleBuffer!);
        if (!TryReduceInTwo(data, segmentLength, segments, groups, nearZero, saturation, ref whole, ref copy))
            Reduce(data, segmentLength, segments, groups, nearZero, saturation, ref whole, ref copy);
        var finite = ImmutableArray<float>.Empty;
        if (sample is not null)
        {
            // Every sampled value finite: the buffer itself is the sample (pooled buffers come back once the record is
            // built). Otherwise the finite ones are copied and the buffer goes back at once.
            if (copy.Count == sampleBuffer!.Length)
            {
                finite = ImmutableCollectionsMarshal.AsImmutableArray(sampleBuffer);
            }
            else
            {
                finite = ImmutableArray.Create(sampleBuffer, 0, copy.Count);
                sampleLease?.Return();
                sampleLease = null;
            }
        }
        else
        {
            sampleLease = null;
        }

        // One Chan merge over the groups' moments; Brock et al.'s statistics from the same per-channel moments.
        var total = Moments.Empty;
        double squaredMeans = 0, variances = 0;
        long near = 0, nonFinite = 0;
        int used = 0, dead = 0;
        foreach (ref readonly var g in groups)
        {
            var m = g.Moments();
            total = Moments.Merge(total, m);
            long groupNear = g.NearZero();
            near += groupNear;
            nonFinite += g.NonFinite;
            if (groupNear == g.Elements) dead++;
            if (m.Count == 0) continue;
            squaredMeans += m.Mean * m.Mean;
            variances += m.M2 / m.Count;
            used++;
        }
        long deadUnits = blocked ? dead
            : units > 1 ? DeadFeatures(data, units, nearZero) : (near == data.Length && data.Length > 0 ? 1 : 0);
        bool channels = blocked && channelStatistics;
        return new LayerSummary
        {
            Count = data.Length,
            FiniteCount = total.Count,
            Mean = total.Mean,
            Variance = total.Variance,
            Min = total.Count > 0 ? whole.Min : double.NaN,
            Max = total.Count > 0 ? whole.Max : double.NaN,
            NearZero = near,
            Units = units,
            DeadUnits = deadUnits,
            Saturated = whole.Saturated,
            Nan = whole.Nan,
            Inf = nonFinite - whole.Nan,
            ChannelSquaredMean = channels ? (used > 0 ? squaredMeans / used : double.NaN) : null,
            ChannelVariance = channels ? (used > 0 ? variances / used : double.NaN) : null,
            Sample = finite,
            SampleLease = sampleLease,
        };
    }

    /// <summary>
    /// Buffers of at least this many values are reduced in two halves at once, the second on a thread-pool thread (tests
    /// raise it to compare with one pass). One core reads a large output from the shared cache or memory at a fraction of the memory system's
    /// bandwidth, and while the hook runs libtorch's other threads have nothing to do: the bench's CNN, whose three
    /// [128, 32, 28, 28] outputs are 12.8 MB each, spent ~10 ms per recorded step in this pass on one core.
    /// </summary>
    internal static int TwoThreadsFrom { get; set; } = 1 << 20;

    /// <summary>How far ahead of its loads the pass asks for the output's cache lines (<see cref="Prefetch"/>).</summary>
    internal const int PrefetchDistance = 4096;

    /// <summary>
    /// Outputs of at least this many values (32 KB) are read with <see cref="Prefetch"/>. The MLP's [128, 256] outputs
    /// are mostly out of the first-level cache too when the hook reads them: with the prefetch from 8K values its
    /// activations part went 0.186-0.201 -> 0.152-0.160 ms per recorded step (2026-12-06, Intel machine), the same as
    /// with it on every output; an output of a few prefetch distances gains nothing. Runs gathered from short blocks
    /// into a stack buffer never prefetch. Settable for tests.
    /// </summary>
    internal static int PrefetchFrom { get; set; } = 1 << 13;

    /// <summary>
    /// A software prefetch of the cache lines <see cref="PrefetchDistance"/> bytes past <paramref name="start"/> +
    /// <paramref name="offset"/>, one per 64 bytes the loop reads per step (x86 only; a no-op elsewhere). A hook reads an
    /// output that was just written and is mostly no longer in the core's caches, and with the hardware prefetchers alone
    /// this loop keeps too few lines in flight: on a 2-core Intel Xeon, one [128, 32, 28, 28] output read cold took
    /// 1.75-1.95 ms without and 0.84-0.99 ms with it (2026-12-06). A prefetch never faults and changes no result, so a
    /// line past the buffer's end, or one of a managed array the garbage collector has just moved, is only a wasted hint.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch(ref byte start, nint offset)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        byte* line = (byte*)Unsafe.AsPointer(ref start) + offset + PrefetchDistance;
        System.Runtime.Intrinsics.X86.Sse.Prefetch0(line);
        if (Vector<byte>.Count * 2 > 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(line + 64);   // 512-bit vectors: two lines a step
    }

    private static long _twoThreadPasses;

    /// <summary>Passes reduced in two halves so far, in this process (tests).</summary>
    internal static long TwoThreadPasses => Interlocked.Read(ref _twoThreadPasses);

    /// <summary>
    /// The pass in two halves, cut at a whole sample (blocked layouts: every group's segments of one sample together) or at
    /// a chunk boundary (one flat segment), each with its own group accumulators and whole-tensor counters, which then add
    /// (the groups' pivots are the same). The second half is queued to the thread pool and taken by whichever thread comes
    /// to it first: the calling thread does it itself when no pool thread has started on it by the time the first half is
    /// done (a busy pool costs nothing but the queueing). The sample is then copied in a gather of its own. Results differ
    /// from the one-pass ones only in the order of the double additions. False (nothing done) for a small buffer, one
    /// core, or a layout that does not split.
    /// </summary>
    private static unsafe bool TryReduceInTwo(ReadOnlySpan<float> data, int segmentLength, int segments, Span<Group> groups,
        float nearZero, SaturationBounds? saturation, ref WholeTensor whole, ref SampleCopy sample)
    {
        if (data.Length < TwoThreadsFrom || Environment.ProcessorCount < 2) return false;
        int firstSegments, secondSegments, firstLength, secondLength, split;
        if (segments == 1 && groups.Length == 1)
        {
            split = (data.Length / 2 + ChunkLength - 1) / ChunkLength * ChunkLength;   // at a chunk boundary, the larger part first
            firstSegments = secondSegments = 1;
            firstLength = split;
            secondLength = data.Length - split;
        }
        else
        {
            int samples = segments / groups.Length;
            if (samples * groups.Length != segments) return false;
            firstSegments = (samples + 1) / 2 * groups.Length;   // the caller takes the larger half: the pool thread starts later
            secondSegments = segments - firstSegments;
            firstLength = secondLength = segmentLength;
            split = firstSegments * segmentLength;
        }
        if (split <= 0 || split >= data.Length) return false;
        Interlocked.Increment(ref _twoThreadPasses);

        var rented = ArrayPool<Group>.Shared.Rent(groups.Length);
        try
        {
            var second = rented.AsSpan(0, groups.Length);
            second.Clear();
            for (int c = 0; c < groups.Length; c++) second[c].Pivot = groups[c].Pivot;
            fixed (float* values = data)
            {
                using var half = new SecondHalf(values + split, data.Length - split, secondLength, secondSegments, rented, groups.Length, nearZero, saturation);
                ThreadPool.UnsafeQueueUserWorkItem(half, preferLocal: false);
                var none = default(SampleCopy);
                try
                {
                    Reduce(data[..split], firstLength, firstSegments, groups, nearZero, saturation, ref whole, ref none);
                }
                finally
                {
                    // Whatever happened to the first half, no pool thread may still read the buffer once this returns.
                    half.RunOrWait();
                }
                for (int c = 0; c < groups.Length; c++)
                {
                    ref var g = ref groups[c];
                    ref readonly var h = ref second[c];
                    g.Sum += h.Sum;
                    g.Squares += h.Squares;
                    g.Near += h.Near;
                    g.TailSum += h.TailSum;
                    g.TailSquares += h.TailSquares;
                    g.TailNear += h.TailNear;
                    g.NonFinite += h.NonFinite;
                }
                whole.Min = Math.Min(whole.Min, half.Whole.Min);
                whole.Max = Math.Max(whole.Max, half.Whole.Max);
                whole.Saturated += half.Whole.Saturated;
                whole.Nan += half.Whole.Nan;
            }
        }
        finally
        {
            ArrayPool<Group>.Shared.Return(rented);
        }
        sample.Until(data, data.Length);
        return true;
    }

    /// <summary>The second half of <see cref="TryReduceInTwo"/>: run once, by a pool thread or by the caller.</summary>
    private sealed unsafe class SecondHalf(float* values, int length, int segmentLength, int segments, Group[] groups, int groupCount,
        float nearZero, SaturationBounds? saturation) : IThreadPoolWorkItem, IDisposable
    {
        private readonly ManualResetEventSlim _done = new(false);
        private int _claimed;
        private System.Runtime.ExceptionServices.ExceptionDispatchInfo? _failure;

        public WholeTensor Whole = WholeTensor.Create();

        public void Execute()
        {
            if (Interlocked.Exchange(ref _claimed, 1) != 0) return;
            try
            {
                Run();
            }
            catch (Exception e)
            {
                _failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                _done.Set();
            }
        }

        /// <summary>Runs the half on the calling thread unless a pool thread took it; then waits for that thread.</summary>
        public void RunOrWait()
        {
            if (Interlocked.Exchange(ref _claimed, 1) == 0)
            {
                Run();
            }
            else
            {
                WaitUninterrupted();
                _failure?.Throw();
            }
        }

        /// <summary>
        /// Waits for the pool thread however long it takes: an interrupt (<see cref="Thread.Interrupt"/>) must not end the
        /// wait while that thread still reads the caller's buffer; it is raised again on this thread once the wait is over.
        /// </summary>
        private void WaitUninterrupted()
        {
            bool interrupted = false;
            while (true)
            {
                try
                {
                    _done.Wait();
                    break;
                }
                catch (ThreadInterruptedException)
                {
                    interrupted = true;
                }
            }
            if (interrupted) Thread.CurrentThread.Interrupt();
        }

        /// <summary>After <see cref="RunOrWait"/>: a pool thread that comes to the item later only finds it claimed.</summary>
        public void Dispose() => _done.Dispose();

        private void Run()
        {
            var none = default(SampleCopy);
            Reduce(new ReadOnlySpan<float>(values, length), segmentLength, segments, groups.AsSpan(0, groupCount), nearZero, saturation, ref Whole, ref none);
        }
    }

    /// <summary>
    /// One group's running reductions. Chunk sums stay lane-wise in double vectors (no horizontal reduction per segment,
    /// which matters for conv outputs with tens of thousands of small blocks); the scalar tail's go to scalars.
    /// </summary>
    private struct Group
    {
        public Vector<double> Sum;
        public Vector<double> Squares;
        public Vector<int> Near;
        public double TailSum;
        public double TailSquares;
        public long TailNear;
        public long NonFinite;
        public long Elements;
        public float Pivot;

        public readonly long NearZero() => Vector.Sum(Near) + TailNear;

        public readonly Moments Moments() =>
            new(Elements - NonFinite, Pivot, Vector.Sum(Sum) + TailSum, Vector.Sum(Squares) + TailSquares);
    }

    /// <summary>Whole-tensor extremes and counters (non-finite elements are counted per group).</summary>
    private struct WholeTensor
    {
        public float Min;
        public float Max;
        public long Saturated;
        public long Nan;

        public static WholeTensor Create() => new() { Min = float.PositiveInfinity, Max = float.NegativeInfinity };
    }

    /// <summary>The first finite value of a group's segments (every <paramref name="stride"/>-th segment from
    /// <paramref name="first"/>), or 0 when there is none.</summary>
    private static float FirstFinite(ReadOnlySpan<float> data, int first, int segmentLength, int stride, int segments)
    {
        for (int s = first; s < segments; s += stride)
        {
            foreach (var v in data.Slice(s * segmentLength, segmentLength))
                if (float.IsFinite(v)) return v;
        }
        return 0f;
    }

    /// <summary>
    /// The pass: <paramref name="segments"/> segments of <paramref name="segmentLength"/> elements, segment s belonging
    /// to group s mod the number of groups, each reduced by <see cref="Segment"/> (segments shorter than
    /// <see cref="GatherBelow"/> after gathering a tile's worth of them per group). Extremes and counters of the whole
    /// tensor are carried in vectors throughout.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    private static void Reduce(ReadOnlySpan<float> data, int segmentLength, int segments, Span<Group> groups, float nearZero,
        SaturationBounds? saturation, ref WholeTensor whole, ref SampleCopy sample)
    {
        int w = Vector<float>.Count;
        bool bounded = saturation.HasValue;
        float satLo = saturation?.Low ?? float.NegativeInfinity;
        float satHi = saturation?.High ?? float.PositiveInfinity;
        if (data.Length < w)
        {
            for (int s = 0, c = 0; s < segments; s++, c = c + 1 == groups.Length ? 0 : c + 1)
                Tail(data.Slice(s * segmentLength, segmentLength), nearZero, satLo, satHi, bounded, ref groups[c], ref whole);
            sample.Until(data, data.Length);
            return;
        }
        var vNear = new Vector<float>(nearZero);
        var vSatLo = new Vector<float>(satLo);
        var vSatHi = new Vector<float>(satHi);
        var vMin = new Vector<float>(float.PositiveInfinity);
        var vMax = new Vector<float>(float.NegativeInfinity);
        var cSat = Vector<int>.Zero;
        var cNan = Vector<int>.Zero;
        bool prefetch = data.Length >= PrefetchFrom;
        // The sampled values are copied behind the pass, from the slice just reduced (still in the first-level cache),
        // instead of in a pass of their own that would be the first to read the output and pay its cache misses.
        if (segments == 1 && groups.Length == 1 && segmentLength >= GatherBelow)
        {
            // One segment (a flat layout): reduced in slices of whole chunks, the last slice taking the remainder, so that
            // the chunks, and with them every sum, are those of a single call over the whole segment.
            int at = 0;
            for (; segmentLength - at >= 2 * SampleSlice; at += SampleSlice)
            {
                Segment(data, at, SampleSlice, prefetch, ref groups[0], vNear, vSatLo, vSatHi, bounded, ref vMin, ref vMax, ref cSat, ref cNan);
                sample.Until(data, at + SampleSlice);
            }
            Segment(data, at, segmentLength - at, prefetch, ref groups[0], vNear, vSatLo, vSatHi, bounded, ref vMin, ref vMax, ref cSat, ref cNan);
        }
        else if (segmentLength >= GatherBelow)
        {
            for (int s = 0, c = 0; s < segments; s++, c = c + 1 == groups.Length ? 0 : c + 1)
            {
                Segment(data, s * segmentLength, segmentLength, prefetch, ref groups[c], vNear, vSatLo, vSatHi, bounded,
                    ref vMin, ref vMax, ref cSat, ref cNan);
                sample.Until(data, (long)(s + 1) * segmentLength);
            }
        }
        else
        {
            // Short blocks (3x3 maps, [N, C, 1, 1] after global pooling): a group's blocks of a tile of samples are copied
            // into one contiguous run, which is reduced as one segment. The tile (at most GatherTile floats) stays in the
            // cache while every group's run is gathered from it.
            Span<float> run = stackalloc float[ChunkLength + w];
            int perSample = groups.Length * segmentLength;
            int samples = (segments + groups.Length - 1) / groups.Length;
            int tile = Math.Clamp(GatherTile / perSample, 1, ChunkLength / segmentLength);
            for (int n0 = 0; n0 < samples; n0 += tile)
            {
                int n1 = Math.Min(samples, n0 + tile);
                for (int c = 0; c < groups.Length; c++)
                {
                    int length = 0;
                    for (int s = n0 * groups.Length + c; s < n1 * groups.Length && s < segments; s += groups.Length)
                    {
                        for (int k = s * segmentLength, end = k + segmentLength; k < end; k++)
                            run[length++] = data[k];
                    }
                    if (length > 0)
                        Segment(run, 0, length, false, ref groups[c], vNear, vSatLo, vSatHi, bounded, ref vMin, ref vMax, ref cSat, ref cNan);
                }
                sample.Until(data, (long)n1 * perSample);   // the tile, still in the cache
            }
        }
        sample.Until(data, data.Length);
        for (int k = 0; k < w; k++)
        {
            whole.Min = Math.Min(whole.Min, vMin[k]);
            whole.Max = Math.Max(whole.Max, vMax[k]);
        }
        whole.Saturated += Vector.Sum(cSat);
        whole.Nan += Vector.Sum(cNan);
    }

    /// <summary>
    /// Reduces the segment <paramref name="buffer"/>[<paramref name="offset"/>..+<paramref name="length"/>] into its group
    /// with <see cref="Chunk"/>, in runs of at most <see cref="ChunkLength"/> elements in whole vectors, the last run with
    /// the segment's partial vector: its elements in the vector's first lanes when the vector fits before the buffer's
    /// end, else in its last lanes (the vector then ends with the segment).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Segment(ReadOnlySpan<float> buffer, int offset, int length, bool prefetch, ref Group g, Vector<float> vNear,
        Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Vector<float> vMin, ref Vector<float> vMax,
        ref Vector<int> saturated, ref Vector<int> nan)
    {
        int w = Vector<float>.Count;
        int bodyVectors = length / w;
        int body = bodyVectors * w;
        int rest = length - body;
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(buffer.Slice(offset, body));
        var vPivot = new Vector<float>(g.Pivot);
        for (int start = 0; ; start += ChunkLength / w)
        {
            int count = Math.Min(ChunkLength / w, bodyVectors - start);
            bool last = start + count == bodyVectors;
            bool partial = last && rest > 0;
            var tail = Vector<float>.Zero;
            var tailLanes = Vector<int>.Zero;
            if (partial)
            {
                bool fits = offset + body + w <= buffer.Length;
                tail = new Vector<float>(buffer.Slice(fits ? offset + body : offset + length - w, w));
                tailLanes = fits
                    ? Vector.LessThan(Vector<int>.Indices, new Vector<int>(rest))
                    : Vector.GreaterThanOrEqual(Vector<int>.Indices, new Vector<int>(w - rest));
            }
            Chunk(vectors.Slice(start, count), prefetch, partial, tail, tailLanes, vPivot, vNear, vSatLo, vSatHi, bounded, ref g,
                ref vMin, ref vMax, ref saturated, ref nan);
            if (last) break;
        }
    }

    /// <summary>
    /// The chunk primitive: count, moments about the group's pivot, extremes and counters of a run of whole vectors and,
    /// when <paramref name="partial"/>, of the lanes <paramref name="lanes"/> of <paramref name="tail"/> (its other lanes
    /// count as the pivot, an element of the group, which changes neither sums nor extremes, and are left out of the
    /// counters). Float first: sums of (x - pivot) and (x - pivot)^2 in float vectors (the square added by a fused
    /// multiply-add where the processor has FMA: one rounding, and one instruction less per vector), two independent sets of
    /// accumulators (even and odd vectors) so consecutive adds do not wait on each other, then widened and added to the
    /// group's double vectors. NaN and Inf propagate into the float sum of squares, which also overflows for
    /// |x - pivot| above ~1e19; when that sum is not finite (x - x is 0 only for finite x) nothing of the float pass is
    /// kept and the run is redone by <see cref="MaskedChunk"/>. So the extremes can use the processor's min and max
    /// (whose result with a NaN operand is unspecified): a run with a NaN never commits them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunk(ReadOnlySpan<Vector<float>> chunk, bool prefetch, bool partial, Vector<float> tail, Vector<int> lanes,
        Vector<float> vPivot, Vector<float> vNear, Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Group g,
        ref Vector<float> vMin, ref Vector<float> vMax, ref Vector<int> saturated, ref Vector<int> nan)
    {
        var vSum = Vector<float>.Zero;
        var vSq = Vector<float>.Zero;
        var vSum1 = Vector<float>.Zero;
        var vSq1 = Vector<float>.Zero;
        var min = vMin;
        var max = vMax;
        var cNear = Vector<int>.Zero;
        var cSat = saturated;
        int i = 0;
        ref byte start = ref Unsafe.As<Vector<float>, byte>(ref MemoryMarshal.GetReference(chunk));
        for (; i + 2 <= chunk.Length; i += 2)
        {
            if (prefetch) Prefetch(ref start, (nint)i * Vector<byte>.Count);
            var v = chunk[i];
            var u = chunk[i + 1];
            var d = v - vPivot;
            var e = u - vPivot;
            vSum += d;
            vSum1 += e;
            if (System.Runtime.Intrinsics.X86.Fma.IsSupported)
            {
                vSq = Vector.FusedMultiplyAdd(d, d, vSq);
                vSq1 = Vector.FusedMultiplyAdd(e, e, vSq1);
            }
            else
            {
                vSq += d * d;
                vSq1 += e * e;
            }
            min = Vector.MinNative(min, Vector.MinNative(v, u));
            max = Vector.MaxNative(max, Vector.MaxNative(v, u));
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear) + Vector.LessThanOrEqual(Vector.Abs(u), vNear);
            if (bounded)
            {
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi))
                      + Vector.BitwiseOr(Vector.LessThanOrEqual(u, vSatLo), Vector.GreaterThanOrEqual(u, vSatHi));
            }
        }
        if (i < chunk.Length)
        {
            var v = chunk[i];
            var d = v - vPivot;
            vSum += d;
            vSq += d * d;
            min = Vector.MinNative(min, v);
            max = Vector.MaxNative(max, v);
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear);
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi));
        }
        if (partial)
        {
            var v = Vector.ConditionalSelect(lanes, tail, vPivot);
            var d = v - vPivot;
            vSum1 += d;
            vSq1 += d * d;
            min = Vector.MinNative(min, v);
            max = Vector.MaxNative(max, v);
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear) & lanes;
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi)) & lanes;
        }
        var squares = vSq + vSq1;
        if (!Vector.EqualsAll(squares - squares, Vector<float>.Zero))
        {
            var masked = MaskedChunk(chunk, partial, tail, lanes, vPivot, vNear, vSatLo, vSatHi, bounded, ref g);
            vMin = Vector.Min(vMin, masked.Min);
            vMax = Vector.Max(vMax, masked.Max);
            saturated += masked.Saturated;
            nan += masked.Nan;
            return;
        }
        Vector.Widen(vSum + vSum1, out var s0, out var s1);
        Vector.Widen(squares, out var q0, out var q1);
        g.Sum += s0 + s1;
        g.Squares += q0 + q1;
        g.Near += cNear;
        vMin = min;
        vMax = max;
        saturated = cSat;
    }

    /// <summary>
    /// The fallback of <see cref="Chunk"/> for a run with NaN or Inf, or whose float squares overflowed, taking the same
    /// arguments: every reduction masks the non-finite elements out and counts them, and the moments are accumulated in
    /// double vectors (any finite float minus any finite pivot squares without overflow in double).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]   // rare: keep the hot loop small
    private static MaskedExtremes MaskedChunk(ReadOnlySpan<Vector<float>> chunk, bool partial, Vector<float> tail, Vector<int> lanes,
        Vector<float> vPivot, Vector<float> vNear, Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Group g)
    {
        var vPosInf = new Vector<float>(float.PositiveInfinity);
        var vNegInf = new Vector<float>(float.NegativeInfinity);
        var vMin = vPosInf;
        var vMax = vNegInf;
        Vector.Widen(vPivot, out var pivot0, out var pivot1);
        var vSum = Vector<double>.Zero;
        var vSq = Vector<double>.Zero;
        var cElements = Vector<int>.Zero;
        var cFinite = Vector<int>.Zero;
        var cNear = Vector<int>.Zero;
        var cSat = Vector<int>.Zero;
        var cNan = Vector<int>.Zero;
        for (int i = 0; i < chunk.Length + (partial ? 1 : 0); i++)
        {
            bool whole = i < chunk.Length;
            var v = whole ? chunk[i] : tail;
            var mask = whole ? Vector<int>.AllBitsSet : lanes;
            var finite = Vector.Equals(v - v, Vector<float>.Zero) & mask;           // false for NaN and ±Inf
            Vector.Widen(Vector.ConditionalSelect(finite, v, vPivot), out var wide0, out var wide1);
            var d0 = wide0 - pivot0;
            var d1 = wide1 - pivot1;
            vSum += d0 + d1;
            vSq += d0 * d0 + d1 * d1;
            vMin = Vector.Min(vMin, Vector.ConditionalSelect(finite, v, vPosInf));
            vMax = Vector.Max(vMax, Vector.ConditionalSelect(finite, v, vNegInf));
            cElements -= mask;
            cFinite -= finite;
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear) & mask;
            cNan -= Vector.OnesComplement(Vector.Equals(v, v)) & mask;
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi)) & mask;
        }
        g.Sum += vSum;
        g.Squares += vSq;
        g.Near += cNear;
        g.NonFinite += Vector.Sum(cElements) - (long)Vector.Sum(cFinite);
        return new MaskedExtremes(vMin, vMax, cSat, cNan);
    }

    /// <summary>What <see cref="MaskedChunk"/> found for the whole-tensor extremes and counters (returned, not passed by
    /// reference, so that the hot loop's vectors can stay in registers).</summary>
    private readonly record struct MaskedExtremes(Vector<float> Min, Vector<float> Max, Vector<int> Saturated, Vector<int> Nan);

    /// <summary>
    /// The one scalar tail, for a buffer shorter than one vector: a segment's elements, in double.
    /// </summary>
    private static void Tail(ReadOnlySpan<float> segment, float nearZero, float satLo, float satHi, bool bounded, ref Group g,
        ref WholeTensor whole)
    {
        double pivot = g.Pivot;
        foreach (var v in segment)
        {
            if (float.IsFinite(v))
            {
                double d = v - pivot;
                g.TailSum += d;
                g.TailSquares += d * d;
                whole.Min = Math.Min(whole.Min, v);
                whole.Max = Math.Max(whole.Max, v);
            }
            else
            {
                g.NonFinite++;
                if (float.IsNaN(v)) whole.Nan++;
            }
            if (Math.Abs(v) <= nearZero) g.TailNear++;
            if (bounded && (v <= satLo || v >= satHi)) whole.Saturated++;
        }
    }

    /// <summary>
    /// Features (columns of a row-major [rows, features] buffer) whose every element is near zero: |x| &lt;= nearZero
    /// (NaN counts as not near zero). Four feature vectors at a time go down the rows with a mask per vector of the lanes
    /// near zero in every row so far, in registers, read with unaligned vector loads (no bounds checks). The walk stops as
    /// soon as no lane of the four is still near zero everywhere: a live feature usually shows a value above the threshold
    /// within a few rows, so a layer without dead features is read a few rows deep instead of all the way down (reading
    /// every row put the bench MLP's kernel at 0.092 ms per recorded step, against 0.064 with the early stop,
    /// scripts/kernel-bench.sh). Only features that are dead, or nearly so, are read to the last row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int DeadFeatures(ReadOnlySpan<float> data, int features, float nearZero)
    {
        int w = Vector<float>.Count;
        int vectorsPerRow = features / w;
        int vectorFeatures = vectorsPerRow * w;
        int rows = data.Length / features;
        var vNear = new Vector<float>(nearZero);
        ref float first = ref MemoryMarshal.GetReference(data);
        int dead = 0;
        // The rows between two checks of the masks (a branch per row would cost more than the few rows it can save).
        const int Check = 4;
        int k = 0;
        for (; k + 4 <= vectorsPerRow; k += 4)
        {
            Vector<int> m0 = Vector<int>.AllBitsSet, m1 = m0, m2 = m0, m3 = m0;
            nuint at = (nuint)(k * w);
            for (int r = 0; r < rows; r++, at += (nuint)features)
            {
                m0 &= Vector.LessThanOrEqual(Vector.Abs(Vector.LoadUnsafe(ref first, at)), vNear);
                m1 &= Vector.LessThanOrEqual(Vector.Abs(Vector.LoadUnsafe(ref first, at + (nuint)w)), vNear);
                m2 &= Vector.LessThanOrEqual(Vector.Abs(Vector.LoadUnsafe(ref first, at + (nuint)(2 * w))), vNear);
                m3 &= Vector.LessThanOrEqual(Vector.Abs(Vector.LoadUnsafe(ref first, at + (nuint)(3 * w))), vNear);
                if (r % Check == Check - 1 && (m0 | m1 | m2 | m3) == Vector<int>.Zero) break;
            }
            dead += Lanes(m0) + Lanes(m1) + Lanes(m2) + Lanes(m3);
        }
        for (; k < vectorsPerRow; k++)
        {
            Vector<int> m0 = Vector<int>.AllBitsSet;
            nuint at = (nuint)(k * w);
            for (int r = 0; r < rows; r++, at += (nuint)features)
            {
                m0 &= Vector.LessThanOrEqual(Vector.Abs(Vector.LoadUnsafe(ref first, at)), vNear);
                if (r % Check == Check - 1 && m0 == Vector<int>.Zero) break;
            }
            dead += Lanes(m0);
        }
        // Features past the last whole vector of a row (features not a multiple of the vector width).
        for (int f = vectorFeatures; f < features; f++)
        {
            bool all = true;
            for (int r = 0; r < rows && all; r++) all = Math.Abs(data[r * features + f]) <= nearZero;
            dead += all ? 1 : 0;
        }
        return dead;
    }

    /// <summary>The lanes of a compare mask that are set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Lanes(Vector<int> mask) => -Vector.Sum(mask);
}

/// <summary>
/// Vectorized sums of squares over float32 buffers, accumulated in float per chunk of <see cref="ChunkVectors"/>
/// vectors and in double across chunks. Four independent vector accumulators per loop, so the adds do not wait on
/// each other (one accumulator would make the loop run at the latency of a vector add, not at memory speed).
/// </summary>
internal static class CpuNorms
{
    private const int ChunkVectors = 512;

    /// <summary>Sum of x_i^2.</summary>
    public static double SumSquares(ReadOnlySpan<float> x) => Reduce(x, default, x, copy: false, difference: false);

    /// <summary>Sum of x_i^2, copying x into <paramref name="copy"/> in the same pass.</summary>
    public static double SumSquaresAndCopy(ReadOnlySpan<float> x, Span<float> copy)
    {
        if (copy.Length != x.Length) throw new ArgumentException($"Buffers differ in length: {x.Length} vs {copy.Length}.");
        return Reduce(x, copy, x, copy: true, difference: false);
    }

    /// <summary>
    /// Sums of g_i^2 and of w_i^2, copying w into <paramref name="copy"/>, in one pass over both buffers: each sum is
    /// accumulated exactly as <see cref="SumSquares"/> accumulates it (same chunks, same accumulators, same order), so
    /// the results are bit for bit those of the separate calls.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static (double Gradient, double Weight) SumSquaresOfBothAndCopy(ReadOnlySpan<float> g, ReadOnlySpan<float> w, Span<float> copy)
    {
        if (g.Length != w.Length || copy.Length != w.Length)
            throw new ArgumentException($"Buffers differ in length: {g.Length}, {w.Length} and {copy.Length}.");
        var vg = MemoryMarshal.Cast<float, Vector<float>>(g);
        var vw = MemoryMarshal.Cast<float, Vector<float>>(w);
        var vt = MemoryMarshal.Cast<float, Vector<float>>(copy);
        double gTotal = 0, wTotal = 0;
        for (int start = 0; start < vw.Length; start += ChunkVectors)
        {
            Vector<float> g0 = default, g1 = default, g2 = default, g3 = default;
            Vector<float> w0 = default, w1 = default, w2 = default, w3 = default;
            int end = Math.Min(vw.Length, start + ChunkVectors);
            int i = start;
            for (; i + 4 <= end; i += 4)
            {
                Vector<float> x0 = vw[i], x1 = vw[i + 1], x2 = vw[i + 2], x3 = vw[i + 3];
                vt[i] = x0;
                vt[i + 1] = x1;
                vt[i + 2] = x2;
                vt[i + 3] = x3;
                w0 += x0 * x0;
                w1 += x1 * x1;
                w2 += x2 * x2;
                w3 += x3 * x3;
                Vector<float> y0 = vg[i], y1 = vg[i + 1], y2 = vg[i + 2], y3 = vg[i + 3];
                g0 += y0 * y0;
                g1 += y1 * y1;
                g2 += y2 * y2;
                g3 += y3 * y3;
            }
            for (; i < end; i++)
            {
                var x = vw[i];
                vt[i] = x;
                w0 += x * x;
                var y = vg[i];
                g0 += y * y;
            }
            gTotal += Vector.Sum((g0 + g1) + (g2 + g3));
            wTotal += Vector.Sum((w0 + w1) + (w2 + w3));
        }
        for (int i = vw.Length * Vector<float>.Count; i < w.Length; i++)
        {
            copy[i] = w[i];
            double x = w[i], y = g[i];
            wTotal += x * x;
            gTotal += y * y;
        }
        return (gTotal, wTotal);
    }

    /// <summary>Sum of (a_i - b_i)^2.</summary>
    public static double SumSquaredDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"Buffers differ in length: {a.Length} vs {b.Length}.");
        return Reduce(a, default, b, copy: false, difference: true);
    }

    /// <summary>Sum of (a_i - b_i)^2 when <paramref name="difference"/>, else of a_i^2 (then copying a into <paramref name="target"/> when <paramref name="copy"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    private static double Reduce(ReadOnlySpan<float> a, Span<float> target, ReadOnlySpan<float> b, bool copy, bool difference)
    {
        var va = MemoryMarshal.Cast<float, Vector<float>>(a);
        var vb = MemoryMarshal.Cast<float, Vector<float>>(b);
        var vt = MemoryMarshal.Cast<float, Vector<float>>(target);
        double total = 0;
        for (int start = 0; start < va.Length; start += ChunkVectors)
        {
            var acc0 = Vector<float>.Zero;
            var acc1 = Vector<float>.Zero;
            var acc2 = Vector<float>.Zero;
            var acc3 = Vector<float>.Zero;
            int end = Math.Min(va.Length, start + ChunkVectors);
            int i = start;
            for (; i + 4 <= end; i += 4)
            {
                Vector<float> x0 = va[i], x1 = va[i + 1], x2 = va[i + 2], x3 = va[i + 3];
                if (copy)
                {
                    vt[i] = x0;
                    vt[i + 1] = x1;
                    vt[i + 2] = x2;
                    vt[i + 3] = x3;
                }
                if (difference)
                {
                    x0 -= vb[i];
                    x1 -= vb[i + 1];
                    x2 -= vb[i + 2];
                    x3 -= vb[i + 3];
                }
                acc0 += x0 * x0;
                acc1 += x1 * x1;
                acc2 += x2 * x2;
                acc3 += x3 * x3;
            }
            for (; i < end; i++)
            {
                var x = va[i];
                if (copy) vt[i] = x;
                if (difference) x -= vb[i];
                acc0 += x * x;
            }
            total += Vector.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        for (int i = va.Length * Vector<float>.Count; i < a.Length; i++)
        {
            if (copy) target[i] = a[i];
            double d = difference ? (double)a[i] - b[i] : a[i];
            total += d * d;
        }
        return total;
    }
}
