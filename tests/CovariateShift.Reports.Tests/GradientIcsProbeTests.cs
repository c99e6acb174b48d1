using CovariateShift.Probes;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Reports.Tests;

public sealed class GradientIcsProbeTests
{
    private static double[] D(Tensor t) => t.detach().to_type(ScalarType.Float64).flatten().data<double>().ToArray();

    [Fact]
    public void G_prime_is_the_gradient_after_the_earlier_layers_update_and_the_model_is_left_as_the_optimizer_left_it()
    {
        torch.manual_seed(3);
        using var model = nn.Sequential(("fc1", nn.Linear(5, 6)), ("bn", nn.BatchNorm1d(6)), ("act", nn.Tanh()), ("fc2", nn.Linear(6, 4)), ("fc3", nn.Linear(4, 3)));
        using var opt = optim.SGD(model.parameters(), 0.5);
        var x = randn(16, 5);
        var y = randint(0, 3, [16]);
        Func<Tensor> lossFn = () => nn.functional.cross_entropy(model.call(x), y);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { GradientIcs = new GradientIcsOptions() });

        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        opt.zero_grad();
        lossFn().backward();
        var g = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.detach().clone());
        monitor.RecordGradients();
        opt.step();
        var after = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var runningMean = D(model.named_buffers().First(b => b.name == "bn.running_mean").buffer);
        var results = monitor.MeasureGradientIcs(lossFn);
        monitor.Step();
        Assert.Equal(["fc1", "fc2", "fc3"], results.Select(r => r.Layer));

        // Independent computation for fc3: a copy of the model with fc1 (and bn) at their new weights, fc2 at its new weights,
        // fc3 at its old ones; for fc2: fc1 new, fc2 and fc3 old. The probe moves only measured layers (bn stays new).
        foreach (var (layer, updated) in new[] { ("fc2", new[] { "fc1" }), ("fc3", new[] { "fc1", "fc2" }) })
        {
            torch.manual_seed(3);
            using var copy = nn.Sequential(("fc1", nn.Linear(5, 6)), ("bn", nn.BatchNorm1d(6)), ("act", nn.Tanh()), ("fc2", nn.Linear(6, 4)), ("fc3", nn.Linear(4, 3)));
            using (no_grad())
            {
                foreach (var (name, p) in copy.named_parameters())
                {
                    var owner = name.Split('.')[0];
                    p.copy_(owner == "bn" || updated.Contains(owner) ? after[name] : before[name]);
                }
            }
            nn.functional.cross_entropy(copy.call(x), y).backward();
            var gp = copy.named_parameters().Where(p => p.name.StartsWith(layer + ".", StringComparison.Ordinal)).SelectMany(p => D(p.parameter.grad!)).ToArray();
            var g0 = g.Where(kv => kv.Key.StartsWith(layer + ".", StringComparison.Ordinal)).SelectMany(kv => D(kv.Value)).ToArray();
            double l2 = Math.Sqrt(g0.Zip(gp).Sum(p => (p.First - p.Second) * (p.First - p.Second)));
            double cos = g0.Zip(gp).Sum(p => p.First * p.Second) / Math.Sqrt(g0.Sum(v => v * v) * gp.Sum(v => v * v));
            var r = results.Single(m => m.Layer == layer);
            Assert.True(l2 > 1e-4, $"{layer}: G' should differ from G, got {l2}");
            Assert.Equal(l2, r.L2, 5);
            Assert.Equal(cos, r.Cosine, 5);
        }
        // The first measured layer has no earlier update: G' = G.
        Assert.Equal(0, results[0].L2, 6);
        // Parameters as the optimizer left them, batch-norm running statistics untouched by the extra passes.
        foreach (var (name, p) in model.named_parameters()) Assert.Equal(D(after[name]), D(p));
        Assert.Equal(runningMean, D(model.named_buffers().First(b => b.name == "bn.running_mean").buffer));
    }
}
