using System.Text.Json;
using CovariateShift.Nn.Checkpoints;
using CovariateShift.Nn.Models;
using CovariateShift.Training.FineTuning;
using TorchSharp;

namespace CovariateShift.Cli.Tests;

/// <summary><c>covshift finetune</c> in-process on the shipped Fashion-MNIST model: a short run end to end, resume, and user mistakes.</summary>
[Collection(nameof(TrainCommandTests))]
public sealed class FinetuneCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-finetune-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The checked-in model directory (models/fashion-mnist-mlp-bn), found from the test's working directory upwards.</summary>
    private static string Shipped
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                var candidate = Path.Combine(d.FullName, "models", "fashion-mnist-mlp-bn");
                if (Directory.Exists(candidate)) return candidate;
            }

            throw new DirectoryNotFoundException("models/fashion-mnist-mlp-bn not found above " + AppContext.BaseDirectory);
        }
    }

    private static (int Code, string Error) Run(params string[] args)
    {
        var (code, _, error) = CliConsole.Run(args);
        return (code, error);
    }

    private static Dictionary<string, float[]> State(string checkpoint)
    {
        var spec = ModelSpec.Load(Path.Combine(Shipped, "model.json"));
        using var model = ModelZoo.Create(spec);
        Checkpoint.Load(model, checkpoint);
        var result = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.data<float>().ToArray());
        foreach (var (name, buffer) in model.named_buffers().Where(b => b.buffer.dtype == torch.ScalarType.Float32)) result[name] = buffer.data<float>().ToArray();
        return result;
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Fine_tuning_the_shipped_model_with_frozen_batch_norm_and_a_frozen_first_layer_writes_the_run_directory_and_finetune_json()
    {
        var outDir = Path.Combine(_dir, "ft");
        var (code, error) = Run("finetune", "--from", Shipped, "--shift", "noise:0.5,rotate:20", "--bn-mode", "frozen", "--freeze", @"^layers\.0\.linear$",
            "--steps", "40", "--record-every", "10", "--log-every", "20", "--train-limit", "2000", "--test-limit", "500", "--out", outDir);
        Assert.True(code == 0, error);
        foreach (var file in new[] { "config.json", "model.json", "metrics.jsonl", "training.jsonl", "log.clef", "checkpoint.bin", "summary.json", FineTuneReport.FileName })
            Assert.True(File.Exists(Path.Combine(outDir, file)), file);

        var report = FineTuneReport.Load(Path.Combine(outDir, FineTuneReport.FileName));
        Assert.Equal(["layers.0.linear.weight"], report.FrozenParameters);
        Assert.Equal(["layers.0.norm", "layers.1.norm"], report.BatchNormLayers);
        Assert.True(report.Before.TargetAccuracy < report.Before.SourceAccuracy - 0.2, $"the shift costs accuracy: {report.Before}");
        Assert.NotNull(report.After);
        Assert.True(report.After!.TargetAccuracy > report.Before.TargetAccuracy, $"fine-tuning helps on the target: {report.Before} -> {report.After}");
        Assert.Equal([20L, 40L], report.Evaluations.Select(e => e.Step));
        Assert.Equal(report.After.TargetAccuracy, report.Evaluations[^1].TargetAccuracy);
        Assert.NotEmpty(report.Layers);
        Assert.All(report.Layers, l => Assert.Equal(0, l.FirstStep));
        Assert.All(report.Layers, l => Assert.Equal(30, l.LastStep));

        // Every record carries ref_shift, and finetune.json's first/last values are those of the metrics file.
        var lines = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal([0L, 10, 20, 30], lines.Select(l => l.GetProperty("step").GetInt64()).Distinct());
        Assert.All(lines, l => Assert.Equal(JsonValueKind.Object, l.GetProperty("reference_shift").ValueKind));
        var head = report.Layers.Single(l => l.Layer == "head");
        var headLast = lines.Last(l => l.GetProperty("layer").GetString() == "head").GetProperty("reference_shift");
        Assert.Equal(head.Last.KlDivergence, headLast.GetProperty("kl_divergence").GetDouble(), 9);

        // Frozen weights and the (frozen) batch-norm statistics are bit-identical to the source model's; the rest moved.
        var source = State(Path.Combine(Shipped, "checkpoint.bin"));
        var tuned = State(Path.Combine(outDir, "checkpoint.bin"));
        Assert.Equal(source["layers.0.linear.weight"], tuned["layers.0.linear.weight"]);
        foreach (var key in source.Keys.Where(k => k.Contains("running_", StringComparison.Ordinal))) Assert.Equal(source[key], tuned[key]);
        Assert.NotEqual(source["head.weight"], tuned["head.weight"]);

        // The run is finished: resuming it does nothing.
        (code, error) = Run("finetune", "--resume", outDir);
        Assert.True(code == 0, error);
    }

    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("--freeze", "^conv", "--freeze '^conv' matches no layer")]
    [InlineData("--shift", "noise:0.5,sharpen:1", "unknown shift 'sharpen'")]
    [InlineData("--bn-mode", "adaptive", "--bn-mode 'adaptive' is not valid")]
    [InlineData("--freeze", ".*", "--freeze '.*' matches every layer with parameters (head, layers.0.linear, layers.0.norm, layers.1.linear, layers.1.norm), so nothing would be trained")]
    [InlineData("--model", "cnn", "--model does not apply to --from (the model and the source data set come from the run's config.json); drop it")]
    [InlineData("--width", "8", "--width does not apply to --from")]
    public void User_mistakes_give_one_error_line_exit_2_and_write_nothing(string flag, string value, string message)
    {
        var outDir = Path.Combine(_dir, "bad");
        var (code, error) = Run("finetune", "--from", Shipped, flag, value, "--steps", "5", "--train-limit", "256", "--test-limit", "100", "--out", outDir);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error, StringComparison.Ordinal);
        Assert.Contains(message, error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));
        Assert.False(Directory.Exists(outDir), "nothing is written to --out");
    }

    [Fact]
    public void Exactly_one_source_and_a_model_with_a_checkpoint_are_required()
    {
        var outDir = Path.Combine(_dir, "bad");
        var (code, error) = Run("finetune", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("exactly one of --from RUN_DIR and --checkpoint FILE", error, StringComparison.Ordinal);
        (code, error) = Run("finetune", "--checkpoint", Path.Combine(Shipped, "checkpoint.bin"), "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("--checkpoint needs --model", error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(outDir));
    }
}
