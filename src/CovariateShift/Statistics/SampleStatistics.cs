using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace CovariateShift.Statistics;

/// <summary>Percentiles and histograms of a sample of finite values (host side, shared by both engine paths).</summary>
internal static class SampleStatistics
{
    /// <summary>
    /// Percentiles q (in [0, 1]) of <paramref name="values"/> (all finite), with numpy's default linear interpolation:
    /// h = (n - 1) q, result = a[floor h] + (h - floor h) (a[floor h + 1] - a[floor h]) over the sorted values a.
    /// Only the order statistics a[floor h] and a[floor h + 1] are computed, exactly, by a radix select (see
    /// <see cref="SelectRanks"/>, or from the narrow bands of <paramref name="brackets"/> when they hold them: the same
    /// values); <paramref name="values"/> is left unchanged. Returns NaN for every q when the sample is empty.
    /// </summary>
    public static double[] Percentiles(ReadOnlySpan<float> values, ReadOnlySpan<double> q, PercentileBrackets? brackets = null)
    {
        var result = new double[q.Length];
        int n = values.Length;
        if (n == 0)
        {
            Array.Fill(result, double.NaN);
            return result;
        }
        Span<int> ranks = q.Length <= 16 ? stackalloc int[2 * q.Length] : new int[2 * q.Length];
        for (int j = 0; j < q.Length; j++)
        {
            int lo = (int)Math.Floor((n - 1) * q[j]);
            ranks[2 * j] = lo;
            ranks[2 * j + 1] = Math.Min(lo + 1, n - 1);
        }
        Span<float> order = q.Length <= 16 ? stackalloc float[2 * q.Length] : new float[2 * q.Length];
        if (brackets is null) SelectRanks(values, ranks, order);
        else brackets.Select(values, ranks, order);
        for (int j = 0; j < q.Length; j++)
        {
            double h = (n - 1) * q[j];
            int lo = (int)Math.Floor(h);
            float a = order[2 * j], b = order[2 * j + 1];
            result[j] = a + (h - lo) * ((double)b - a);
        }
        return result;
    }

    /// <summary>The most ranks one <see cref="SelectRanks"/> call takes.</summary>
    internal const int MaxRanks = 64;

    /// <summary>Throws unless every rank is in 0..n-1 and there is room for one value per rank.</summary>
    internal static void CheckRanks(int n, ReadOnlySpan<int> ranks, int room)
    {
        if (room != ranks.Length) throw new ArgumentException($"{ranks.Length} ranks but room for {room} values.");
        foreach (var r in ranks)
            if ((uint)r >= (uint)n) throw new ArgumentOutOfRangeException(nameof(ranks), r, $"Ranks must be in 0..{n - 1}.");
    }

