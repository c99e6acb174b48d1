using CovariateShift.Statistics;

namespace CovariateShift.Tests;

public sealed class StratifiedSampleTests
{
    [Fact]
    public void Seeds_are_the_same_in_every_process()
    {
        // Pinned values: a per-process randomized hash (HashCode) would give different numbers on every test run.
        Assert.Equal(1083365735, StratifiedSample.SeedFor(0, 0, 100));
        Assert.Equal(-1484674813, StratifiedSample.SeedFor(7, 3, 32768));
        Assert.Equal([1L, 4, 5, 8], new StratifiedSample(10, 4, StratifiedSample.SeedFor(0, 0, 10)).Positions);
    }

    [Theory]
    [InlineData(13, 2048, 0)]        // every element
    [InlineData(32768, 2048, 0)]
    [InlineData(32768, 2048, 40)]    // non-finite values at some sampled positions
    [InlineData(100_003, 2045, 7)]
    public void The_copy_keeps_the_finite_values_at_the_positions_in_order(int length, int size, int nonFinite)
    {
        var rng = new Random(length + nonFinite);
        var data = Enumerable.Range(0, length).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var sample = new StratifiedSample(length, size, 3);
        var positions = sample.Positions;
        for (int k = 0; k < nonFinite; k++)
            data[positions[rng.Next(positions.Length)]] = (k % 3) switch { 0 => float.NaN, 1 => float.PositiveInfinity, _ => float.NegativeInfinity };
        var expected = positions.Select(p => data[p]).Where(float.IsFinite).ToArray();

        // As the kernel's pass takes it: in pieces, each up to the end of what has been read so far.
        var destination = new float[positions.Length];
        var copy = new SampleCopy(sample, destination);
        copy.Until(data, length / 3);
        copy.Until(data, length / 3);   // nothing new
        copy.Until(data, length);
        int count = copy.Count;

        Assert.Equal(expected.Length, count);
        Assert.Equal(expected, destination[..count]);
        if (nonFinite > 0) Assert.True(count < positions.Length);
    }

    [Theory]
    [InlineData(10, 4)]
    [InlineData(32768, 2048)]
    [InlineData(100_003, 2048)]
    public void Positions_are_sorted_distinct_in_range_and_one_per_stratum(long length, int size)
    {
        var p = new StratifiedSample(length, size, 5).Positions;
        Assert.Equal(size, p.Length);
        for (int k = 0; k < size; k++)
        {
            Assert.InRange(p[k], k * length / size, (k + 1) * length / size - 1);   // stratum k
            if (k > 0) Assert.True(p[k] > p[k - 1]);
        }
    }

    [Fact]
    public void A_tensor_no_larger_than_the_sample_is_taken_whole()
    {
        Assert.Equal([0L, 1, 2, 3, 4], new StratifiedSample(5, 16, 1).Positions);
    }
}
