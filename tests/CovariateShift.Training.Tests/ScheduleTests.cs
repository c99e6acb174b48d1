using CovariateShift.Training.Training;

namespace CovariateShift.Training.Tests;

/// <summary>The learning-rate schedules against their formulas.</summary>
public sealed class ScheduleTests
{
    [Fact]
    public void Warmup_then_constant_step_and_cosine_follow_their_formulas()
    {
        var constant = new LearningRateSchedule { WarmupSteps = 4 };
        Assert.Equal([0.025, 0.05, 0.075, 0.1, 0.1, 0.1], Enumerable.Range(0, 6).Select(t => constant.At(t, 0.1, 100, 10)), new Tolerance(1e-15));

        var step = new LearningRateSchedule { Kind = ScheduleKind.Step, StepEveryEpochs = 2, StepFactor = 0.5 };
        // 10 steps per epoch: epochs 0-1 at 1.0, 2-3 at 0.5, 4-5 at 0.25.
        Assert.Equal([1.0, 1.0, 0.5, 0.5, 0.25], new long[] { 0, 19, 20, 39, 40 }.Select(t => step.At(t, 1.0, 100, 10)), new Tolerance(1e-15));

        var cosine = new LearningRateSchedule { Kind = ScheduleKind.Cosine, WarmupSteps = 10 };
        Assert.Equal(0.2 * 5 / 10, cosine.At(4, 0.2, 110, 10), 15);
        Assert.Equal(0.2, cosine.At(10, 0.2, 110, 10), 15);
        Assert.Equal(0.1, cosine.At(60, 0.2, 110, 10), 15);   // half-way through the decay: (1 + cos(pi/2)) / 2
        Assert.Equal(0.2 * (1 + Math.Cos(Math.PI * 99 / 100)) / 2, cosine.At(109, 0.2, 110, 10), 15);

        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule { StepFactor = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule { WarmupSteps = -1 }.Validate());
    }

    private sealed class Tolerance(double eps) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= eps;

        public int GetHashCode(double obj) => 0;
    }
}
