using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace CovariateShift.Statistics;

/// <summary>
/// One layer's memory of where its sample's order statistics were, so that the next recorded step can select them from
/// a band of values around them instead of the whole sample. The answer is exact either way: a bracket is only used
/// when a count proves that it holds the wanted ranks.
/// <para>
/// For each cluster of wanted ranks (the two order statistics around one percentile) the bracket is a pair of values
/// that ranked about <c>margin</c> below its first and above its last rank in the previous sample, with margin =
/// <see cref="MarginDeviations"/> standard deviations of a rank's sampling noise (sqrt(n p (1 - p)): consecutive batches
/// are different data) plus 8. One vectorized pass over the sample counts, per bracket, the values below and above it
/// and packs those inside it together (a run of values equal to its low end, e.g. ReLU's zeros, is only counted); when
/// each cluster's ranks lie inside its bracket, a radix select over the packed values ranks them and moves the brackets
/// (never outside the old ones: the pass sees nothing beyond them). Otherwise the full radix select
/// (<see cref="SampleStatistics.SelectRanks"/>) runs, with the bracket ranks added, and renews the brackets. Not
/// thread-safe: one per layer, owned by the record builder's history of that layer.
/// </para>
/// </summary>
internal sealed class PercentileBrackets
{
    /// <summary>Samples smaller than this always take the full select (a bracket would hold most of the sample).</summary>
    public const int MinSample = 256;

    /// <summary>At most this many clusters take the bracketed path (four vector lanes of brackets).</summary>
    private const int MaxClusters = 4;

    /// <summary>
    /// A bracket's margin in standard deviations of a rank's sampling noise. Wider brackets gather more values; narrower
    /// ones fall back more often (a bracket only narrows between full selects). Measured on the bench's MLP, µs of
    /// percentiles per recorded step (17 layers, median): 3.5 -> ~100 (2 fallbacks per step), 6 -> 72, 7.5 -> 68, 9 -> 66
    /// (0.3 fallbacks per step), 12 -> 102 (scripts/BENCHMARKS.md).
    /// </summary>
    private const double MarginDeviations = 9;

    /// <summary>Spare cells after each gathered band: a vector store at its last value spills up to 7 past it.</summary>
    private const int Pad = 8;

    private int _n = -1;
    private int[] _ranks = [];
    private int[] _sortedRanks = [];
    private int[] _slot = [];          // _sortedRanks[i] answers _ranks[_slot[i]]
    private int[] _clusterFirst = [];  // index into _sortedRanks
    private int[] _clusterLast = [];
    private int[] _margin = [];
    private readonly int[] _low = new int[MaxClusters];   // signed order keys (see SignedKey)
    private readonly int[] _high = new int[MaxClusters];
    private bool _valid;

    /// <summary>Selections answered from the brackets (tests).</summary>
    public long Hits { get; private set; }

    /// <summary>Selections that took the full radix select (tests).</summary>
    public long Misses { get; private set; }

    /// <summary>
    /// Writes to <paramref name="selected"/>[i] the value of rank <paramref name="ranks"/>[i] of <paramref name="values"/>
    /// (finite; -0 before +0), as <see cref="SampleStatistics.SelectRanks"/> does.
    /// </summary>
    public void Select(ReadOnlySpan<float> values, ReadOnlySpan<int> ranks, Span<float> selected)
    {
        int n = values.Length;
        SampleStatistics.CheckRanks(n, ranks, selected.Length);
        if (ranks.IsEmpty) return;
        if (!Avx2.IsSupported)
        {
            // The bracketed pass is written for AVX2; elsewhere the plain select (no bracket ranks to add).
            SampleStatistics.SelectRanks(values, ranks, selected);
            return;
        }
        if (n != _n || !ranks.SequenceEqual(_ranks)) Plan(n, ranks);
        if (_valid && TryBracketed(values, selected))
        {
            Hits++;
            return;
        }
        Misses++;
        SelectAndRenew(values, selected);
    }

