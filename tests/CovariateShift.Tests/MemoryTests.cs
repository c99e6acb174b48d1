using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

[Trait("Category", "Slow")]
[Collection(TorchGlobalState.Name)]
public sealed class MemoryTests
{
    [Theory]
    [InlineData(StatisticsEngineKind.Auto)]
    [InlineData(StatisticsEngineKind.Device)]
    public void Two_thousand_recorded_steps_leave_the_live_tensor_count_flat(StatisticsEngineKind engine)
    {
        using var outer = NewDisposeScope();
        torch.manual_seed(3);
        var model = nn.Sequential(("fc1", nn.Linear(8, 16)), ("bn", nn.BatchNorm1d(16)), ("act", nn.ReLU()), ("fc2", nn.Linear(16, 2)));
        var opt = optim.SGD(model.parameters(), 0.01);
        var x = randn(32, 8);
        var y = randint(0, 2, [32]);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Engine = engine, SampleSize = 64 });
        long Live() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        void Steps(int n)
        {
            for (int i = 0; i < n; i++)
            {
                using var scope = NewDisposeScope();
                opt.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                loss.backward();
                monitor.RecordGradients();
                opt.step();
                monitor.Step(loss);
            }
        }
        Steps(20);   // warm-up: sample positions, histogram ranges, optimizer state
        long before = Live();
        Steps(2000);
        long after = Live();
        Assert.True(after - before <= 0, $"live tensors grew from {before} to {after} over 2000 recorded steps");
        Assert.Equal(2020, monitor.CurrentStep);
        if (engine == StatisticsEngineKind.Device) Assert.Equal(2020, monitor.HostTransfers);   // exactly one per recorded step
        else Assert.Equal(0, monitor.HostTransfers);
    }
}
