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
