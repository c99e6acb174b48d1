using System.Text.Json;
using CovariateShift.Nn.Backends;
using CovariateShift.Nn.Models;
using CovariateShift.Sinks;
using CovariateShift.Tests.Support;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;
using Serilog.Events;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CovariateShift.Training.Tests;

/// <summary>The trainer on real Fashion-MNIST data: it learns, it records through the monitor, it is reproducible, and it stops on divergence.</summary>
public sealed class TrainerTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Lazy<ImageDataset> Train2000 = new(() => MnistFormat.LoadFashionMnist(train: true, limit: 2000));
    private static readonly Lazy<ImageDataset> Test1000 = new(() => MnistFormat.LoadFashionMnist(train: false, limit: 1000));
    private static readonly string[] MlpLayers = ["layers.0.linear", "layers.0.act", "layers.1.linear", "layers.1.act", "head"];

    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-trainer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>784-64-64-10 ReLU MLP, He init, no normalization, built right after seeding.</summary>
    private static nn.Module<Tensor, Tensor> SmallMlp(long seed, ActivationKind activation = ActivationKind.Relu)
    {
        torch.manual_seed(seed);
        return ModelZoo.Create(new ModelSpec
        {
            Architecture = "mlp", InputShape = [1, 28, 28], Depth = 2, Width = 64, Activation = activation, Init = WeightInit.He,
        });
    }

    private static List<JsonElement> ReadLines(string path) =>
        File.ReadAllLines(path).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    [Fact]
    public void A_cnn_whose_convolutions_have_wrong_gradients_here_is_trained_with_onednn_off_and_the_log_says_so()
    {
        // TorchSharp's MNIST example's convolutions (1 -> 4 -> 8 channels): measured wrong with oneDNN on this project's
        // Zen 4 machines (CpuConvolutions). Whichever they are here, the trainer must act on what it measures.
        bool before = CpuConvolutions.OneDnnEnabled;
        try
        {
            CpuConvolutions.OneDnnEnabled = true;
            torch.manual_seed(4);
            var model = nn.Sequential(("conv1", nn.Conv2d(1, 4, 3)), ("act1", nn.ReLU()), ("conv2", nn.Conv2d(4, 8, 3, stride: 2)),
                ("act2", nn.ReLU()), ("flat", nn.Flatten()), ("head", nn.Linear(8 * 12 * 12, 10)));
            var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Warning);
            var result = new Trainer(new TrainerOptions { Steps = 30, BatchSize = 32, LearningRate = 0.05, Seed = 4, RecordEvery = 10, Logger = logger })
                .Train(model, Train2000.Value);
            var expected = CpuConvolutions.ConvolutionsOf(model).Select(l => CpuConvolutions.Check(l)).ToList();
            var warning = sink.Events.SingleOrDefault(e => e.MessageTemplate.Text.StartsWith("libtorch's oneDNN convolutions gave wrong gradients", StringComparison.Ordinal));
            output.WriteLine(warning?.RenderMessage(System.Globalization.CultureInfo.InvariantCulture) ?? "no warning: oneDNN left on");
            Assert.Equal(warning is null, CpuConvolutions.OneDnnEnabled);
            Assert.All(expected, c => Assert.True(c.Exact, $"after training: {c}"));
            Assert.DoesNotContain(sink.Events, e => e.Level == LogEventLevel.Error);
            Assert.All(result.Losses, l => Assert.True(double.IsFinite(l), $"loss {l}"));
            if (warning is not null)
                Assert.Matches(@"for conv[12] \((1->4|4->8), 3x3", warning.RenderMessage(System.Globalization.CultureInfo.InvariantCulture));

            // A later run in the same process: nothing to switch, and its log says which kernels it trains with.
            var (secondLogger, second) = CollectingLogSink.Create(LogEventLevel.Information);
            new Trainer(new TrainerOptions { Steps = 5, BatchSize = 32, LearningRate = 0.05, Seed = 5, RecordEvery = 10, Logger = secondLogger })
                .Train(model, Train2000.Value);
            Assert.DoesNotContain(second.Events, e => e.MessageTemplate.Text.StartsWith("libtorch's oneDNN convolutions gave", StringComparison.Ordinal));
            Assert.Equal(warning is not null, second.Events.Any(e => e.MessageTemplate.Text.StartsWith("libtorch's oneDNN is off in this process", StringComparison.Ordinal)));
        }
        finally
        {
            CpuConvolutions.OneDnnEnabled = before;
        }
    }

    [Fact]
    public void A_small_mlp_learns_fashion_mnist_and_the_monitor_records_every_layer_at_every_recorded_step()
    {
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Information);
        using var model = SmallMlp(seed: 1);
        var options = new TrainerOptions
        {
            Steps = 150, BatchSize = 64, LearningRate = 0.01, Momentum = 0.9, Seed = 1,
            RecordEvery = 10, EvaluateEvery = 50, LogEvery = 50, OutputDirectory = _dir, Logger = logger,
        };
        var result = new Trainer(options).Train(model, Train2000.Value, Test1000.Value);

        double first = result.Losses.Take(20).Average(), last = result.Losses.TakeLast(20).Average();
        output.WriteLine($"first-20 loss {first:F4}, last-20 loss {last:F4}, test accuracy {result.TestAccuracy:F4}, test loss {result.TestLoss:F4}, {result.WallTime.TotalSeconds:F2} s");
        Assert.False(result.Diverged);
        Assert.Equal(150, result.Steps);
        Assert.Equal(150, result.Losses.Count);
        Assert.Equal(150.0 * 64 / 2000, result.Epochs, 12);
        Assert.True(last < first - 0.5, $"loss fell only from {first} to {last}");
        Assert.True(result.TestAccuracy > 0.6, $"test accuracy {result.TestAccuracy}");
        Assert.Equal(result.Losses.TakeLast(50).Average(), result.FinalTrainLoss, 12);
        Assert.True(model.training, "the model is back in training mode after evaluation");

        // Evaluations at steps 50, 100 and the end; the last one is the result's, and matches an independent computation.
        Assert.Equal([50, 100, 150], result.Evaluations.Select(e => e.Step));
        var (accuracy, loss) = IndependentEvaluation(model, Test1000.Value);
        Assert.Equal(accuracy, result.TestAccuracy!.Value, 12);
        Assert.Equal(loss, result.TestLoss!.Value, 4);

        // Progress events every 50 steps carry the step's loss and the mean since the previous report.
        var progress = sink.Events.Where(e => e.MessageTemplate.Text.StartsWith("Step {Step}/{Steps}", StringComparison.Ordinal)).ToList();
        Assert.Equal([50.0, 100.0, 150.0], progress.Select(e => CollectingLogSink.Scalar(e, "Step")));
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(result.Losses[50 * i + 49], CollectingLogSink.Scalar(progress[i], "Loss"), 12);
            Assert.Equal(result.Losses.Skip(50 * i).Take(50).Average(), CollectingLogSink.Scalar(progress[i], "MeanLoss"), 10);
        }

        // metrics.jsonl: one line per layer per recorded step (0, 10, ..., 140), training batches only, with gradients on the linear layers.
        Assert.Equal(Path.Combine(_dir, TrainerOptions.MetricsFileName), result.MetricsPath);
        var lines = ReadLines(result.MetricsPath!);
        Assert.Equal(15 * MlpLayers.Length, lines.Count);
        var byStep = lines.GroupBy(l => l.GetProperty("step").GetInt64()).ToList();
        Assert.Equal(Enumerable.Range(0, 15).Select(i => 10L * i), byStep.Select(g => g.Key));
        foreach (var step in byStep)
        {
            Assert.Equal(MlpLayers, step.Select(l => l.GetProperty("layer").GetString()));
            foreach (var l in step)
            {
                Assert.Equal(result.Losses[(int)step.Key], JsonLinesSink.ReadNumber(l.GetProperty("loss")), 6);
                var layer = l.GetProperty("layer").GetString()!;
                Assert.Equal(layer == "head" ? 64 * 10 : 64 * 64, l.GetProperty("count").GetInt64());   // a training batch, never an evaluation batch
                Assert.Equal(layer.EndsWith("act", StringComparison.Ordinal) ? JsonValueKind.Null : JsonValueKind.Object, l.GetProperty("gradients").ValueKind);
            }
        }
    }

    /// <summary>Accuracy and mean cross-entropy from the logits, computed in plain doubles.</summary>
    private static (double Accuracy, double Loss) IndependentEvaluation(nn.Module<Tensor, Tensor> model, ImageDataset data)
    {
        using var scope = NewDisposeScope();
        model.eval();
        double[] logits;
        using (no_grad())
            logits = TorchData.ToDoubles(model.call(data.Images));
        model.train();
        var labels = data.Labels.data<long>().ToArray();
        int classes = logits.Length / labels.Length, correct = 0;
        double loss = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            var row = logits.AsSpan(i * classes, classes);
            double max = double.NegativeInfinity;
            int arg = 0;
            for (int c = 0; c < classes; c++)
                if (row[c] > max) (max, arg) = (row[c], c);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - max);
            loss += max + Math.Log(sum) - row[(int)labels[i]];
            if (arg == labels[i]) correct++;
        }
        return ((double)correct / labels.Length, loss / labels.Length);
    }

    [Fact]
    public void The_same_seed_gives_the_same_losses_and_another_seed_does_not()
    {
        TrainResult Run(long seed)
        {
            using var model = SmallMlp(seed);
            return new Trainer(new TrainerOptions { Steps = 40, BatchSize = 64, Seed = seed, RecordEvery = 5 }).Train(model, Train2000.Value);
        }

        var a = Run(7);
        var b = Run(7);
        var c = Run(8);
        output.WriteLine($"seed 7: {a.FinalTrainLoss:R} / {b.FinalTrainLoss:R}; seed 8: {c.FinalTrainLoss:R}");
        Assert.Equal(a.FinalTrainLoss, b.FinalTrainLoss);
        Assert.Equal(a.Losses, b.Losses);
        Assert.NotEqual(a.Losses, c.Losses);
        Assert.Null(a.TestAccuracy);
        Assert.Empty(a.Evaluations);
        Assert.Null(a.MetricsPath);
    }

    [Fact]
    public void An_absurd_learning_rate_diverges_and_stops_with_the_records_up_to_there()
    {
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Information);
        using var model = SmallMlp(seed: 3);
        var options = new TrainerOptions { Steps = 100, BatchSize = 64, LearningRate = 1e6, RecordEvery = 1, OutputDirectory = _dir, Logger = logger };
        var result = new Trainer(options).Train(model, Train2000.Value, Test1000.Value);

        output.WriteLine($"diverged at {result.DivergedAtStep}; losses {string.Join(", ", result.Losses.Select(l => l.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)))}");
        output.WriteLine(result.DivergenceMessage);
        Assert.True(result.Diverged);
        var at = result.DivergedAtStep!.Value;
        Assert.InRange(at, 1, 99);
        Assert.Equal((int)at, result.Steps);
        Assert.Equal(at + 1, result.Losses.Count);
        Assert.All(result.Losses.Take((int)at), l => Assert.True(double.IsFinite(l)));
        Assert.False(double.IsFinite(result.Losses[^1]));
        Assert.Contains($"at step {at}", result.DivergenceMessage);
        Assert.Equal(result.Losses.Take((int)at).TakeLast(50).Average(), result.FinalTrainLoss, 12);
        Assert.Contains(sink.Events, e => e.Level == LogEventLevel.Error && CollectingLogSink.Scalar(e, "Step") == at);

        // Every step up to and including the diverging one is in the metrics file; the last one shows the non-finite loss.
        var lines = ReadLines(result.MetricsPath!);
        Assert.Equal((at + 1) * MlpLayers.Length, lines.Count);
        var lastStep = lines.Where(l => l.GetProperty("step").GetInt64() == at).ToList();
        Assert.Equal(MlpLayers, lastStep.Select(l => l.GetProperty("layer").GetString()));
        Assert.All(lastStep, l => Assert.False(double.IsFinite(JsonLinesSink.ReadNumber(l.GetProperty("loss")))));
    }

    [Fact]
    public void Training_and_evaluation_leave_no_tensor_behind()
    {
        var train = Train2000.Value;
        var test = Test1000.Value.Take(300);
        long Leaked(int steps)
        {
            using var model = SmallMlp(seed: 2);
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            var options = new TrainerOptions { Steps = steps, BatchSize = 500, RecordEvery = 3, EvaluateEvery = 5, EvaluationBatchSize = 128 };
            var result = new Trainer(options).Train(model, train, test);   // 4 batches per epoch: several epochs and evaluations
            Assert.Equal(steps / 5, result.Evaluations.Count);
            return DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;
        }

        Leaked(5);   // warm-up
        long few = Leaked(5), many = Leaked(45);
        output.WriteLine($"live tensors left behind: {few} after 5 steps, {many} after 45 steps");
        Assert.Equal(0, few);
        Assert.Equal(0, many);
        test.Dispose();
    }

    [Fact]
    public void Options_out_of_range_and_a_batch_larger_than_the_data_are_refused_with_the_value()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(new TrainerOptions { Steps = 0 }));
        Assert.Contains("Steps must be at least 1; got 0", e.Message);
        var m = Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(new TrainerOptions { Momentum = 1.5 }));
        Assert.Contains("Momentum must be in [0, 1); got 1.5", m.Message);
        var lr = Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(new TrainerOptions { LearningRate = double.NaN }));
        Assert.Contains("got NaN", lr.Message);

        using var model = SmallMlp(seed: 1);
        using var tiny = Train2000.Value.Take(100);
        var b = Assert.Throws<ArgumentException>(() => new Trainer(new TrainerOptions { BatchSize = 128 }).Train(model, tiny));
        Assert.Contains("Batch size 128", b.Message);
        Assert.Contains("100 examples", b.Message);
    }
}
