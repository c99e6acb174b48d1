using CovariateShift.Training.Benchmarks;
using TorchSharp;

namespace CovariateShift.Training.Tests;

public sealed class EngineVerificationTests
{
    [Fact]
    public void On_the_cpu_every_statistic_of_both_engines_matches_the_double_reference()
    {
        var report = EngineVerification.Run(torch.CPU);
        Assert.Equal("cpu", report.Device);
        Assert.All(report.Rows, r => Assert.True(r.Passed, $"{r.Layer} {r.Statistic}: reference {r.Reference}, cpu {r.Cpu}, device {r.Device} ({r.Tolerance})"));
        Assert.True(report.Passed);
        // Every case contributes its statistics; bounded layers their saturation, 4-D ones their channel statistics.
        Assert.Equal(7, report.Rows.Where(r => r.Statistic == "mean").Select(r => r.Layer).Distinct().Count());
        Assert.Equal(["tanh", "sigmoid"], report.Rows.Where(r => r.Statistic == "saturated fraction").Select(r => r.Layer));
        Assert.Equal(["conv", "bn"], report.Rows.Where(r => r.Statistic == "channel variance").Select(r => r.Layer));
        Assert.Contains(report.Rows, r => r.Statistic == "update norm" && r.Reference > 0);
        // The NaN / Inf case really has them.
        Assert.Equal(2, report.Rows.Single(r => r.Layer == "bn" && r.Statistic == "inf count").Reference);
    }

    [Fact]
    public void A_device_engine_that_computes_something_else_fails_the_check()
    {
        // The device monitor counts |x| <= 0.1 as near zero instead of 0.05: its near-zero and dead-unit statistics differ.
        var report = EngineVerification.Run(torch.CPU, new MonitorOptions { SampleSize = 512, NearZeroThreshold = 0.1 });
        Assert.False(report.Passed);
        var failed = report.Rows.Where(r => !r.Passed).ToList();
        Assert.Contains(failed, r => r.Statistic == "near-zero fraction" && r.Layer == "linear");
        Assert.All(failed, r => Assert.Equal(r.Reference, r.Cpu));   // the CPU kernel still matches the reference
        Assert.Contains("FAIL", EngineVerification.Format(report), StringComparison.Ordinal);
    }
}
