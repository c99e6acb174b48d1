using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>A module with no children and no parameters: nothing to hook.</summary>
internal sealed class Bare : nn.Module<Tensor, Tensor>
{
    public Bare() : base(nameof(Bare)) => RegisterComponents();
    public override Tensor forward(Tensor input) => input * 2;
}

public sealed class BadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-bad-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_model_without_leaf_layers_is_refused_with_a_clear_message()
    {
        using var model = new Bare();
        var e = Assert.Throws<ArgumentException>(() => ActivationMonitor.Attach(model));
        Assert.Contains("Bare", e.Message);
        Assert.Contains("no leaf layers", e.Message);
        Assert.Contains("RegisterComponents", e.Message);
    }

    [Fact]
    public void A_single_layer_model_is_its_own_leaf()
    {
        using var scope = NewDisposeScope();
        var model = nn.Linear(3, 2);
        using var monitor = ActivationMonitor.Attach(model);
        Assert.Equal(["Linear"], monitor.Layers);
        model.call(randn(4, 3));
        Assert.Equal(8, monitor.Step()!.Layers[0].Statistics!.Count);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void RecordEvery_must_be_positive(int n)
    {
        using var model = nn.Sequential(("fc", nn.Linear(2, 2)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = n }));
        Assert.Contains($"got {n}", e.Message);
        Assert.Contains("RecordEvery", e.Message);
    }

    [Fact]
    public void Fewer_than_two_histogram_bins_are_refused()
    {
        using var model = nn.Sequential(("fc", nn.Linear(2, 2)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(model, new MonitorOptions { HistogramBins = 1 }));
        Assert.Contains("HistogramBins must be at least 2; got 1", e.Message);
    }

    [Fact]
    public void An_unwritable_metrics_path_is_refused_and_nothing_is_left_behind()
    {
        using var model = nn.Sequential(("fc", nn.Linear(2, 2)));
        var file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "not a directory");
        var bad = Path.Combine(file, "metrics.jsonl");      // a path below a regular file cannot exist
        var e = Assert.Throws<IOException>(() => ActivationMonitor.Attach(model, new MonitorOptions { JsonLinesPath = bad }));
        Assert.Contains(bad, e.Message);
        Assert.Equal("not a directory", File.ReadAllText(file));

        // A good metrics path with a bad TensorBoard directory: the metrics file that was created is removed again.
        var good = Path.Combine(_dir, "metrics.jsonl");
        var tb = Path.Combine(file, "tb");
        var e2 = Assert.Throws<IOException>(() => ActivationMonitor.Attach(model, new MonitorOptions { JsonLinesPath = good, TensorBoardDirectory = tb }));
        Assert.Contains(tb, e2.Message);
        Assert.False(File.Exists(good));
    }

    [Fact]
    public void CaptureReference_before_any_record_is_refused()
    {
        using var model = nn.Sequential(("fc", nn.Linear(2, 2)));
        using var monitor = ActivationMonitor.Attach(model);
        var e = Assert.Throws<InvalidOperationException>(monitor.CaptureReference);
        Assert.Contains("record at least one training step", e.Message);
    }
}
