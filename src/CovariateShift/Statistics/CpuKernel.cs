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
    /// Summarizes <paramref name="data"/>. When <paramref name="channels"/> &gt; 0 the buffer is NCHW-contiguous with
    /// blocks of <paramref name="blockLength"/> = H*W elements per (sample, channel), and the channel statistics of
    /// Brock et al. are computed as well.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static void Summarize(ReadOnlySpan<float> data, int channels, int blockLength, float nearZero,
        SaturationBounds? saturation, ActivationSummary result)
    {
        result.Count = data.Length;
        float shift = data.Length > 0 && float.IsFinite(data[0]) ? data[0] : 0f;
        result.Shift = shift;
        var acc = Accumulator.Create();
        if (channels > 0 && blockLength > 0)
        {
            var sumC = new double[channels];
            var sumSqC = new double[channels];
            var finC = new long[channels];
            int blocks = data.Length / blockLength;
            for (int b = 0; b < blocks; b++)
            {
                var c = b % channels;
                var before = acc;
                Accumulate(data.Slice(b * blockLength, blockLength), shift, nearZero, saturation, ref acc);
                sumC[c] += acc.Sum - before.Sum;
                sumSqC[c] += acc.SumSquares - before.SumSquares;
                finC[c] += acc.Finite - before.Finite;
            }
            double sqMean = 0, varMean = 0;
            int used = 0;
            for (int c = 0; c < channels; c++)
            {
                if (finC[c] == 0) continue;
                var m = sumC[c] / finC[c];
                var mean = shift + m;
                sqMean += mean * mean;
                varMean += Math.Max(0.0, sumSqC[c] / finC[c] - m * m);
                used++;
            }
            result.ChannelSquaredMean = used > 0 ? sqMean / used : double.NaN;
            result.ChannelVariance = used > 0 ? varMean / used : double.NaN;
        }
        else
        {
            Accumulate(data, shift, nearZero, saturation, ref acc);
            result.ChannelSquaredMean = null;
            result.ChannelVariance = null;
        }

        result.FiniteCount = acc.Finite;
        result.ShiftedSum = acc.Sum;
        result.ShiftedSumSquares = acc.SumSquares;
        result.Min = acc.Finite > 0 ? acc.Min : double.NaN;
        result.Max = acc.Finite > 0 ? acc.Max : double.NaN;
        result.NearZero = acc.NearZero;
        result.Saturated = acc.Saturated;
        result.Nan = acc.Nan;
        result.Inf = acc.NonFinite - acc.Nan;
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
    /// The common case: no NaN or Inf in the chunk. Accumulates without finiteness masks; the chunk's sums are finite
    /// exactly when every element is (NaN and Inf propagate into the sum of squares), so a non-finite result means
    /// "use <see cref="MaskedChunk"/>" and nothing of this chunk is kept.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    private static bool FastChunk(ReadOnlySpan<Vector<float>> chunk, Vector<float> vShift, Vector<float> vNear,
        Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Vector<float> vMin, ref Vector<float> vMax, ref Accumulator acc)
    {
        var vSum = Vector<float>.Zero;
        var vSq = Vector<float>.Zero;
        var cNear = Vector<int>.Zero;
        var cSat = Vector<int>.Zero;
        var min = vMin;
        var max = vMax;
        foreach (var v in chunk)
        {
            var d = v - vShift;
            vSum += d;
            vSq += d * d;
            min = Vector.Min(min, v);
            max = Vector.Max(max, v);
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear);
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi));
        }
        double sum = HorizontalSum(vSum), sq = HorizontalSum(vSq);
        if (!double.IsFinite(sum) || !double.IsFinite(sq)) return false;
        vMin = min;
        vMax = max;
        acc.Sum += sum;
        acc.SumSquares += sq;
        long elements = (long)chunk.Length * Vector<float>.Count;
        acc.Finite += elements;
        acc.NearZero += Vector.Sum(cNear);
        acc.Saturated += Vector.Sum(cSat);
        return true;
    }

    /// <summary>A chunk with NaN or Inf: every reduction masks the non-finite elements out and counts them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    private static void MaskedChunk(ReadOnlySpan<Vector<float>> chunk, Vector<float> vShift, Vector<float> vNear,
        Vector<float> vSatLo, Vector<float> vSatHi, bool bounded, ref Vector<float> vMin, ref Vector<float> vMax, ref Accumulator acc)
    {
        var vPosInf = new Vector<float>(float.PositiveInfinity);
        var vNegInf = new Vector<float>(float.NegativeInfinity);
        var vSum = Vector<float>.Zero;
        var vSq = Vector<float>.Zero;
        var cFinite = Vector<int>.Zero;
        var cNear = Vector<int>.Zero;
        var cSat = Vector<int>.Zero;
        var cNan = Vector<int>.Zero;
        foreach (var v in chunk)
        {
            var finite = Vector.Equals(v - v, Vector<float>.Zero);           // false for NaN and ±Inf
            var d = Vector.ConditionalSelect(finite, v - vShift, Vector<float>.Zero);
            vSum += d;
            vSq += d * d;
            vMin = Vector.Min(vMin, Vector.ConditionalSelect(finite, v, vPosInf));
            vMax = Vector.Max(vMax, Vector.ConditionalSelect(finite, v, vNegInf));
            cFinite -= finite;
            cNear -= Vector.LessThanOrEqual(Vector.Abs(v), vNear);
            cNan -= Vector.OnesComplement(Vector.Equals(v, v));
            if (bounded)
                cSat -= Vector.BitwiseOr(Vector.LessThanOrEqual(v, vSatLo), Vector.GreaterThanOrEqual(v, vSatHi));
        }
        acc.Sum += HorizontalSum(vSum);
        acc.SumSquares += HorizontalSum(vSq);
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

/// <summary>Vectorized sums of squares over float32 buffers, accumulated in double per chunk.</summary>
internal static class CpuNorms
{
    private const int ChunkVectors = 512;

    /// <summary>Sum of x_i^2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static double SumSquares(ReadOnlySpan<float> x)
    {
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
        double total = 0;
        for (int start = 0; start < vectors.Length; start += ChunkVectors)
        {
            var acc = Vector<float>.Zero;
            foreach (var v in vectors.Slice(start, Math.Min(ChunkVectors, vectors.Length - start)))
                acc += v * v;
            total += Vector.Sum(acc);
        }
        for (int i = vectors.Length * Vector<float>.Count; i < x.Length; i++) total += (double)x[i] * x[i];
        return total;
    }

    /// <summary>Sum of x_i^2, copying x into <paramref name="copy"/> in the same pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static double SumSquaresAndCopy(ReadOnlySpan<float> x, Span<float> copy)
    {
        if (copy.Length != x.Length) throw new ArgumentException($"Buffers differ in length: {x.Length} vs {copy.Length}.");
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(x);
        var target = MemoryMarshal.Cast<float, Vector<float>>(copy);
        double total = 0;
        for (int start = 0; start < vectors.Length; start += ChunkVectors)
        {
            var acc = Vector<float>.Zero;
            int end = Math.Min(vectors.Length, start + ChunkVectors);
            for (int i = start; i < end; i++)
            {
                var v = vectors[i];
                target[i] = v;
                acc += v * v;
            }
            total += Vector.Sum(acc);
        }
        for (int i = vectors.Length * Vector<float>.Count; i < x.Length; i++)
        {
            copy[i] = x[i];
            total += (double)x[i] * x[i];
        }
        return total;
    }

    /// <summary>Sum of (a_i - b_i)^2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static double SumSquaredDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"Buffers differ in length: {a.Length} vs {b.Length}.");
        var va = MemoryMarshal.Cast<float, Vector<float>>(a);
        var vb = MemoryMarshal.Cast<float, Vector<float>>(b);
        double total = 0;
        for (int start = 0; start < va.Length; start += ChunkVectors)
        {
            var acc = Vector<float>.Zero;
            int end = Math.Min(va.Length, start + ChunkVectors);
            for (int i = start; i < end; i++)
            {
                var d = va[i] - vb[i];
                acc += d * d;
            }
            total += Vector.Sum(acc);
        }
        for (int i = va.Length * Vector<float>.Count; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            total += d * d;
        }
        return total;
    }
}
