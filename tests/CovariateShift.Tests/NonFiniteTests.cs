using CovariateShift.Records;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

public sealed class NonFiniteTests
{
    [Theory]
    [InlineData(StatisticsEngineKind.Auto)]
    [InlineData(StatisticsEngineKind.Device)]
    public void NaN_and_Inf_activations_are_counted_and_warned_about_without_crashing(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Warning);
        var fc = nn.Linear(3, 4);
        using (no_grad())
        {
            fc.weight![0, 0] = tensor(float.NaN);          // output column 0: NaN for every sample
            fc.weight![1, 0] = tensor(float.PositiveInfinity);  // column 1: ±Inf (sign of the input)
        }
        var model = nn.Sequential(("fc", fc), ("act", nn.ReLU()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger, Engine = engine });
        var x = tensor(new float[] { 1, 2, 3, -1, 2, 3, 2, 0.5f, 1 }, [3, 3]);
        for (int i = 0; i < 3; i++)
        {
            using var s = NewDisposeScope();
            var y = model.call(x);
            y.sum().backward();
            monitor.RecordGradients();
            var r = monitor.Step(y.sum())!;
            var st = r.Layers[0].Statistics!;
            Assert.Equal(3, st.NanCount);
            Assert.Equal(3, st.InfCount);
            Assert.True(double.IsFinite(st.Mean));     // moments over the 6 finite values
            Assert.Contains(r.Anomalies, a => a.Layer == "fc" && a.Kind == AnomalyKind.NonFiniteActivation && a.Value == 6);
        }
        var warnings = sink.Events.Where(e => CollectingLogSink.Text(e, "Kind") == nameof(AnomalyKind.NonFiniteActivation)).ToList();
        Assert.Contains(warnings, w => CollectingLogSink.Text(w, "Layer") == "fc");
        Assert.Single(warnings, w => CollectingLogSink.Text(w, "Layer") == "fc");   // onset only, not every step
    }

    [Fact]
    public void An_output_that_is_entirely_NaN_gives_NaN_moments_and_an_empty_histogram()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("id", nn.Identity()));
        using var monitor = ActivationMonitor.Attach(model);
        model.call(full(10, float.NaN));
        var st = monitor.Step()!.Layers[0].Statistics!;
        Assert.Equal(10, st.NanCount);
        Assert.True(double.IsNaN(st.Mean));
        Assert.True(double.IsNaN(st.P50));
        Assert.Equal(0, st.Histogram!.Total);
    }
}