    /// <summary>
    /// Writes to <paramref name="selected"/>[i] the value of rank <paramref name="ranks"/>[i] (0-based) in ascending order
    /// of <paramref name="values"/> (finite floats; -0 sorts just before +0). A most-significant-digit radix select on
    /// order-preserving 32-bit keys, all ranks in one descent: the keys are made once (vectorized), counted by their top
    /// 11 bits (sign, exponent, 2 mantissa bits), and only the buckets that hold a wanted rank are gathered; a gathered
    /// bucket is then either sorted, when it is small (<see cref="SortBelow"/> keys), or split again by the next 8 bits,
    /// and so on. Its cost is a few passes over the values whatever their distribution, far less than sorting them; a
    /// sample of at most <see cref="SortWhole"/> values is simply sorted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    [SkipLocalsInit]
    internal static void SelectRanks(ReadOnlySpan<float> values, ReadOnlySpan<int> ranks, Span<float> selected)
    {
        int n = values.Length;
        CheckRanks(n, ranks, selected.Length);
        if (ranks.IsEmpty) return;
        if (ranks.Length > MaxRanks) throw new ArgumentException($"At most {MaxRanks} ranks per call, got {ranks.Length}.");
        if (n <= SortWhole)
        {
            // A small sample is sorted whole: the descent's fixed cost (its 2 x 2,048 top counters cleared and scanned)
            // is several times a sort of a few hundred keys.
            Span<uint> all = stackalloc uint[n];
            MakeKeys(MemoryMarshal.Cast<float, uint>(values), all);
            all.Sort();
            for (int i = 0; i < ranks.Length; i++) selected[i] = FromKey(all[ranks[i]]);
            return;
        }

        // Ranks in ascending order, remembering where each answer goes.
        int t = ranks.Length;
        Span<int> sorted = stackalloc int[t];
        Span<int> slot = stackalloc int[t];
        for (int i = 0; i < t; i++)
        {
            int j = i;
            while (j > 0 && sorted[j - 1] > ranks[i])
            {
                sorted[j] = sorted[j - 1];
                slot[j] = slot[j - 1];
                j--;
            }
            sorted[j] = ranks[i];
            slot[j] = i;
        }

        // The keys, then the gathered regions (each followed by RegionPad spare cells), a scratch block and a discard cell,
        // then the deeper levels' room: a level gathers one bucket (c keys, c + 1 cells written) and hands the rest on, so
        // the three levels below the top take at most 3 (n + 1) cells together.
        int deeperAt = 2 * n + RegionPad * (t + 2) + 1;
        var rented = System.Buffers.ArrayPool<uint>.Shared.Rent(deeperAt + 3 * (n + 1));
        try
        {
            var keys = rented.AsSpan(0, n);
            int plusZeros = MakeKeys(MemoryMarshal.Cast<float, uint>(values), keys);

            // Top digit: two interleaved count arrays (a run of equal keys, e.g. ReLU's zeros, would otherwise wait on
            // one counter), added up while the buckets that hold the ranks are found.
            const int TopBuckets = 1 << 11;
            Span<int> counts = stackalloc int[2 * TopBuckets];
            counts.Clear();
            ref int even = ref MemoryMarshal.GetReference(counts);
            ref int odd = ref Unsafe.Add(ref even, TopBuckets);
            ref uint key = ref MemoryMarshal.GetReference(keys);
            int k2 = 0;
            for (; k2 + 2 <= n; k2 += 2)
            {
                Unsafe.Add(ref even, (int)(Unsafe.Add(ref key, k2) >> 21))++;
                Unsafe.Add(ref odd, (int)(Unsafe.Add(ref key, k2 + 1) >> 21))++;
            }
            if (k2 < n) Unsafe.Add(ref even, (int)(Unsafe.Add(ref key, k2) >> 21))++;

            Span<byte> region = stackalloc byte[TopBuckets];   // 0: not wanted, r: region r (1-based)
            region.Clear();
            Span<int> regionStart = stackalloc int[t + 2];
            Span<int> regionBelow = stackalloc int[t + 1];
            Span<int> rankRegion = stackalloc int[t];
            int regions = 0, below = 0, next = 0, offset = 0;
            const int Block = 8;
            for (int b = 0; b < TopBuckets && next < t; b += Block)
            {
                // Whole blocks of buckets below the next wanted rank are skipped with one sum.
                var block = Vector256.LoadUnsafe(ref even, (nuint)b) + Vector256.LoadUnsafe(ref odd, (nuint)b);
                int sum = Vector256.Sum(block);
                if (sorted[next] >= below + sum)
                {
                    below += sum;
                    continue;
                }
                for (int e = 0; e < Block && next < t; e++)
                {
                    int c = block.GetElement(e);
                    if (c == 0 || sorted[next] >= below + c)
                    {
                        below += c;
                        continue;
                    }
                    if (b + e == PlusZeroBucket && c == plusZeros)
                    {
                        // The bucket holds +0 only (ReLU's zeros): its ranks are +0, nothing to gather.
                        while (next < t && sorted[next] < below + c) rankRegion[next++] = 0;
                        below += c;
                        continue;
                    }
                    regions++;
                    region[b + e] = (byte)regions;
                    regionStart[regions] = offset;
                    regionBelow[regions] = below;
                    offset += c + RegionPad;
                    while (next < t && sorted[next] < below + c) rankRegion[next++] = regions;
                    below += c;
                }
            }
            regionStart[regions + 1] = offset;

            // Gather each wanted bucket's keys into its region of byRegion, in one pass over the keys. A region's keys are
            // regionStart[r] .. regionStart[r + 1] - RegionPad; the pad takes the spill of a whole-vector store at its end.
            int scratch = offset, discard = offset + RegionPad;
            var byRegion = rented.AsSpan(n, discard + 1);
            int i0 = 0;
            Span<int> at = stackalloc int[regions + 1];
            at[0] = discard;
            for (int r = 1; r <= regions; r++) at[r] = regionStart[r];
            if (regions == 0)
            {
                i0 = n;   // every rank is +0: nothing to gather
            }
            else if (Avx2.IsSupported && regions <= 4)
            {
                // Eight keys at a time, without a branch on the data: for each of (at most) four wanted buckets, the keys in
                // it are packed to the front of the vector (a permutation looked up by their mask) and the whole vector is
                // stored at the region's cursor, which then advances by their number. A region that does not exist stores
                // into the scratch block and never advances.
                Span<uint> ids = stackalloc uint[4];
                ids.Fill(uint.MaxValue);   // no bucket: keys >> 21 are below 2048
                for (int b = 0, r = 0; b < TopBuckets && r < regions; b++)
                    if (region[b] != 0) ids[r++] = (uint)b;
                var id0 = Vector256.Create(ids[0]);
                var id1 = Vector256.Create(ids[1]);
                var id2 = Vector256.Create(ids[2]);
                var id3 = Vector256.Create(ids[3]);
                int c0 = at[1], c1 = regions >= 2 ? at[2] : scratch, c2 = regions >= 3 ? at[3] : scratch, c3 = regions >= 4 ? at[4] : scratch;
                ref uint to = ref MemoryMarshal.GetReference(byRegion);
                ref ulong packs = ref MemoryMarshal.GetArrayDataReference(LeftPacks);
                for (; i0 + 8 <= n; i0 += 8)
                {
                    var k = Vector256.LoadUnsafe(ref key, (nuint)i0);
                    var bucket = Vector256.ShiftRightLogical(k, 21);
                    uint m0 = Vector256.Equals(bucket, id0).ExtractMostSignificantBits();
                    uint m1 = Vector256.Equals(bucket, id1).ExtractMostSignificantBits();
                    uint m2 = Vector256.Equals(bucket, id2).ExtractMostSignificantBits();
                    uint m3 = Vector256.Equals(bucket, id3).ExtractMostSignificantBits();
                    Avx2.PermuteVar8x32(k, LeftPack(ref packs, m0)).StoreUnsafe(ref to, (nuint)c0);
                    Avx2.PermuteVar8x32(k, LeftPack(ref packs, m1)).StoreUnsafe(ref to, (nuint)c1);
                    Avx2.PermuteVar8x32(k, LeftPack(ref packs, m2)).StoreUnsafe(ref to, (nuint)c2);
                    Avx2.PermuteVar8x32(k, LeftPack(ref packs, m3)).StoreUnsafe(ref to, (nuint)c3);
                    c0 += BitOperations.PopCount(m0);
                    c1 += BitOperations.PopCount(m1);
                    c2 += BitOperations.PopCount(m2);
                    c3 += BitOperations.PopCount(m3);
                }
                for (int r = 1; r <= regions; r++) at[r] = r switch { 1 => c0, 2 => c1, 3 => c2, _ => c3 };
            }
            GatherScalar(keys[i0..], region, at, byRegion);

            Span<uint> found = stackalloc uint[t];
            Span<int> relative = stackalloc int[t];
            var deeper = rented.AsSpan(deeperAt, 3 * (n + 1));
            for (int i = 0; i < t;)
            {
                int r = rankRegion[i], j = i;
                if (r == 0)
                {
                    found[i++] = PlusZeroKey;
                    continue;
                }
                while (j < t && rankRegion[j] == r)
                {
                    relative[j - i] = sorted[j] - regionBelow[r];
                    j++;
                }
                Select(byRegion[regionStart[r]..(regionStart[r + 1] - RegionPad)], 1, relative[..(j - i)], found[i..j], deeper);
                i = j;
            }
            for (int i = 0; i < t; i++) selected[slot[i]] = FromKey(found[i]);
        }
        finally
        {
            System.Buffers.ArrayPool<uint>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Writes each key of <paramref name="keys"/> at the cursor of its bucket's region (<paramref name="at"/>[region],
    /// advanced) in <paramref name="byRegion"/>; keys of other buckets (region 0) go to the discarded cell at[0].
    /// </summary>
    private static void GatherScalar(ReadOnlySpan<uint> keys, ReadOnlySpan<byte> region, Span<int> at, Span<uint> byRegion)
    {
        foreach (var k in keys)
        {
            int r = region[(int)(k >> 21)];
            byRegion[at[r]] = k;
            at[r] += r == 0 ? 0 : 1;
        }
    }

    /// <summary>Spare cells after each gathered region: a vector store at the region's last key spills up to 7 past it.</summary>
    private const int RegionPad = 8;

    /// <summary>
    /// For each 8-bit mask, the indices of its set bits in ascending order, one per byte from the lowest (unused bytes 0):
    /// the permutation that packs the selected lanes of a vector to its front.
    /// </summary>
    internal static readonly ulong[] LeftPacks = MakeLeftPacks();

    private static ulong[] MakeLeftPacks()
    {
        var packs = new ulong[256];
        for (int mask = 0; mask < 256; mask++)
        {
            ulong p = 0;
            for (int lane = 0, slot = 0; lane < 8; lane++)
                if ((mask & (1 << lane)) != 0) p |= (ulong)lane << (8 * slot++);
            packs[mask] = p;
        }
        return packs;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<uint> LeftPack(ref ulong packs, uint mask) =>
        Avx2.ConvertToVector256Int32(Vector128.CreateScalarUnsafe(Unsafe.Add(ref packs, (int)mask)).AsByte()).AsUInt32();

    /// <summary>Buckets of at most this many keys are sorted rather than split by another digit.</summary>
    private const int SortBelow = 48;

    /// <summary>When <paramref name="keys"/> is small (<see cref="SortBelow"/>), sorts it in place and reads the keys of
    /// <paramref name="ranks"/> into <paramref name="found"/>; otherwise does nothing and returns false.</summary>
    internal static bool TrySortSmall(Span<uint> keys, ReadOnlySpan<int> ranks, Span<uint> found)
    {
        if (keys.Length > SortBelow) return false;
        keys.Sort();
        for (int r = 0; r < ranks.Length; r++) found[r] = keys[ranks[r]];
        return true;
    }

    /// <summary>The key of +0 and its top bucket (+0's bucket also holds the smallest positive subnormals).</summary>
    private const uint PlusZeroKey = 0x8000_0000u;
    private const int PlusZeroBucket = (int)(PlusZeroKey >> 21);

    /// <summary>The order-preserving keys of <paramref name="bits"/> (see <see cref="Key"/>), a vector at a time; returns
    /// how many of the values are +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MakeKeys(ReadOnlySpan<uint> bits, Span<uint> keys)
    {
        int i = 0, plusZeros = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref uint from = ref MemoryMarshal.GetReference(bits);
            ref uint to = ref MemoryMarshal.GetReference(keys);
            var sign = Vector256.Create(0x8000_0000u);
            var zeros = Vector256<int>.Zero;
            for (; i + Vector256<uint>.Count <= bits.Length; i += Vector256<uint>.Count)
            {
                var u = Vector256.LoadUnsafe(ref from, (nuint)i);
                var flip = Vector256.ShiftRightArithmetic(u.AsInt32(), 31).AsUInt32() | sign;
                (u ^ flip).StoreUnsafe(ref to, (nuint)i);
                zeros -= Vector256.Equals(u, Vector256<uint>.Zero).AsInt32();
            }
            plusZeros = Vector256.Sum(zeros);
        }
        for (; i < bits.Length; i++)
        {
            keys[i] = Key(bits[i]);
            plusZeros += bits[i] == 0 ? 1 : 0;
        }
        return plusZeros;
    }

    /// <summary>
    /// Samples of at most this many values are sorted whole rather than descended by digits. Measured on the 2-core EPYC
    /// machine (2026-12-05, 6 ranks): 16 values 0.07 µs sorted vs 0.73 µs descended, 128: 0.54 vs 1.47, 256: 1.29 vs
    /// 1.45, 512: 2.72 vs 1.91.
    /// </summary>
    internal const int SortWhole = 256;

    /// <summary>The float whose order key (see <see cref="Key"/>) is <paramref name="key"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float FromKey(uint key) =>
        BitConverter.UInt32BitsToSingle(key ^ ((key & 0x8000_0000u) != 0 ? 0x8000_0000u : 0xFFFF_FFFFu));

    /// <summary>Order-preserving key of a float's bits: all bits of negative numbers flipped, only the sign bit of others.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Key(uint bits) => bits ^ ((uint)((int)bits >> 31) | 0x8000_0000u);

    /// <summary>Digits of the radix select, most significant first: 11 bits (sign, exponent, 2 mantissa bits), then 8, 8 and 5.</summary>
    private static ReadOnlySpan<byte> DigitShifts => [21, 13, 5, 0];
    private static ReadOnlySpan<byte> DigitBits => [11, 8, 8, 5];

    /// <summary>
    /// One level past the first of <see cref="SelectRanks"/>: every key of <paramref name="keys"/> shares the digits above
    /// <paramref name="level"/>; <paramref name="ranks"/> ascending, relative to <paramref name="keys"/>. A small bucket is
    /// sorted in place and the ranks read off.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    [SkipLocalsInit]
    private static void Select(Span<uint> keys, int level, ReadOnlySpan<int> ranks, Span<uint> found, Span<uint> scratch)
    {
        if (level == DigitShifts.Length || keys.Length == 1 || keys.IndexOfAnyExcept(keys[0]) < 0)
        {
            // Every key left is the same (e.g. ReLU's zeros), or all 32 bits have been used.
            found.Fill(keys[0]);
            return;
        }
        if (TrySortSmall(keys, ranks, found)) return;
        int shift = DigitShifts[level];
        int buckets = 1 << DigitBits[level];
        uint mask = (uint)buckets - 1;
        Span<int> counts = stackalloc int[buckets];
        counts.Clear();
        ref int count = ref MemoryMarshal.GetReference(counts);
        foreach (var k in keys) Unsafe.Add(ref count, (int)((k >> shift) & mask))++;
        Span<int> relative = stackalloc int[ranks.Length];
        int i = 0, below = 0;
        for (int b = 0; b < buckets && i < ranks.Length; b++)
        {
            int c = counts[b];
            if (c == 0 || ranks[i] >= below + c)
            {
                below += c;
                continue;
            }
            int j = i;
            while (j < ranks.Length && ranks[j] < below + c)
            {
                relative[j - i] = ranks[j] - below;
                j++;
            }
            if (c == keys.Length)
            {
                Select(keys, level + 1, relative[..(j - i)], found[i..j], scratch);   // one bucket holds everything
            }
            else
            {
                // Branch-free gather: every key is written, only those of bucket b advance the cursor (c < keys.Length,
                // so the write at [c] stays inside scratch).
                int m = 0;
                ref uint to = ref MemoryMarshal.GetReference(scratch);
                foreach (var k in keys)
                {
                    Unsafe.Add(ref to, m) = k;
                    m += ((k >> shift) & mask) == (uint)b ? 1 : 0;
                }
                Select(scratch[..c], level + 1, relative[..(j - i)], found[i..j], scratch[c..]);
            }
            below += c;
            i = j;
        }
    }

    /// <summary>
    /// Counts <paramref name="values"/> into <paramref name="bins"/> equal bins over [low, high) plus underflow
    /// (index 0, values &lt; low) and overflow (index bins + 1, values &gt;= high). The bin of v is
    /// floor(clamp((v - low) * bins / (high - low), -1, bins)) + 1, computed in double precision (four values at a time
    /// with AVX).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    [SkipLocalsInit]
    public static unsafe long[] Histogram(ReadOnlySpan<float> values, double low, double high, int bins)
    {
        // Four interleaved count arrays: runs of equal values (e.g. ReLU zeros) would otherwise serialize on one counter.
        int stride = bins + 2;
        Span<int> partial = stride * 4 <= 4096 ? stackalloc int[stride * 4] : new int[stride * 4];
        partial.Clear();
        double scale = bins / (high - low);
        int i = 0;
        if (Avx.IsSupported)
        {
            var vLow = Vector256.Create(low);
            var vScale = Vector256.Create(scale);
            var vBelow = Vector256.Create(-1.0);
            var vTop = Vector256.Create((double)bins);
            var vOne = Vector128.Create(1);
            Span<int> index = stackalloc int[8];
            // The bins are clamped to 0..bins + 1 (BinsOf), so every counter is inside its count array: no bounds checks.
            ref int c0 = ref MemoryMarshal.GetReference(partial);
            ref int c1 = ref Unsafe.Add(ref c0, stride);
            ref int c2 = ref Unsafe.Add(ref c0, 2 * stride);
            ref int c3 = ref Unsafe.Add(ref c0, 3 * stride);
            fixed (float* p = values)
            fixed (int* bin = index)
            {
                for (; i + 8 <= values.Length; i += 8)
                {
                    Sse2.Store(bin, Sse2.Add(BinsOf(Sse.LoadVector128(p + i), vLow, vScale, vBelow, vTop), vOne));
                    Sse2.Store(bin + 4, Sse2.Add(BinsOf(Sse.LoadVector128(p + i + 4), vLow, vScale, vBelow, vTop), vOne));
                    Unsafe.Add(ref c0, bin[0])++;
                    Unsafe.Add(ref c1, bin[1])++;
                    Unsafe.Add(ref c2, bin[2])++;
                    Unsafe.Add(ref c3, bin[3])++;
                    Unsafe.Add(ref c0, bin[4])++;
                    Unsafe.Add(ref c1, bin[5])++;
                    Unsafe.Add(ref c2, bin[6])++;
                    Unsafe.Add(ref c3, bin[7])++;
                }
            }
        }
        for (; i < values.Length; i++) partial[Bin(values[i], low, scale, bins)]++;
        var counts = new long[stride];
        for (int b = 0; b < stride; b++)
            counts[b] = (long)partial[b] + partial[stride + b] + partial[2 * stride + b] + partial[3 * stride + b];
        return counts;
    }

    /// <summary>floor(clamp((v - low) * scale, -1, top)) of four floats, in double precision (AVX).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> BinsOf(Vector128<float> v, Vector256<double> low, Vector256<double> scale, Vector256<double> below, Vector256<double> top)
    {
        var t = Avx.Multiply(Avx.Subtract(Avx.ConvertToVector256Double(v), low), scale);
        return Avx.ConvertToVector128Int32WithTruncation(Avx.RoundToNegativeInfinity(Avx.Min(Avx.Max(t, below), top)));
    }

    /// <summary>Bin index of <paramref name="v"/>: 0 below the range, bins + 1 at or above its end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
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
