using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
            _positions32 = Narrow(Positions);
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
        _positions32 = Narrow(Positions);
    }

    /// <summary>The positions as 32-bit indices for the hardware gather (tensors of at most int.MaxValue elements), else null.</summary>
    private readonly int[]? _positions32;

    private static int[]? Narrow(long[] positions) =>
        Avx2.IsSupported && positions.Length > 0 && positions[^1] <= int.MaxValue ? [.. positions.Select(p => (int)p)] : null;

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

    /// <summary>Copies the finite values at the sample positions into <paramref name="destination"/> (at least as long as
    /// the positions); returns how many.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip tier-0 JIT (recorded steps can be rare)
    public unsafe int Gather(ReadOnlySpan<float> data, float[] destination)
    {
        if (Length != data.Length) throw new ArgumentException($"Sample positions are for {Length} elements, the data has {data.Length}.");
        if (destination.Length < Positions.Length) throw new ArgumentException($"Room for {destination.Length} values, {Positions.Length} positions.");
        ref float first = ref MemoryMarshal.GetReference(data);
        int n = 0;
        if (_positions32 is { } indices)
        {
            // Eight values per hardware gather; a vector with a non-finite value is written lane by lane (NaN and
            // ±Inf are the floats whose exponent bits are all set).
            int i = 0;
            var exponent = Vector256.Create(0x7F80_0000);
            fixed (float* basePtr = data)
            fixed (int* index = indices)
            {
                for (; i + 8 <= indices.Length; i += 8)
                {
                    var v = Avx2.GatherVector256(basePtr, Avx.LoadVector256(index + i), 4);
                    if (Vector256.EqualsAny(v.AsInt32() & exponent, exponent))
                    {
                        for (int j = 0; j < 8; j++)
                        {
                            float x = v.GetElement(j);
                            destination[n] = x;
                            n += float.IsFinite(x) ? 1 : 0;
                        }
                        continue;
                    }
                    v.StoreUnsafe(ref destination[n]);   // n + 8 <= i + 8 <= destination.Length
                    n += 8;
                }
            }
            for (; i < indices.Length; i++)
            {
                var x = Unsafe.Add(ref first, indices[i]);
                destination[n] = x;
                n += float.IsFinite(x) ? 1 : 0;
            }
            return n;
        }
        foreach (var p in Positions)
        {
            var v = Unsafe.Add(ref first, (nint)p);     // positions are < Length (checked above)
            destination[n] = v;
            n += float.IsFinite(v) ? 1 : 0;
        }
        return n;
    }
}
