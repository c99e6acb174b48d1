using System.Text.Json;
using CovariateShift.Nn.Models;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CovariateShift.Training.Tests;

/// <summary>
/// Resume equivalence: N steps straight vs. the same run stopped part-way (cancelled, or "killed" after an epoch
/// checkpoint) and resumed to N: identical losses in training.jsonl, identical metrics.jsonl steps, identical weights.
/// </summary>
public sealed class ResumeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-resume-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly ModelSpec Spec = new()
    {
        Architecture = "mlp", InputShape = [Datasets.GaussianFeatures], Classes = Datasets.GaussianClasses, Depth = 2, Width = 32,
        Norm = CovariateShift.Nn.Normalization.NormKind.Batch, Init = WeightInit.He,
    };

    private static (ImageDataset Train, ImageDataset Test) Data() =>
        (Datasets.Gaussian(Datasets.GaussianFeatures, Datasets.GaussianClasses, 448, seed: 5, "g/train", 0),
         Datasets.Gaussian(Datasets.GaussianFeatures, Datasets.GaussianClasses, 200, seed: 5, "g/test", 1));

    private static TrainerOptions Options(string dir, OptimizerKind optimizer) => new()
    {
        Steps = 40, BatchSize = 64, Optimizer = optimizer, LearningRate = optimizer == OptimizerKind.Sgd ? 0.05 : 0.003, Nesterov = optimizer == OptimizerKind.Sgd,
        WeightDecay = 1e-4, Schedule = new LearningRateSchedule { Kind = ScheduleKind.Cosine, WarmupSteps = 5 },
        Seed = 11, RecordEvery = 4, LogEvery = 5, EvaluateEveryEpoch = true, OutputDirectory = dir, WriteCheckpoints = true, KeepCheckpoints = 10,
        Monitor = new MonitorOptions { JsonLinesHistogramEvery = 3 },   // histograms on records 0, 3, 6, 9: a resumed run must keep the cadence
    };

    private static TrainResult Run(TrainerOptions options, out Dictionary<string, float[]> weights)
    {
        var (train, test) = Data();
        using (train)
        using (test)
        {
            torch.manual_seed(options.Seed);
            using var model = ModelZoo.Create(Spec);
            var result = new Trainer(options).Train(model, train, test);
            weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to_type(ScalarType.Float32).data<float>().ToArray());
            return result;
        }
    }

    /// <summary>Every line of training.jsonl without the timing field (examples_per_s).</summary>
    private static List<string> Curve(string dir) =>
        File.ReadAllLines(Path.Combine(dir, TrainerOptions.TrainingLogFileName)).Select(l =>
        {
            var e = JsonDocument.Parse(l).RootElement;
            return string.Join(' ', e.EnumerateObject().Where(p => p.Name != "examples_per_s").Select(p => $"{p.Name}={p.Value.GetRawText()}"));
        }).ToList();

    /// <summary>Every line of metrics.jsonl as written: statistics, histogram (range and counts, or null), shift
    /// (KL, JS, W1), reference shift and gradients; a resumed run's records must equal a straight run's.</summary>
    /// <summary>Equal line lists; a difference names the first differing line of both in full.</summary>
    private static void SameLines(List<string> expected, List<string> actual)
    {
        for (int i = 0; i < Math.Min(expected.Count, actual.Count); i++)
        {
            if (expected[i] != actual[i]) Assert.Fail($"line {i} differs:\nexpected {expected[i]}\nactual   {actual[i]}");
        }
        Assert.Equal(expected.Count, actual.Count);
    }

    /// <summary>The metrics lines without the monitor's wall-clock timing (monitor_ms, step_ms: measured, never equal
    /// between two runs); everything else must match bit for bit.</summary>
    private static List<string> MetricsKeys(string dir) =>
    [
        .. File.ReadAllLines(Path.Combine(dir, TrainerOptions.MetricsFileName)).Select(line =>
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(line)!.AsObject();
            Assert.True(node.Remove("monitor_ms") == node.Remove("step_ms"), line);   // both or neither
            return node.ToJsonString();
        }),
    ];

    [Theory]
    [InlineData(OptimizerKind.Sgd)]
    [InlineData(OptimizerKind.AdamW)]
    public void A_cancelled_run_resumed_matches_the_straight_run_bit_for_bit(OptimizerKind optimizer)
    {
        var straightDir = Path.Combine(_dir, "straight");
        var straight = Run(Options(straightDir, optimizer), out var straightWeights);

        // Cancelled at the first report at or after step 15 (log every 5): 15 is not a multiple of RecordEvery (4),
        // so the resumed monitor must start recording at step 16 as the straight run did.
        var splitDir = Path.Combine(_dir, "split");
        using var cancel = new CancellationTokenSource();
        var first = Run(Options(splitDir, optimizer) with { Cancellation = cancel.Token, Progress = new Cancel(cancel, 15) }, out _);
        Assert.True(first.Interrupted);
        Assert.Equal(15, first.Steps);
        var state = RunCheckpoint.Load(Path.Combine(splitDir, "checkpoints", "last")).State;
        Assert.Equal((15L, false), (state.Step, state.Finished));

        var resumed = Run(Options(splitDir, optimizer) with { Resume = true }, out var resumedWeights);
        Assert.Equal(15, resumed.StartStep);
        Assert.Equal(40, resumed.Steps);
        Assert.Equal(straight.Losses.Skip(15), resumed.Losses);
        Assert.Equal(Curve(straightDir), Curve(splitDir));
        SameLines(MetricsKeys(straightDir), MetricsKeys(splitDir));
        Assert.Equal(straightWeights.Keys, resumedWeights.Keys);
        foreach (var (name, values) in straightWeights) Assert.True(values.AsSpan().SequenceEqual(resumedWeights[name]), $"{name} differs");
        Assert.Equal(straight.TestAccuracy, resumed.TestAccuracy);
        // The summary does not depend on where the resume started: the loss window spans the stop, every evaluation is listed.
        Assert.Equal(straight.FinalTrainLoss, resumed.FinalTrainLoss);
        Assert.Equal(straight.Evaluations, resumed.Evaluations);
        Assert.Equal(straight.BestTestAccuracy, resumed.BestTestAccuracy);
        Assert.True(RunCheckpoint.Load(Path.Combine(splitDir, "checkpoints", "last")).State.Finished);
        output.WriteLine($"{optimizer}: final loss {straight.FinalTrainLoss:R}, test accuracy {straight.TestAccuracy:R}; {Curve(straightDir).Count} curve lines");
    }

    [Fact]
    public void A_run_with_an_overhead_budget_resumes_at_the_interval_the_budget_chose()
    {
        // A budget no monitor can meet (1e-6 of the step time) takes the interval from 1 to the maximum, 8, at the first
        // decision (the first record is not used; then two records and 50 steps) and keeps it there, whatever the timing:
        // the recorded steps are the same in every run. The resumed run must go on at 8, not start again from 1.
        static TrainerOptions Budget(string dir) => Options(dir, OptimizerKind.Sgd) with
        {
            Steps = 100, RecordEvery = 1, OverheadBudget = 1e-6, Monitor = new MonitorOptions { JsonLinesHistogramEvery = 3, MaxRecordEvery = 8 },
        };
        var straightDir = Path.Combine(_dir, "straight");
        Run(Budget(straightDir), out var straightWeights);
        var splitDir = Path.Combine(_dir, "split");
        using var cancel = new CancellationTokenSource();
        var first = Run(Budget(splitDir) with { Cancellation = cancel.Token, Progress = new Cancel(cancel, 70) }, out _);
        Assert.Equal(70, first.Steps);
        Assert.Equal(8, RunCheckpoint.Load(Path.Combine(splitDir, "checkpoints", "last")).State.Monitor!.RecordEvery);
        Run(Budget(splitDir) with { Resume = true }, out var resumedWeights);

        var steps = File.ReadAllLines(Path.Combine(straightDir, TrainerOptions.MetricsFileName))
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64()).Distinct().ToList();
        Assert.Equal([72L, 80, 88, 96], steps.SkipWhile(s => s < 70));
        Assert.Contains(1L, steps);
        SameLines(MetricsKeys(straightDir), MetricsKeys(splitDir));
        foreach (var (name, values) in straightWeights) Assert.True(values.AsSpan().SequenceEqual(resumedWeights[name]), $"{name} differs");
    }

    [Fact]
    public void A_run_killed_after_an_epoch_checkpoint_resumes_from_it_and_drops_the_lines_written_after_it()
    {
        // 448 / 64 = 7 steps per epoch: epoch checkpoints at 7, 14, ..., 35. Simulate a kill right after step 7 was
        // saved and more lines were written: put epoch-0001 back as last in a copy of the finished run and resume.
        var straightDir = Path.Combine(_dir, "straight");
        Run(Options(straightDir, OptimizerKind.Adam), out var straightWeights);
        var killedDir = Path.Combine(_dir, "killed");
        Directory.CreateDirectory(Path.Combine(killedDir, "checkpoints"));
        foreach (var f in Directory.GetFiles(straightDir)) File.Copy(f, Path.Combine(killedDir, Path.GetFileName(f)));
        File.Copy(Path.Combine(straightDir, "checkpoints", "epoch-0001"), Path.Combine(killedDir, "checkpoints", "last"));
        File.AppendAllText(Path.Combine(killedDir, TrainerOptions.TrainingLogFileName), "{\"step\":40,\"epo");   // a torn last line

        var state = RunCheckpoint.Load(Path.Combine(killedDir, "checkpoints", "last")).State;
        Assert.Equal(7, state.Step);
        Assert.Equal(2, state.PendingLosses.Count);   // steps 6 and 7 since the report at step 5

        var resumed = Run(Options(killedDir, OptimizerKind.Adam) with { Resume = true }, out var resumedWeights);
        Assert.Equal(7, resumed.StartStep);
        Assert.Equal(Curve(straightDir), Curve(killedDir));
        SameLines(MetricsKeys(straightDir), MetricsKeys(killedDir));
        foreach (var (name, values) in straightWeights) Assert.True(values.AsSpan().SequenceEqual(resumedWeights[name]), $"{name} differs");
    }

    [Fact]
    public void Resuming_a_checkpoint_of_a_different_configuration_is_refused()
    {
        var dir = Path.Combine(_dir, "run");
        Run(Options(dir, OptimizerKind.Sgd) with { Steps = 10 }, out _);
        var e = Assert.Throws<InvalidDataException>(() => Run(Options(dir, OptimizerKind.Sgd) with { Steps = 20, Resume = true }, out _));
        Assert.Contains("belongs to a different run", e.Message);
        Assert.Contains("10 steps", e.Message);
    }

    private sealed class Cancel(CancellationTokenSource source, int atStep) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value)
        {
            if (value.Step >= atStep) source.Cancel();
        }
    }
}