    /// <summary>New ranks or sample size: the clusters and margins for them; no brackets until the next full select.</summary>
    private void Plan(int n, ReadOnlySpan<int> ranks)
    {
        _n = n;
        _ranks = ranks.ToArray();
        _slot = [.. Enumerable.Range(0, ranks.Length).OrderBy(i => _ranks[i])];
        _sortedRanks = [.. _slot.Select(i => _ranks[i])];
        var first = new List<int>();
        var last = new List<int>();
        for (int i = 0; i < _sortedRanks.Length; i++)
        {
            if (i > 0 && _sortedRanks[i] - _sortedRanks[i - 1] <= 1)
            {
                last[^1] = i;
            }
            else
            {
                first.Add(i);
                last.Add(i);
            }
        }
        _clusterFirst = [.. first];
        _clusterLast = [.. last];
        _margin = new int[first.Count];
        for (int c = 0; c < first.Count; c++)
        {
            double p = (_sortedRanks[first[c]] + 0.5) / n;
            _margin[c] = (int)Math.Ceiling(MarginDeviations * Math.Sqrt(n * p * (1 - p))) + 8;
        }
        _valid = false;
    }

    /// <summary>The full radix select of the wanted ranks and of each cluster's bracket ranks, which become the brackets.</summary>
    private void SelectAndRenew(ReadOnlySpan<float> values, Span<float> selected)
    {
        int t = _sortedRanks.Length, clusters = _clusterFirst.Length;
        bool bracket = values.Length >= MinSample && clusters <= MaxClusters && t + 2 * clusters <= SampleStatistics.MaxRanks;
        int total = t + (bracket ? 2 * clusters : 0);
        Span<int> all = stackalloc int[total];
        Span<float> found = stackalloc float[total];
        _ranks.CopyTo(all);
        if (bracket)
        {
            for (int c = 0; c < clusters; c++)
            {
                all[t + 2 * c] = Math.Max(0, _sortedRanks[_clusterFirst[c]] - _margin[c]);
                all[t + 2 * c + 1] = Math.Min(values.Length - 1, _sortedRanks[_clusterLast[c]] + _margin[c]);
            }
        }
        SampleStatistics.SelectRanks(values, all, found);
        found[..t].CopyTo(selected);
        _valid = bracket;
        for (int c = 0; c < clusters && bracket; c++)
        {
            _low[c] = SignedKey(found[t + 2 * c]);
            _high[c] = SignedKey(found[t + 2 * c + 1]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    [SkipLocalsInit]
    private bool TryBracketed(ReadOnlySpan<float> values, Span<float> selected)
    {
        int n = values.Length, clusters = _clusterFirst.Length;
        // Four bracket lanes; an unused one brackets nothing and is never read.
        Span<int> low = stackalloc int[MaxClusters];
        Span<int> high = stackalloc int[MaxClusters];
        low.Fill(int.MaxValue);
        high.Fill(int.MaxValue);
        _low.AsSpan(0, clusters).CopyTo(low);
        _high.AsSpan(0, clusters).CopyTo(high);

        // One pass: per bracket, the values below its low end and above its high end are counted, and those in between
        // but above the low end (a run of values equal to it, e.g. ReLU's zeros, is only counted) are packed into the
        // bracket's region (room for the whole sample each: no count is needed first). Then the scratch of the radix select.
        int region = n + Pad;
        var rented = System.Buffers.ArrayPool<uint>.Shared.Rent(MaxClusters * region + 4 * (n + 1));
        try
        {
            Span<int> below = stackalloc int[MaxClusters];
            Span<int> above = stackalloc int[MaxClusters];
            Span<int> gatheredCount = stackalloc int[MaxClusters];
            // The bench's and the records' three percentiles make three clusters: the fourth lane's work is left out then.
            if (clusters <= 3) Partition<ThreeLanes>(values, low, high, region, rented, below, above, gatheredCount);
            else Partition<FourLanes>(values, low, high, region, rented, below, above, gatheredCount);
            // Each cluster's ranks must lie inside its bracket.
            for (int c = 0; c < clusters; c++)
                if (below[c] > _sortedRanks[_clusterFirst[c]] || n - above[c] <= _sortedRanks[_clusterLast[c]]) return false;
            var scratch = rented.AsSpan(MaxClusters * region);

            // Per cluster: the new low bracket rank, the wanted ranks and the new high bracket rank, ascending. A rank at or
            // below the run of the low end's value is that value; the others are ranked among the gathered values. A new
            // low rank below the bracket keeps the old low end (the band then narrows on that side until a full select).
            Span<int> want = stackalloc int[_sortedRanks.Length + 2];
            Span<uint> keys = stackalloc uint[_sortedRanks.Length + 2];
            for (int c = 0; c < clusters; c++)
            {
                int first = _clusterFirst[c], m = _clusterLast[c] - first + 1;
                int gathered = gatheredCount[c], atOrBelow = n - above[c] - gathered;
                var w = want[..(m + 2)];
                w[0] = Math.Max(_sortedRanks[first] - _margin[c], below[c]);
                for (int r = 0; r < m; r++) w[1 + r] = _sortedRanks[first + r];
                w[m + 1] = Math.Min(_sortedRanks[first + m - 1] + _margin[c], n - above[c] - 1);
                int lowest = 0;   // the first of w ranked among the gathered values
                while (lowest < w.Length && w[lowest] < atOrBelow) lowest++;
                var k = keys[..(m + 2)];
                k[..lowest].Clear();   // the low end itself: relative key 0
                if (lowest < w.Length)
                {
                    for (int r = lowest; r < w.Length; r++) w[r] -= atOrBelow;
                    // Only the bracket ranks are approximate (a bucket edge); when the low one is the low end itself, the
                    // first rank passed is a wanted one and exact.
                    SelectRelative(rented.AsSpan(c * region, gathered), (uint)(high[c] - low[c]), w[lowest..], k[lowest..],
                        scratch, firstApproximate: lowest == 0, lastApproximate: true);
                }
                for (int r = 0; r < m; r++) selected[_slot[first + r]] = FromSignedKey(low[c] + (int)k[1 + r]);
                _low[c] = low[c] + (int)k[0];
                _high[c] = low[c] + (int)k[m + 1];
            }
        }
        finally
        {
            System.Buffers.ArrayPool<uint>.Shared.Return(rented);
        }
        return true;
    }

    /// <summary>
    /// The pass of <see cref="TryBracketed"/>: per lane c, the values below low[c] and above high[c] are counted, and every
    /// value with low[c] &lt; key &lt;= high[c] goes, as key - low[c], to <paramref name="into"/> from c * region on. With
    /// three lanes (<typeparamref name="TLanes"/>) lane 3 is left out of the vector loop, and its results are not to be read.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Partition<TLanes>(ReadOnlySpan<float> values, ReadOnlySpan<int> low, ReadOnlySpan<int> high, int region, uint[] into,
        Span<int> below, Span<int> above, Span<int> gathered) where TLanes : struct, ILanes
    {
        int n = values.Length;
        ref int bits = ref Unsafe.As<float, int>(ref MemoryMarshal.GetReference(values));
        ref uint to = ref MemoryMarshal.GetArrayDataReference(into);
        ref ulong packs = ref MemoryMarshal.GetArrayDataReference(SampleStatistics.LeftPacks);
        Vector256<int> l0 = Vector256.Create(low[0]), l1 = Vector256.Create(low[1]), l2 = Vector256.Create(low[2]), l3 = Vector256.Create(low[3]);
        Vector256<int> h0 = Vector256.Create(high[0]), h1 = Vector256.Create(high[1]), h2 = Vector256.Create(high[2]), h3 = Vector256.Create(high[3]);
        Vector256<int> b0 = default, b1 = default, b2 = default, b3 = default;
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
        int c0 = 0, c1 = region, c2 = 2 * region, c3 = 3 * region;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var k = SignedKeys(Vector256.LoadUnsafe(ref bits, (nuint)i));
            var g0 = Vector256.GreaterThan(k, h0);
            var g1 = Vector256.GreaterThan(k, h1);
            var g2 = Vector256.GreaterThan(k, h2);
            a0 += g0;
            a1 += g1;
            a2 += g2;
            b0 += Vector256.LessThan(k, l0);
            b1 += Vector256.LessThan(k, l1);
            b2 += Vector256.LessThan(k, l2);
            uint m0 = Vector256.AndNot(Vector256.GreaterThan(k, l0), g0).ExtractMostSignificantBits();
            uint m1 = Vector256.AndNot(Vector256.GreaterThan(k, l1), g1).ExtractMostSignificantBits();
            uint m2 = Vector256.AndNot(Vector256.GreaterThan(k, l2), g2).ExtractMostSignificantBits();
            Avx2.PermuteVar8x32((k - l0).AsUInt32(), SampleStatistics.LeftPack(ref packs, m0)).StoreUnsafe(ref to, (nuint)c0);
            Avx2.PermuteVar8x32((k - l1).AsUInt32(), SampleStatistics.LeftPack(ref packs, m1)).StoreUnsafe(ref to, (nuint)c1);
            Avx2.PermuteVar8x32((k - l2).AsUInt32(), SampleStatistics.LeftPack(ref packs, m2)).StoreUnsafe(ref to, (nuint)c2);
            c0 += BitOperations.PopCount(m0);
            c1 += BitOperations.PopCount(m1);
            c2 += BitOperations.PopCount(m2);
            if (TLanes.Fourth)   // a constant per instantiation: the JIT drops the block for three lanes
            {
                var g3 = Vector256.GreaterThan(k, h3);
                a3 += g3;
                b3 += Vector256.LessThan(k, l3);
                uint m3 = Vector256.AndNot(Vector256.GreaterThan(k, l3), g3).ExtractMostSignificantBits();
                Avx2.PermuteVar8x32((k - l3).AsUInt32(), SampleStatistics.LeftPack(ref packs, m3)).StoreUnsafe(ref to, (nuint)c3);
                c3 += BitOperations.PopCount(m3);
            }
        }
        // The compares give -1 per lane that holds.
        below[0] = -Vector256.Sum(b0); below[1] = -Vector256.Sum(b1); below[2] = -Vector256.Sum(b2); below[3] = -Vector256.Sum(b3);
        above[0] = -Vector256.Sum(a0); above[1] = -Vector256.Sum(a1); above[2] = -Vector256.Sum(a2); above[3] = -Vector256.Sum(a3);
        Span<int> cursor = [c0, c1, c2, c3];
        for (; i < n; i++)
        {
            int k = SignedKey(Unsafe.Add(ref bits, i));
            for (int c = 0; c < MaxClusters; c++)
            {
                below[c] += k < low[c] ? 1 : 0;
                above[c] += k > high[c] ? 1 : 0;
                if (k > low[c] && k <= high[c]) Unsafe.Add(ref to, cursor[c]++) = (uint)(k - low[c]);
            }
        }
        for (int c = 0; c < MaxClusters; c++) gathered[c] = cursor[c] - c * region;
    }

    /// <summary>
    /// Writes to <paramref name="found"/>[i] the key of rank <paramref name="ranks"/>[i] (ascending) among
    /// <paramref name="keys"/>, all in 0..<paramref name="range"/>: a radix select by the top 8 bits of the range, then the
    /// next 8 within the wanted buckets, and so on; small sets are sorted (<see cref="SampleStatistics.TrySortSmall"/>). <paramref name="keys"/> may be reordered. With
    /// <paramref name="firstApproximate"/> (<paramref name="lastApproximate"/>) the first (last) rank is only bounded, by the
    /// lower (upper) edge of its bucket: a key at or below (at or above) the one of that rank, which is all a bracket needs.
    /// </summary>
    [SkipLocalsInit]
    private static void SelectRelative(Span<uint> keys, uint range, ReadOnlySpan<int> ranks, Span<uint> found, Span<uint> scratch,
        bool firstApproximate = false, bool lastApproximate = false)
    {
        if (range == 0 || keys.Length == 1)
        {
            found.Fill(keys[0]);
            return;
        }
        if (SampleStatistics.TrySortSmall(keys, ranks, found)) return;
        int shift = Math.Max(0, 32 - BitOperations.LeadingZeroCount(range) - 8);
        int buckets = (int)(range >> shift) + 1;
        const int Block = 8;
        Span<int> counts = stackalloc int[(buckets + Block - 1) / Block * Block];
        counts.Clear();
        ref int count = ref MemoryMarshal.GetReference(counts);
        foreach (var k in keys) Unsafe.Add(ref count, (int)(k >> shift))++;
        Span<int> relative = stackalloc int[ranks.Length];
        int i = 0, seen = 0, last = ranks.Length - 1;
        for (int b = 0; b < buckets && i < ranks.Length; b++)
        {
            if ((b & (Block - 1)) == 0 && b + Block <= counts.Length)
            {
                // Whole blocks of buckets below the next wanted rank are skipped with one sum.
                int sum = Vector256.Sum(Vector256.LoadUnsafe(ref count, (nuint)b));
                if (ranks[i] >= seen + sum)
                {
                    seen += sum;
                    b += Block - 1;
                    continue;
                }
            }
            int c = counts[b];
            if (c == 0 || ranks[i] >= seen + c)
            {
                seen += c;
                continue;
            }
            uint start = (uint)b << shift, end = shift == 0 ? start : Math.Min(range, start + ((1u << shift) - 1));
            int j = i, exact = 0;
            while (j < ranks.Length && ranks[j] < seen + c)
            {
                if (firstApproximate && j == 0) found[0] = start;
                else if (lastApproximate && j == last) found[last] = end;
                else relative[exact++] = ranks[j] - seen;
                j++;
            }
            if (exact > 0)
            {
                // The bucket's keys, relative to its own start, gathered without a branch on the data.
                int m = 0;
                ref uint to = ref MemoryMarshal.GetReference(scratch);
                foreach (var k in keys)
                {
                    Unsafe.Add(ref to, m) = k - start;
                    m += (int)(k >> shift) == b ? 1 : 0;
                }
                int from = firstApproximate && i == 0 ? 1 : i;
                var sub = found.Slice(from, exact);
                SelectRelative(scratch[..c], end - start, relative[..exact], sub, scratch[(c + 1)..]);
                for (int r = 0; r < sub.Length; r++) sub[r] += start;
            }
            seen += c;
            i = j;
        }
    }

    /// <summary>How many bracket lanes <see cref="Partition{TLanes}"/> works (a type argument, so that each count is a
    /// loop of its own with no test per vector).</summary>
    private interface ILanes
    {
        static abstract bool Fourth { get; }
    }

    private struct ThreeLanes : ILanes
    {
        public static bool Fourth => false;
    }

    private struct FourLanes : ILanes
    {
        public static bool Fourth => true;
    }

    /// <summary>The order key of <see cref="SampleStatistics.Key"/> as a signed integer (its sign bit flipped), so that
    /// AVX2's signed compares order it: the bits of a positive value, the low 31 bits flipped for a negative one; -0
    /// (key -1) sorts just before +0 (key 0). It is its own inverse.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SignedKey(int bits) => (int)(SampleStatistics.Key((uint)bits) ^ 0x8000_0000u);

    private static int SignedKey(float value) => SignedKey(BitConverter.SingleToInt32Bits(value));

    /// <summary>The float whose signed order key is <paramref name="key"/>.</summary>
    private static float FromSignedKey(int key) => BitConverter.Int32BitsToSingle(SignedKey(key));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedKeys(Vector256<int> bits) =>
        bits ^ (Vector256.ShiftRightArithmetic(bits, 31) & Vector256.Create(0x7FFF_FFFF));
}
