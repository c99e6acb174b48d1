using System.Collections.Immutable;
using CovariateShift.Building;
using CovariateShift.Capture;
using CovariateShift.Records;
using CovariateShift.Shift;
using CovariateShift.Tests.Support;

namespace CovariateShift.Tests;

/// <summary>The pure record builder: captures made by hand (no TorchSharp), results against independent computations.</summary>
public sealed class RecordBuilderTests
{
    private static readonly MonitorOptions Options = new() { HistogramBins = 16 };

    private static LayerDescriptor[] Layers() => [new(0, "fc", "Linear"), new(1, "act", "ReLU"), new(2, "gate", "Sigmoid")];

    private static LayerSummary Summary(double[] values, long units = 4, long dead = 0)
    {
        var finite = Reference.Finite(values);
        return new LayerSummary
        {
            Count = values.Length, FiniteCount = finite.Length, Mean = Reference.Mean(finite), Variance = Math.Pow(Reference.Std(finite), 2),
            Min = finite.Min(), Max = finite.Max(), NearZero = values.Count(v => Math.Abs(v) <= 0.05), Units = units, DeadUnits = dead,
            Saturated = 0, Nan = values.Count(double.IsNaN), Inf = values.Count(double.IsInfinity),
            Sample = [.. finite.Select(v => (float)v)],
        };
    }

    private static StepCapture Capture(long step, params LayerSummary?[] activations) =>
        new(step, 0.5, [.. activations], [.. activations.Select(_ => (GradientSums?)null)]);

