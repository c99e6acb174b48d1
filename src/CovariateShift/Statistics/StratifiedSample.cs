using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CovariateShift.Statistics;

/// <summary>
/// Fixed sample positions for a tensor of <see cref="Length"/> elements: the index range is cut into
/// <c>m = min(Length, sampleSize)</c> equal strata and one position is drawn uniformly inside each, once, with a seeded
/// generator. Every element has the same chance to be picked, the positions are sorted (cache friendly) and, unlike a
/// plain stride, they do not alias with the tensor's layout (e.g. every 8th feature). When Length &lt;= sampleSize
/// every element is taken.
/// </summary>
internal sealed class StratifiedSample
{
    public StratifiedSample(long length, int sampleSize, int seed)
    {
        Length = length;
        if (length <= sampleSize)
        {
            Positions = new long[length];
            for (long i = 0; i < length; i++) Positions[i] = i;
            return;
        }
        var rng = new Random(seed);
        Positions = new long[sampleSize];
        for (int k = 0; k < sampleSize; k++)
        {
            long from = k * length / sampleSize;
            long to = (k + 1) * length / sampleSize;
            Positions[k] = from + rng.NextInt64(to - from);
        }
    }

    /// <summary>
    /// A seed for (monitor seed, layer index, tensor length) that is the same in every process (unlike
    /// <see cref="HashCode"/>, which .NET randomizes per process): SplitMix64 finalizers over the three values.
    /// </summary>
    public static int SeedFor(int seed, int layer, long length)
    {
        ulong h = Mix((ulong)(uint)seed);
        h = Mix(h ^ (ulong)(uint)layer);
        h = Mix(h ^ (ulong)length);
        return (int)(h ^ (h >> 32));
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Number of elements of the tensor the positions are for.</summary>
    public long Length { get; }

    /// <summary>Sorted, distinct element positions.</summary>
    public long[] Positions { get; }

    /// <summary>Copies the finite values at the sample positions into <paramref name="destination"/>; returns how many.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public int Gather(ReadOnlySpan<float> data, float[] destination)
    {
        if (Length != data.Length) throw new ArgumentException($"Sample positions are for {Length} elements, the data has {data.Length}.");
        ref float first = ref MemoryMarshal.GetReference(data);
        int n = 0;
        foreach (var p in Positions)
        {
            var v = Unsafe.Add(ref first, (nint)p);     // positions are < Length (checked above)
            destination[n] = v;
            n += float.IsFinite(v) ? 1 : 0;
        }
        return n;
    }
}
