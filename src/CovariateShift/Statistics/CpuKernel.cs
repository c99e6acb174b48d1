using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CovariateShift.Statistics;

/// <summary>
/// One vectorized pass over a contiguous float32 buffer (a CPU tensor's own memory, no copy) that computes every
/// exact reduction of <see cref="ActivationSummary"/>. Partial sums are kept in float vectors for at most
/// <see cref="ChunkLength"/> elements and then added to double accumulators, so rounding stays at float
/// precision per chunk and double precision overall.
/// </summary>
internal static class CpuKernel
{
    private const int ChunkLength = 2048;

    internal struct Accumulator
    {
        public double Sum;
        public double SumSquares;
        public float Min;
        public float Max;
        public long Finite;
        public long NearZero;
        public long Saturated;
        public long Nan;
        public long NonFinite;

        public static Accumulator Create() => new() { Min = float.PositiveInfinity, Max = float.NegativeInfinity };
    }

    /// <summary>
    /// Summarizes <paramref name="data"/>, a contiguous [N, units, ...] buffer. When <paramref name="blockLength"/> &gt; 0
    /// the buffer is N x <paramref name="units"/> blocks of <paramref name="blockLength"/> elements (one block per sample
    /// and channel, e.g. H*W); each channel's moments are then taken about its own first value and merged (Chan et al.),
    /// so a channel whose spread is tiny next to its offset keeps its variance. Otherwise the buffer is rows of
    /// <paramref name="units"/> features (or one unit when <paramref name="units"/> is 1). Brock et al.'s channel
    /// statistics are filled when <paramref name="channelStatistics"/> is set (4-D outputs).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static void Summarize(ReadOnlySpan<float> data, int units, int blockLength, bool channelStatistics, float nearZero,
        SaturationBounds? saturation, ActivationSummary result)
    {
        result.Count = data.Length;
        result.Units = units;
        var acc = Accumulator.Create();
        if (blockLength > 0)
        {
            var shiftC = new float[units];
            var sumC = new double[units];
            var sumSqC = new double[units];
            var finC = new long[units];
            var activeC = new long[units];
            for (int c = 0; c < units && c * blockLength < data.Length; c++)
                shiftC[c] = FirstFinite(data.Slice(c * blockLength, blockLength));
            if (blockLength >= SmallBlock)
            {
                Blocks(data, units, blockLength, shiftC, nearZero, saturation, ref acc, sumC, sumSqC, finC, activeC);
            }
            else
            {
                // Small spatial maps (e.g. 3x3 after pooling): one vectorized pass for the whole-tensor reductions, then a
                // lean scalar pass per block for the per-channel moments and activity only.
                Accumulate(data, FirstFinite(data), nearZero, saturation, ref acc);
                SmallBlocks(data, units, blockLength, shiftC, nearZero, sumC, sumSqC, finC, activeC);
            }
            // Merge the per-channel moments: n = sum n_c, mean = sum n_c m_c / n, M2 = sum (M2_c + n_c (m_c - mean)^2).
            long n = 0;
            double weighted = 0;
            var meanC = new double[units];
            var m2C = new double[units];
            for (int c = 0; c < units; c++)
            {
                if (finC[c] == 0) continue;
                var m = sumC[c] / finC[c];
                meanC[c] = shiftC[c] + m;
                m2C[c] = Math.Max(0.0, sumSqC[c] - m * sumC[c]);
                n += finC[c];
                weighted += finC[c] * meanC[c];
            }
            double mean = n > 0 ? weighted / n : 0, m2 = 0, sqMean = 0, varMean = 0;
            int used = 0;
            for (int c = 0; c < units; c++)
            {
                if (finC[c] == 0) continue;
                m2 += m2C[c] + finC[c] * (meanC[c] - mean) * (meanC[c] - mean);
                sqMean += meanC[c] * meanC[c];
                varMean += m2C[c] / finC[c];
                used++;
            }
            result.Shift = mean;
            result.ShiftedSum = 0;
            result.ShiftedSumSquares = m2;
            result.DeadUnits = activeC.Count(a => a == 0);
            result.ChannelSquaredMean = channelStatistics ? (used > 0 ? sqMean / used : double.NaN) : null;
            result.ChannelVariance = channelStatistics ? (used > 0 ? varMean / used : double.NaN) : null;
        }
        else
        {
            float shift = FirstFinite(data);
            Accumulate(data, shift, nearZero, saturation, ref acc);
            result.Shift = shift;
            result.ShiftedSum = acc.Sum;
            result.ShiftedSumSquares = acc.SumSquares;
            result.DeadUnits = units > 1 ? DeadFeatures(data, units, nearZero) : (acc.NearZero == data.Length && data.Length > 0 ? 1 : 0);
            result.ChannelSquaredMean = null;
            result.ChannelVariance = null;
        }

        result.FiniteCount = acc.Finite;
        result.Min = acc.Finite > 0 ? acc.Min : double.NaN;
        result.Max = acc.Finite > 0 ? acc.Max : double.NaN;
        result.NearZero = acc.NearZero;
        result.Saturated = acc.Saturated;
        result.Nan = acc.Nan;
        result.Inf = acc.NonFinite - acc.Nan;
    }

    /// <summary>
    /// Per-channel moments and activity of N x <paramref name="units"/> blocks of <paramref name="blockLength"/> elements,
    /// plus the whole-tensor extremes and counts, in one pass. Each block (or each chunk of <see cref="ChunkLength"/>
    /// elements of a long block) is summed in float vectors about its channel's shift and added to the channel's double
    /// vectors without a horizontal reduction; extremes and counters stay in vectors for the whole tensor. So a block
    /// costs a handful of vector operations beyond its elements (conv outputs have tens of thousands of blocks). A chunk
    /// with NaN or Inf, or whose float sum of squares overflows, is redone by <see cref="MaskedChunk"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    private static void Blocks(ReadOnlySpan<float> data, int units, int blockLength, float[] shiftC, float nearZero,
        SaturationBounds? saturation, ref Accumulator acc, double[] sumC, double[] sumSqC, long[] finC, long[] activeC)
    {
        int w = Vector<float>.Count;
        bool bounded = saturation.HasValue;
        float satLo = saturation?.Low ?? float.NegativeInfinity;
        float satHi = saturation?.High ?? float.PositiveInfinity;
        var vNear = new Vector<float>(nearZero);
        var vSatLo = new Vector<float>(satLo);
        var vSatHi = new Vector<float>(satHi);
        var vMin = new Vector<float>(float.PositiveInfinity);
        var vMax = new Vector<float>(float.NegativeInfinity);
        var cSat = Vector<int>.Zero;
        var sumV = new Vector<double>[units];
        var sqV = new Vector<double>[units];
        var nearC = new long[units];
        var elementsC = new long[units];
        int chunkVectors = ChunkLength / w;
        int blocks = data.Length / blockLength;
        int bodyVectors = blockLength / w;
        for (int b = 0; b < blocks; b++)
        {
            int c = b % units;
            var block = data.Slice(b * blockLength, blockLength);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(block)[..bodyVectors];
            var vShift = new Vector<float>(shiftC[c]);
            var cNear = Vector<int>.Zero;
            for (int start = 0; start < vectors.Length; start += chunkVectors)
            {
                var chunk = vectors.Slice(start, Math.Min(chunkVectors, vectors.Length - start));
                if (TryChunk(chunk, vShift, vNear, vSatLo, vSatHi, bounded, out var vSum, out var vSq, ref vMin, ref vMax, ref cNear, ref cSat))
                {
                    Vector.Widen(vSum, out var s0, out var s1);
                    Vector.Widen(vSq, out var q0, out var q1);
                    sumV[c] += s0 + s1;
                    sqV[c] += q0 + q1;
                    long elements = (long)chunk.Length * w;
                    finC[c] += elements;
                    acc.Finite += elements;
                }
                else
                {
                    var part = Accumulator.Create();
                    MaskedChunk(chunk, vShift, vNear, vSatLo, vSatHi, bounded, ref vMin, ref vMax, ref part);
                    sumC[c] += part.Sum;
                    sumSqC[c] += part.SumSquares;
                    finC[c] += part.Finite;
                    nearC[c] += part.NearZero;
                    acc.Finite += part.Finite;
                    acc.Saturated += part.Saturated;
                    acc.Nan += part.Nan;
                    acc.NonFinite += part.NonFinite;
                }
            }
            nearC[c] += Vector.Sum(cNear);
            elementsC[c] += blockLength;
            // Elements past the last whole vector of the block.
            float shift = shiftC[c];
            foreach (var v in block[(bodyVectors * w)..])
            {
                if (float.IsFinite(v))
                {
                    double d = v - shift;
                    sumC[c] += d;
                    sumSqC[c] += d * d;
                    finC[c]++;
                    acc.Finite++;
                    acc.Min = Math.Min(acc.Min, v);
                    acc.Max = Math.Max(acc.Max, v);
                }
                else
                {
                    acc.NonFinite++;
                    if (float.IsNaN(v)) acc.Nan++;
                }
                if (Math.Abs(v) <= nearZero) nearC[c]++;
                if (bounded && (v <= satLo || v >= satHi)) acc.Saturated++;
            }
        }
        for (int k = 0; k < w; k++)
        {
            acc.Min = Math.Min(acc.Min, vMin[k]);
            acc.Max = Math.Max(acc.Max, vMax[k]);
        }
        acc.Saturated += Vector.Sum(cSat);
        for (int c = 0; c < units; c++)
        {
            sumC[c] += Vector.Sum(sumV[c]);
            sumSqC[c] += Vector.Sum(sqV[c]);
            acc.NearZero += nearC[c];
            activeC[c] += elementsC[c] - nearC[c];
        }
    }

    /// <summary>Blocks shorter than this use <see cref="SmallBlocks"/> for the per-channel sums.</summary>
    private const int SmallBlock = 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SmallBlocks(ReadOnlySpan<float> data, int units, int blockLength, float[] shiftC, float nearZero,
        double[] sumC, double[] sumSqC, long[] finC, long[] activeC)
    {
        int blocks = data.Length / blockLength;
        for (int b = 0; b < blocks; b++)
        {
            int c = b % units;
            float shift = shiftC[c], sum = 0, sq = 0;
            int finite = 0, active = 0;
            foreach (var v in data.Slice(b * blockLength, blockLength))
            {
                float d = v - shift;
                bool ok = float.IsFinite(v);
                sum += ok ? d : 0;
                sq += ok ? d * d : 0;
                finite += ok ? 1 : 0;
                active += Math.Abs(v) <= nearZero ? 0 : 1;
            }
            sumC[c] += sum;
            sumSqC[c] += sq;
            finC[c] += finite;
            activeC[c] += active;
        }
    }

    private static float FirstFinite(ReadOnlySpan<float> data)
    {
        foreach (var v in data)
            if (float.IsFinite(v)) return v;
        return 0f;
    }

    /// <summary>
    /// Features (columns of a row-major [rows, features] buffer) whose every element is near zero: |x| &lt;= nearZero
    /// (NaN counts as not near zero). One vectorized pass counting, per feature, the elements that are not near zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int DeadFeatures(ReadOnlySpan<float> data, int features, float nearZero)
    {
        int w = Vector<float>.Count;
        int vectorFeatures = features / w * w;
        var active = new int[features];
        var counts = new Vector<int>[vectorFeatures / w];
        var vNear = new Vector<float>(nearZero);
        int rows = data.Length / features;
        for (int r = 0; r < rows; r++)
        {
            var row = data.Slice(r * features, features);
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(row[..vectorFeatures]);
            for (int k = 0; k < vectors.Length; k++)
                counts[k] -= Vector.OnesComplement(Vector.LessThanOrEqual(Vector.Abs(vectors[k]), vNear));
            for (int f = vectorFeatures; f < features; f++)
                if (!(Math.Abs(row[f]) <= nearZero)) active[f]++;
        }
        for (int k = 0; k < counts.Length; k++)
            for (int j = 0; j < w; j++) active[k * w + j] += counts[k][j];
        return active.Count(a => a == 0);
    }

    /// <summary>Adds the reductions of <paramref name="x"/> to <paramref name="acc"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    internal static void Accumulate(ReadOnlySpan<float> x, float shift, float nearZero, SaturationBounds? saturation, ref Accumulator acc)
    {
        bool bounded = saturation.HasValue;
        float satLo = saturation?.Low ?? float.NegativeInfinity;
        float satHi = saturation?.High ?? float.PositiveInfinity;
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
        var vShift = new Vector<float>(shift);
        var vNear = new Vector<float>(nearZero);
        var vSatLo = new Vector<float>(satLo);
        var vSatHi = new Vector<float>(satHi);
        var vPosInf = new Vector<float>(float.PositiveInfinity);
        var vNegInf = new Vector<float>(float.NegativeInfinity);
        var vMin = vPosInf;
        var vMax = vNegInf;
        int chunkVectors = ChunkLength / Vector<float>.Count;
        for (int start = 0; start < vectors.Length; start += chunkVectors)
        {
            var chunk = vectors.Slice(start, Math.Min(chunkVectors, vectors.Length - start));
            if (!FastChunk(chunk, vShift, vNear, vSatLo, vSatHi, bounded, ref vMin, ref vMax, ref acc))
                MaskedChunk(chunk, vShift, vNear, vSatLo, vSatHi, bounded, ref vMin, ref vMax, ref acc);
        }
        for (int k = 0; k < Vector<float>.Count; k++)
        {
            acc.Min = Math.Min(acc.Min, vMin[k]);
            acc.Max = Math.Max(acc.Max, vMax[k]);
        }
        for (int i = vectors.Length * Vector<float>.Count; i < x.Length; i++)
        {
            float v = x[i];
            if (float.IsFinite(v))
            {
                float d = v - shift;
                acc.Sum += d;
                acc.SumSquares += (double)d * d;
                acc.Min = Math.Min(acc.Min, v);
                acc.Max = Math.Max(acc.Max, v);
                acc.Finite++;
            }
            else
            {
                acc.NonFinite++;
                if (float.IsNaN(v)) acc.Nan++;
            }
            if (Math.Abs(v) <= nearZero) acc.NearZero++;
            if (bounded && (v <= satLo || v >= satHi)) acc.Saturated++;
        }
    }

    /// <summary>
    /// Float sums of (x - shift) and (x - shift)^2 over <paramref name="chunk"/>, with the extremes and the near-zero and
    /// saturation counters carried in and out. Two independent sets of accumulators (even and odd vectors), so
    /// consecutive adds do not wait on each other. Returns false, leaving the carried values untouched, when an element
    /// is NaN or Inf or the float squares overflow (x - x is 0 only for finite x, and every element reaches the squares).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryChunk(ReadOnlySpan<Vector<float>> chunk, Vector<float> vShift, Vector<float> vNear, Vector<float> vSatLo,
        Vector<float> vSatHi, bool bounded, out Vector<float> sum, out Vector<float> squares,
        ref Vector<float> vMin, ref Vector<float> vMax, ref Vector<int> near, ref Vector<int> saturated)
    {
        var vSum = Vector<float>.Zero;
        var vSq = Vector<float>.Zero;
        var vSum1 = Vector<float>.Zero;
        var vSq1 = Vector<float>.Zero;
        var min = vMin;
        var max = vMax;
        var cNear = near;
        var cSat = saturated;
        int i = 0;
        for (; i + 2 <= chunk.Length; i += 2)
        {
            var v = chunk[i];
            var u = chunk[i + 1];
            var d = v - vShift;
            var e = u - vShift;
            vSum += d;
            vSum1 += e;
            vSq += d * d;
            vSq1 += e * e;
            min = Vector.Min(min, Vector.Min(v, u));
            max = Vector.Max(max, Vector.Max(v, u));
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
            var d = v - vShift;
            vSum += d;
            vSq += d * d;
            min = Vector.Min(min, v);
            max = Vector.Max(max, v);
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear);
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi));
        }
        sum = vSum + vSum1;
        squares = vSq + vSq1;
        if (!Vector.EqualsAll(squares - squares, Vector<float>.Zero)) return false;
        vMin = min;
        vMax = max;
        near = cNear;
        saturated = cSat;
        return true;
    }

    /// <summary>
    /// The common case: every element finite and moderate. Accumulates in float without finiteness masks. NaN and Inf
    /// propagate into the float sum of squares, which also overflows for |x| above ~1e19; a non-finite result therefore
    /// means "use <see cref="MaskedChunk"/>" and nothing of this chunk is kept.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    private static bool FastChunk(ReadOnlySpan<Vector<float>> chunk, Vector<float> vShift, Vector<float> vNear,
        Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Vector<float> vMin, ref Vector<float> vMax, ref Accumulator acc)
    {
        var near = Vector<int>.Zero;
        var sat = Vector<int>.Zero;
        if (!TryChunk(chunk, vShift, vNear, vSatLo, vSatHi, bounded, out var vSum, out var vSq, ref vMin, ref vMax, ref near, ref sat))
            return false;
        acc.Sum += HorizontalSum(vSum);
        acc.SumSquares += HorizontalSum(vSq);
        acc.Finite += (long)chunk.Length * Vector<float>.Count;
        acc.NearZero += Vector.Sum(near);
        acc.Saturated += Vector.Sum(sat);
        return true;
    }

    /// <summary>
    /// A chunk with NaN or Inf, or whose float sums overflowed: every reduction masks the non-finite elements out and
    /// counts them, and the moments are accumulated in double (|x| up to float's limit squares without overflow).
    /// </summary>
    private static void MaskedChunk(ReadOnlySpan<Vector<float>> chunk, Vector<float> vShift, Vector<float> vNear,
        Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Vector<float> vMin, ref Vector<float> vMax, ref Accumulator acc)
    {
        var vPosInf = new Vector<float>(float.PositiveInfinity);
        var vNegInf = new Vector<float>(float.NegativeInfinity);
        var vSum = Vector<double>.Zero;
        var vSq = Vector<double>.Zero;
        var cFinite = Vector<int>.Zero;
        var cNear = Vector<int>.Zero;
        var cSat = Vector<int>.Zero;
        var cNan = Vector<int>.Zero;
        foreach (var v in chunk)
        {
            var finite = Vector.Equals(v - v, Vector<float>.Zero);           // false for NaN and ±Inf
            Vector.Widen(Vector.ConditionalSelect(finite, v, vShift), out var wide0, out var wide1);
            Vector.Widen(vShift, out var shift0, out var shift1);
            var d0 = wide0 - shift0;
            var d1 = wide1 - shift1;
            vSum += d0 + d1;
            vSq += d0 * d0 + d1 * d1;
            vMin = Vector.Min(vMin, Vector.ConditionalSelect(finite, v, vPosInf));
            vMax = Vector.Max(vMax, Vector.ConditionalSelect(finite, v, vNegInf));
            cFinite -= finite;
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear);
            cNan -= Vector.OnesComplement(Vector.Equals(v, v));
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi));
        }
        acc.Sum += Vector.Sum(vSum);
        acc.SumSquares += Vector.Sum(vSq);
        long finiteHere = Vector.Sum(cFinite);
        acc.Finite += finiteHere;
        acc.NearZero += Vector.Sum(cNear);
        acc.Saturated += Vector.Sum(cSat);
        acc.Nan += Vector.Sum(cNan);
        acc.NonFinite += (long)chunk.Length * Vector<float>.Count - finiteHere;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double HorizontalSum(Vector<float> v)
    {
        double s = 0;
        for (int k = 0; k < Vector<float>.Count; k++) s += v[k];
        return s;
    }
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