    private static double[] Gaussian(int n, double mean, double std, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ => mean + std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))];
    }

    [Fact]
    public void Statistics_come_from_the_summary_and_percentiles_and_histogram_from_its_sample()
    {
        var values = Gaussian(500, 1.5, 2.0, 1);
        var builder = new RecordBuilder(Layers()[..1], Options);
        var record = builder.Build(Capture(7, Summary(values)))!;
        var s = Assert.Single(record.Layers).Statistics!;
        Assert.Equal((7L, 0.5), (record.Step, record.Loss!.Value));
        Assert.Equal(Reference.Mean(values), s.Mean, 12);
        Assert.Equal(Reference.Std(values), s.Std, 12);
        Assert.Equal(Reference.Percentile(values.Select(v => (double)(float)v).ToArray(), 0.15), s.P15, 5);
        Assert.Equal(Reference.Percentile(values.Select(v => (double)(float)v).ToArray(), 0.85), s.P85, 5);
        // Range: [min - s/2, max + s/2] with s = max - min (a Linear layer can be negative).
        double span = values.Max() - values.Min();
        Assert.Equal(values.Min() - span / 2, s.Histogram!.Low, 12);
        Assert.Equal(values.Max() + span / 2, s.Histogram.High, 12);
        Assert.Equal(Reference.Histogram(values.Select(v => (double)(float)v).ToArray(), s.Histogram.Low, s.Histogram.High, 16), s.Histogram.Counts);
    }

    [Fact]
    public void Percentiles_of_every_record_match_the_sample_while_the_layer_drifts_and_jumps()
    {
        // Records after the first select from the brackets the layer keeps; each must still be its own sample's percentile.
        var builder = new RecordBuilder(Layers()[..2], Options);
        for (int step = 0; step < 80; step++)
        {
            var fc = Gaussian(2048, 0.01 * step + (step == 40 ? 5 : 0), 1 + 0.005 * step, 100 + step);
            var act = fc.Select(v => Math.Max(0, v)).ToArray();   // ReLU: a run of zeros under P15 and near P50
            var record = builder.Build(Capture(step, Summary(fc), Summary(act)))!;
            foreach (var (values, layer) in new[] { (fc, record.Layers[0]), (act, record.Layers[1]) })
            {
                var sample = values.Select(v => (double)(float)v).ToArray();
                var s = layer.Statistics!;
                Assert.Equal((Reference.Percentile(sample, 0.15), Reference.Percentile(sample, 0.50), Reference.Percentile(sample, 0.85)),
                    (s.P15, s.P50, s.P85));
            }
        }
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported) return;   // elsewhere every record takes the plain select
        for (int layer = 0; layer < 2; layer++)
            Assert.True(builder.BracketsOf(layer).Hits >= 60, $"layer {layer}: {builder.BracketsOf(layer).Hits} of 80 records from the brackets");
    }

    [Fact]
    public void The_histogram_range_is_fixed_at_the_first_record_and_shift_compares_with_the_previous_record()
    {
        var builder = new RecordBuilder(Layers()[..1], Options);
        var first = builder.Build(Capture(0, Summary(Gaussian(400, 0, 1, 2))))!.Layers[0];
        var second = builder.Build(Capture(1, Summary(Gaussian(400, 3, 5, 3))))!.Layers[0];
        Assert.Null(first.Shift);
        Assert.Equal(first.Statistics!.Histogram!.Low, second.Statistics!.Histogram!.Low);
        Assert.Equal(first.Statistics.Histogram.High, second.Statistics.Histogram.High);
        Assert.True(second.Statistics.Histogram.Overflow > 0, "values beyond the first range land in the overflow bin");
        Assert.Equal(ShiftCalculator.Compute(second.Statistics, first.Statistics), second.Shift);
        Assert.Equal(Math.Abs(second.Statistics.Mean - first.Statistics.Mean), second.Shift!.MeanDrift, 12);
        Assert.Same(second.Statistics, builder.History[0].Previous);
    }

    [Fact]
    public void Bounded_and_non_negative_layers_get_their_output_range()
    {
        var builder = new RecordBuilder(Layers(), Options);
        var relu = Summary([0.2, 0.5, 1.0, 2.0]);
        var sigmoid = Summary([0.2, 0.5, 0.7]);
        var r = builder.Build(Capture(0, Summary([-1.0, 1.0]), relu, sigmoid))!;
        Assert.Equal(0.0, r.Layers[1].Statistics!.Histogram!.Low);
        Assert.Equal((0.0, 1.0), (r.Layers[2].Statistics!.Histogram!.Low, r.Layers[2].Statistics!.Histogram!.High));
        Assert.Null(r.Layers[0].Statistics!.SaturatedFraction);
        Assert.Equal(0.0, r.Layers[2].Statistics!.SaturatedFraction);
    }

    [Fact]
    public void A_layer_that_did_not_run_is_reported_once_and_dead_units_raise_the_dead_units_anomaly()
    {
        var builder = new RecordBuilder(Layers()[..2], Options);
        var first = builder.Build(Capture(0, Summary([1.0, -1.0, 2.0, 0.5]), null))!;
        var second = builder.Build(Capture(1, Summary([1.0, -1.0, 2.0, 0.5], units: 4, dead: 3), null))!;
        Assert.Single(first.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled && a.Layer == "act");
        Assert.DoesNotContain(second.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled);
        var dead = Assert.Single(second.Anomalies, a => a.Kind == AnomalyKind.DeadUnits);
        Assert.Equal(0.75, dead.Value);
        Assert.Equal(0.75, second.Layers[0].Statistics!.DeadUnitFraction);
    }

    [Fact]
    public void Nothing_captured_builds_no_record_and_gradients_alone_build_one_with_norms()
    {
        var builder = new RecordBuilder(Layers()[..1], Options);
        Assert.Null(builder.Build(Capture(0, [null])));
        var g = builder.Build(new StepCapture(1, null, [null], [new GradientSums(9, 16, 0.25, 10)]))!;
        var grad = g.Layers[0].Gradients!;
        Assert.Equal((3.0, 4.0, 0.75, 0.5), (grad.GradNorm, grad.WeightNorm, grad.GradToWeightRatio, grad.UpdateNorm!.Value));
        Assert.Equal(0.5 / 4.0, grad.UpdateToWeightRatio);
    }

    [Fact]
    public void Reference_shift_compares_with_the_captured_reference()
    {
        var builder = new RecordBuilder(Layers()[..1], Options);
        Assert.Throws<InvalidOperationException>(builder.CaptureReference);
        builder.Build(Capture(0, Summary(Gaussian(300, 0, 1, 4))));
        builder.CaptureReference();
        var reference = builder.History[0].Reference!;
        builder.Build(Capture(1, Summary(Gaussian(300, 0.5, 1, 5))));
        var third = builder.Build(Capture(2, Summary(Gaussian(300, 1, 1, 6))))!.Layers[0];
        Assert.Equal(ShiftCalculator.Compute(third.Statistics!, reference), third.ReferenceShift);
        builder.ClearReference();
        Assert.Null(builder.Build(Capture(3, Summary(Gaussian(300, 1, 1, 7))))!.Layers[0].ReferenceShift);
    }

    [Fact]
    public void Records_are_immutable_underneath()
    {
        var layers = new List<LayerRecord> { new(0, "a", "Linear", null, null, null, null) };
        var record = new StepRecord(0, null, layers, []);
        layers.Clear();
        Assert.Single(record.Layers);
        Assert.IsType<ImmutableArray<LayerRecord>>(record.Layers);
        Assert.IsType<ImmutableArray<LayerRecord>>((record with { Layers = layers }).Layers);
    }
}
