using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CovariateShift.Statistics;

/// <summary>Percentiles and histograms of a sample of finite values (host side, shared by both engine paths).</summary>
internal static class SampleStatistics
{
    /// <summary>
    /// Percentiles q (in [0, 1]) of <paramref name="values"/> (all finite), with numpy's default linear interpolation:
    /// h = (n - 1) q, result = a[floor h] + (h - floor h) (a[floor h + 1] - a[floor h]) over the sorted values.
    /// Sorts with a branch-free radix sort (three 11-bit passes over order-preserving integer keys): its cost does not
    /// depend on the data, unlike comparison-based selection whose branches mispredict on random activations.
    /// Reorders <paramref name="values"/>. Returns NaN for every q when the sample is empty.
    /// </summary>
    public static double[] Percentiles(Span<float> values, ReadOnlySpan<double> q)
    {
        var result = new double[q.Length];
        int n = values.Length;
        if (n == 0)
        {
            Array.Fill(result, double.NaN);
            return result;
        }
        RadixSort(values);
        for (int j = 0; j < q.Length; j++)
        {
            double h = (n - 1) * q[j];
            int lo = (int)Math.Floor(h);
            int hi = Math.Min(lo + 1, n - 1);
            result[j] = values[lo] + (h - lo) * ((double)values[hi] - values[lo]);
        }
        return result;
    }

    /// <summary>Sorts finite floats ascending (LSD radix sort on order-preserving 32-bit keys, digits of 11, 11 and 10 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    internal static void RadixSort(Span<float> values)
    {
        const int Buckets = 2048;
        int n = values.Length;
        var keys = MemoryMarshal.Cast<float, uint>(values);
        var rented = System.Buffers.ArrayPool<uint>.Shared.Rent(n);
        var scratch = rented.AsSpan(0, n);
        Span<int> counts = stackalloc int[3 * Buckets];
        counts.Clear();
        for (int i = 0; i < n; i++)
        {
            // Flip all bits of negative numbers and only the sign bit of positive ones: unsigned order = float order.
            uint k = keys[i];
            k ^= (uint)((int)k >> 31) | 0x8000_0000u;
            keys[i] = k;
            counts[(int)(k & 0x7FF)]++;
            counts[Buckets + (int)((k >> 11) & 0x7FF)]++;
            counts[2 * Buckets + (int)(k >> 22)]++;
        }
        Span<uint> from = keys, to = scratch;
        for (int pass = 0; pass < 3; pass++)
        {
            var c = counts.Slice(pass * Buckets, Buckets);
            int shift = pass * 11;
            if (c[(int)((from[0] >> shift) & 0x7FF)] == n) continue;   // every key has the same digit: nothing to do
            int sum = 0;
            for (int b = 0; b < Buckets; b++)
            {
                int t = c[b];
                c[b] = sum;
                sum += t;
            }
            foreach (var k in from) to[c[(int)((k >> shift) & 0x7FF)]++] = k;
            var swap = from;
            from = to;
            to = swap;
        }
        for (int i = 0; i < n; i++)
        {
            uint k = from[i];
            k ^= (k & 0x8000_0000u) != 0 ? 0x8000_0000u : 0xFFFF_FFFFu;
            keys[i] = k;
        }
        System.Buffers.ArrayPool<uint>.Shared.Return(rented);
    }

    /// <summary>
    /// Counts <paramref name="values"/> into <paramref name="bins"/> equal bins over [low, high) plus underflow
    /// (index 0, values &lt; low) and overflow (index bins + 1, values &gt;= high).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public static long[] Histogram(ReadOnlySpan<float> values, double low, double high, int bins)
    {
        // Four interleaved count arrays: runs of equal values (e.g. ReLU zeros) would otherwise serialize on one counter.
        int stride = bins + 2;
        Span<int> partial = stride * 4 <= 4096 ? stackalloc int[stride * 4] : new int[stride * 4];
        partial.Clear();
        double scale = bins / (high - low);
        int i = 0;
        for (; i + 4 <= values.Length; i += 4)
        {
            partial[Bin(values[i], low, scale, bins)]++;
            partial[stride + Bin(values[i + 1], low, scale, bins)]++;
            partial[2 * stride + Bin(values[i + 2], low, scale, bins)]++;
            partial[3 * stride + Bin(values[i + 3], low, scale, bins)]++;
        }
        for (; i < values.Length; i++) partial[Bin(values[i], low, scale, bins)]++;
        var counts = new long[stride];
        for (int b = 0; b < stride; b++)
            counts[b] = (long)partial[b] + partial[stride + b] + partial[2 * stride + b] + partial[3 * stride + b];
        return counts;
    }

    /// <summary>Bin index of <paramref name="v"/>: 0 below the range, bins + 1 at or above its end.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int Bin(float v, double low, double scale, int bins)
    {
        double t = (v - low) * scale;
        return t < 0 ? 0 : t >= bins ? bins + 1 : (int)t + 1;
    }

    /// <summary>
    /// The fixed histogram range of a layer, chosen from its first recorded output with a spread: the output range for
    /// bounded activations (sigmoid [0, 1], tanh [-1, 1]); otherwise [min - s/2, max + s/2] with s = max - min
    /// (s = max(|max|, 1) when all values are equal, a range that is then not kept), where the low edge is 0 for layers
    /// whose output cannot be negative (ReLU, ReLU6, Softplus, Softmax, Hardsigmoid). With no finite value at all it
    /// falls back to [-1, 1] (not kept either). Values that later fall outside land in the underflow/overflow bins,
    /// which the shift metrics include.
    /// </summary>
    public static (double Low, double High) ChooseRange(double min, double max, SaturationBounds? bounds, bool nonNegative)
    {
        if (bounds is { } b) return (b.RangeLow, b.RangeHigh);
        if (!double.IsFinite(min) || !double.IsFinite(max)) return (-1.0, 1.0);
        double span = max - min;
        if (span <= 0) span = Math.Max(Math.Abs(max), 1.0);
        double low = nonNegative && min >= 0 ? 0.0 : min - span / 2;
        return (low, max + span / 2);
    }
}
