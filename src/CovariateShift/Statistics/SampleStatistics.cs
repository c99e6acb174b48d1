namespace CovariateShift.Statistics;

/// <summary>Percentiles and histograms of a sample of finite values (host side, shared by both engine paths).</summary>
internal static class SampleStatistics
{
    /// <summary>
    /// Percentiles q (in [0, 1], ascending) of <paramref name="values"/>, with numpy's default linear interpolation:
    /// h = (n - 1) q, result = a[floor h] + (h - floor h) (a[floor h + 1] - a[floor h]) over the sorted values.
    /// Uses selection (expected linear time) rather than a full sort; reorders <paramref name="values"/>.
    /// Returns NaN for every q when the sample is empty.
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
        int done = 0; // values[..done] are all <= values[done..] and already in final sorted position up to done-1
        for (int j = 0; j < q.Length; j++)
        {
            double h = (n - 1) * q[j];
            int lo = (int)Math.Floor(h);
            double frac = h - lo;
            double a = SelectFrom(values, done, lo);
            done = lo;
            double b = a;
            if (frac > 0 && lo + 1 < n)
                b = MinOf(values[(lo + 1)..]);
            result[j] = a + frac * (b - a);
        }
        return result;
    }

    /// <summary>Puts the k-th smallest element at index k, smaller ones before it, larger after (within [from, n)).</summary>
    private static float SelectFrom(Span<float> a, int from, int k)
    {
        int left = from, right = a.Length - 1;
        while (right > left)
        {
            int mid = left + (right - left) / 2;
            // median of three as pivot
            if (a[mid] < a[left]) Swap(a, mid, left);
            if (a[right] < a[left]) Swap(a, right, left);
            if (a[right] < a[mid]) Swap(a, right, mid);
            float pivot = a[mid];
            int i = left, j = right;
            while (i <= j)
            {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j)
                {
                    Swap(a, i, j);
                    i++;
                    j--;
                }
            }
            if (k <= j) right = j;
            else if (k >= i) left = i;
            else break;
        }
        return a[k];
    }

    private static float MinOf(ReadOnlySpan<float> a)
    {
        float m = a[0];
        foreach (var v in a) if (v < m) m = v;
        return m;
    }

    private static void Swap(Span<float> a, int i, int j) => (a[i], a[j]) = (a[j], a[i]);

    /// <summary>
    /// Counts <paramref name="values"/> into <paramref name="bins"/> equal bins over [low, high) plus underflow
    /// (index 0, values &lt; low) and overflow (index bins + 1, values &gt;= high).
    /// </summary>
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
    /// The fixed histogram range of a layer, chosen from its first recorded output: the output range for bounded
    /// activations (sigmoid [0, 1], tanh [-1, 1]); otherwise [min - s/2, max + s/2] with s = max - min (s = max(|max|, 1)
    /// when all values are equal), where the low edge is not taken below 0 when min &gt;= 0 (ReLU-like outputs stay
    /// non-negative). With no finite value at all it falls back to [-1, 1]. Values that later fall outside land in
    /// the underflow/overflow bins, which the shift metrics include.
    /// </summary>
    public static (double Low, double High) ChooseRange(double min, double max, SaturationBounds? bounds)
    {
        if (bounds is { } b) return (b.RangeLow, b.RangeHigh);
        if (!double.IsFinite(min) || !double.IsFinite(max)) return (-1.0, 1.0);
        double span = max - min;
        if (span <= 0) span = Math.Max(Math.Abs(max), 1.0);
        double low = min - span / 2;
        if (min >= 0) low = Math.Max(0.0, low);
        return (low, max + span / 2);
    }
}
