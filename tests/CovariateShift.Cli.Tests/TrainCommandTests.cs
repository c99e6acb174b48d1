using System.Text.Json;
using CovariateShift.Cli.Commands;
using CovariateShift.Nn.Checkpoints;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Sinks;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;
using TorchSharp;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// <c>covshift train</c> run in-process through <see cref="CliApp.Run"/>, and the spec resolution behind its flags.
/// The tests redirect <see cref="Console.Error"/>, so they run alone (no other test class runs in parallel with them).
/// </summary>
[CollectionDefinition(nameof(TrainCommandTests), DisableParallelization = true)]
[Collection(nameof(TrainCommandTests))]
public sealed class TrainCommandTests : IDisposable
{
    private static readonly long[] Shape = [1, 28, 28];
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-traincmd-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Error) Run(params string[] args)
    {
        var error = new StringWriter();
        var previous = Console.Error;
        Console.SetError(error);
        try
        {
            return (CliApp.Run(args), error.ToString());
        }
        finally
        {
            Console.SetError(previous);
        }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Several_norms_train_one_run_each_and_print_a_comparison_computed_from_their_metrics()
    {
        var outDir = Path.Combine(_dir, "compare");
        var output = new StringWriter();
        var previous = Console.Out;
        Console.SetOut(output);
        (int Code, string Error) result;
        try
        {
            result = Run("train", "--steps", "30", "--batch-size", "32", "--record-every", "5", "--model", "mlp", "--depth", "3", "--width", "32",
                "--test-limit", "500", "--norm", "none", "batch", "--out", outDir);
        }
        finally
        {
            Console.SetOut(previous);
        }
        Assert.True(result.Code == 0, result.Error);
        foreach (var norm in new[] { "none", "batch" })
        {
            var runDir = Path.Combine(outDir, norm);
            Assert.Equal(norm, ModelSpec.Load(Path.Combine(runDir, "model.json")).Norm.ToCliName());
            var rows = CovariateShift.Schema.MetricsReader.Read(Path.Combine(runDir, "metrics.jsonl")).Layers;
            var hidden = CovariateShift.Training.Analysis.ShiftSummary.Compute(rows, r => r.Layer.EndsWith(".act", StringComparison.Ordinal));
            Assert.Equal(["layers.0.act", "layers.1.act", "layers.2.act"], hidden.Layers);
            Assert.Equal(3 * 5, hidden.Records);   // records at steps 5..25 have a shift; step 0 does not
            // Independent check of one column: mean over rows of JS, read straight from the JSON lines.
            var js = File.ReadAllLines(Path.Combine(runDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
                .Where(e => e.GetProperty("layer").GetString()!.EndsWith(".act", StringComparison.Ordinal) && e.GetProperty("shift").ValueKind == JsonValueKind.Object)
                .Select(e => JsonLinesSink.ReadNumber(e.GetProperty("shift").GetProperty("jensen_shannon"))).Average();
            Assert.Equal(js, hidden.MeanJensenShannon, 12);
            var accuracy = JsonDocument.Parse(File.ReadAllText(Path.Combine(runDir, "summary.json"))).RootElement.GetProperty("test_accuracy").GetDouble();
            var line = output.ToString().Split('\n').Single(l => l.StartsWith($"| {norm} |", StringComparison.Ordinal));
            Assert.Contains(accuracy.ToString("F4", System.Globalization.CultureInfo.InvariantCulture), line);
            Assert.Contains(hidden.MeanJensenShannon.ToString("F4", System.Globalization.CultureInfo.InvariantCulture), line);
        }
    }

    [Fact]
    public void A_tiny_run_writes_metrics_log_spec_checkpoint_and_summary_that_agree_with_each_other()
    {
        var outDir = Path.Combine(_dir, "run", "a");   // two levels that do not exist yet
        var (code, error) = Run("train", "--steps", "20", "--batch-size", "32", "--record-every", "5", "--model", "mlp", "--depth", "2", "--width", "32",
            "--test-limit", "2000", "--seed", "3", "--log-layers", "--out", outDir);
        Assert.True(code == 0, error);
        Assert.Equal("", error);
        Assert.Equal([".lock", "checkpoint.bin", "config.json", "log.clef", "metrics.jsonl", "model.json", "summary.json", "training.jsonl"],
            Directory.GetFiles(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(["last"], Directory.GetFiles(Path.Combine(outDir, "checkpoints")).Select(Path.GetFileName));
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(outDir, "tensorboard")));

        // model.json: the zoo default with the flags applied, input shape from the data set.
        var spec = ModelSpec.Load(Path.Combine(outDir, "model.json"));
        Assert.Equal("mlp", spec.Architecture);
        Assert.Equal(Shape, spec.InputShape);
        Assert.Equal((2, 32, 10), (spec.Depth, spec.Width, spec.Classes));
        Assert.Equal((ActivationKind.Relu, NormKind.None, "he"), (spec.Activation, spec.Norm, spec.Init.ToCliName()));

        // metrics.jsonl: steps 0, 5, 10, 15 × the five layers, each a JSON object with step, layer and statistics of a 32-example batch.
        string[] layers = ["layers.0.linear", "layers.0.act", "layers.1.linear", "layers.1.act", "head"];
        var lines = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(4 * layers.Length, lines.Count);
        Assert.Equal([0L, 5, 10, 15], lines.Select(l => l.GetProperty("step").GetInt64()).Distinct());
        Assert.Equal(Enumerable.Repeat(layers, 4).SelectMany(x => x), lines.Select(l => l.GetProperty("layer").GetString()));
        foreach (var l in lines)
        {
            var layer = l.GetProperty("layer").GetString()!;
            double mean = JsonLinesSink.ReadNumber(l.GetProperty("mean")), min = JsonLinesSink.ReadNumber(l.GetProperty("min"));
            Assert.Equal(layer == "head" ? 32 * 10 : 32 * 32, l.GetProperty("count").GetInt64());
            Assert.InRange(mean, min, JsonLinesSink.ReadNumber(l.GetProperty("max")));
            if (layer.EndsWith("act", StringComparison.Ordinal)) Assert.True(min >= 0 && mean > 0, $"{layer}: ReLU output min {min}, mean {mean}");
        }

        // summary.json: the TrainResult.
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json")));
        var s = summary.RootElement;
        Assert.Equal(20, s.GetProperty("steps").GetInt32());
        Assert.Equal(20, s.GetProperty("requested_steps").GetInt32());
        Assert.Equal(20.0 * 32 / 60000, s.GetProperty("epochs").GetDouble(), 12);
        Assert.Equal(JsonValueKind.Null, s.GetProperty("diverged_at_step").ValueKind);
        Assert.Equal(Path.Combine(outDir, "metrics.jsonl"), s.GetProperty("metrics_path").GetString());
        double accuracy = s.GetProperty("test_accuracy").GetDouble(), testLoss = s.GetProperty("test_loss").GetDouble();
        Assert.InRange(s.GetProperty("final_train_loss").GetDouble(), 0.1, 2.5);
        Assert.True(accuracy > 0.3, $"test accuracy after 20 steps: {accuracy}");   // chance is 0.1; measured 0.63 on all 10,000 (seed 0)
        var evaluation = Assert.Single(s.GetProperty("evaluations").EnumerateArray());
        Assert.Equal(20, evaluation.GetProperty("step").GetInt32());
        Assert.Equal(2000, evaluation.GetProperty("examples").GetInt64());

        // checkpoint.bin holds the trained weights: loaded into a fresh model built from model.json it scores exactly the summary's accuracy.
        using var model = ModelZoo.Create(spec);
        Checkpoint.Load(model, Path.Combine(outDir, "checkpoint.bin"));
        using var test = MnistFormat.LoadFashionMnist(train: false, limit: 2000);
        var again = Trainer.Evaluate(model, test);
        Assert.Equal(accuracy, again.Accuracy, 12);
        Assert.Equal(testLoss, again.Loss, 6);

        // log.clef: compact JSON events, the monitor's per-layer Debug events included, and the final summary.
        var events = File.ReadAllLines(Path.Combine(outDir, "log.clef")).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.All(events, e => Assert.True(e.TryGetProperty("@t", out _) && e.TryGetProperty("@mt", out _)));
        var layerEvents = events.Where(e => e.TryGetProperty("@l", out var level) && level.GetString() == "Debug" && e.TryGetProperty("Layer", out _)
                                           && !e.TryGetProperty(LogProperties.Kind, out _)).ToList();   // the per-layer record events, not the per-layer anomaly detail
        Assert.Equal(4 * layers.Length, layerEvents.Count);
        var first = layerEvents[0];
        Assert.Equal("layers.0.linear", first.GetProperty("Layer").GetString());
        Assert.Equal(JsonLinesSink.ReadNumber(lines[0].GetProperty("mean")), first.GetProperty("Mean").GetDouble(), 12);
        Assert.Contains(events, e => e.GetProperty("@mt").GetString()!.StartsWith("Final test accuracy", StringComparison.Ordinal)
                                     && e.GetProperty("TestAccuracy").GetDouble() == accuracy);
    }

    [Fact]
    public void The_overhead_budget_is_kept_in_the_config_that_a_resume_reads()
    {
        foreach (var (name, flag, expected) in new[] { ("budget", new[] { "--overhead-budget", "0.05" }, (double?)0.05), ("off", Array.Empty<string>(), null) })
        {
            var outDir = Path.Combine(_dir, name);
            var (code, error) = Run(["train", "--dataset", "gaussian", "--steps", "4", "--batch-size", "16", "--record-every", "1", .. flag, "--out", outDir]);
            Assert.True(code == 0, error);
            var monitor = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "config.json"))).RootElement.GetProperty("monitor");
            var written = monitor.GetProperty("overhead_budget");
            Assert.Equal(expected, written.ValueKind == JsonValueKind.Null ? null : written.GetDouble());
            // What --resume builds its trainer from.
            Assert.Equal(expected, CovariateShift.Training.Runtime.RunConfig.Load(outDir).ToTrainerOptions().OverheadBudget);
        }

        // config.json of versions before the budget was kept (this run's file without the field) still loads: budget off.
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "budget", "config.json")))!;
        Assert.True(node["monitor"]!.AsObject().Remove("overhead_budget"));
        var earlier = Path.Combine(_dir, "earlier");
        Directory.CreateDirectory(earlier);
        File.WriteAllText(Path.Combine(earlier, "config.json"), node.ToJsonString());
        var loaded = CovariateShift.Training.Runtime.RunConfig.Load(earlier);
        Assert.Null(loaded.Monitor.OverheadBudget);
        Assert.Equal(1, loaded.Monitor.RecordEvery);
    }

    public static TheoryData<string[], string> BadInputs
    {
        get
        {
            var data = Cases();
            if (!torch.cuda.is_available()) data.Add(["--device", "cuda"], "CUDA is not available");
            return data;
        }
    }

    private static TheoryData<string[], string> Cases() => new()
    {
        { ["--norm", "bogus"], "Unknown normalization 'bogus'. Valid names: none, batch," },
        { ["--norm", "instance"], "instance normalization needs a spatial input" },
        { ["--norm", "group", "--groups", "7", "--width", "32"], "groups=7 does not divide the 32 channels" },
        { ["--groups", "4"], "groups=4 applies only to norm group or weight-std" },
        { ["--activation", "swish"], "Unknown activation 'swish'" },
        { ["--init", "gaussian:-1"], "Init 'gaussian:-1' needs a finite standard deviation > 0" },
        { ["--steps", "0"], "--steps must be at least 1; got 0." },
        { ["--depth", "0"], "--depth must be at least 1; got 0." },
        { ["--lr", "0"], "--lr must be in (0, " },
        { ["--lr", "1e300"], "--lr must be in (0, 3.4E+38]; got 1e300." },
        { ["--lr", "1e-320"], "--lr 1e-320 does not fit a float32 (the optimizers compute in float32); expected a magnitude of at least 1.18E-38." },
        { ["--weight-decay", "1e-320"], "--weight-decay 1e-320 does not fit a float32 (the optimizers compute in float32); expected 0 or a magnitude of at least 1.18E-38." },
        { ["--weight-decay", "1e308"], "--weight-decay must be in [0, 3.4E+38]; got 1e308." },
        { ["--lr=0,01"], "--lr '0,01' is not a number; expected a decimal number with '.' as the decimal point" },
        { ["--lr", "abc"], "--lr 'abc' is not a number" },
        { ["--steps", "abc"], "--steps 'abc' is not a whole number" },
        { ["--batch-size", "1.5"], "--batch-size '1.5' is not a whole number" },
        { ["--steps", "99999999999"], "--steps 99999999999 is out of range; expected a whole number from 1 to 2147483647." },
        { ["--steps", "99999999999999999999"], "--steps 99999999999999999999 is out of range; expected a whole number from 1 to 2147483647." },
        { ["--optimizer", "rmsprop"], "Unknown optimizer 'rmsprop'; expected one of sgd, adam, adamw." },
        { ["--schedule", "linear"], "Unknown schedule 'linear'; expected one of constant, step, cosine." },
        { ["--optimizer", "adam", "--nesterov"], "--nesterov applies only to --optimizer sgd" },
        { ["--dataset", "gaussian", "--model", "cnn"], "Model cnn takes images [C, H, W], but the data set's examples are feature vectors [16]; use --model mlp" },
        { ["--dataset", "csv:/nonexistent.csv", "--label-column", "y"], "CSV file '/nonexistent.csv' does not exist" },
        { ["--dataset", "csv:/x.csv"], "needs --label-column NAME" },
        { ["--width", "2000000000"], "parameters; expected at most 1.07E+09 (it could not be allocated)" },
        { ["--momentum", "1"], "--momentum must be in [0, 1); got 1." },
        { ["--overhead-budget", "0"], "--overhead-budget must be in (0, 1); got 0." },
        { ["--overhead-budget", "1"], "--overhead-budget must be in (0, 1); got 1." },
        { ["--dataset", "cifar10"], "--dataset cifar10 needs --data-dir DIR" },
        { ["--dataset", "imagenet"], "--dataset 'imagenet' is not supported; valid values: fashion-mnist, mnist, cifar10, csv:PATH, gaussian." },
        { ["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "CIFAR-10 directory '/nonexistent/cifar' does not exist" },
        { ["--model", "nosuch"], "Unknown model 'nosuch'. Expected a zoo name (mlp, cnn, resnet20, resnet32, resnet56) or the path of a .json model spec." },
        { ["--model", "resnet20", "--width", "8"], "--depth/--width do not apply to resnet20" },
        { ["--batch-size", "500", "--train-limit", "200"], "--batch-size 500 is larger than the 200 training examples" },
        { ["--data-dir", "/nonexistent/fashion"], "Data directory '/nonexistent/fashion' does not exist" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void Bad_input_is_one_error_line_with_exit_code_2_and_nothing_in_out(string[] args, string expected)
    {
        var outDir = Path.Combine(_dir, "out");
        var (code, error) = Run(["train", .. args, .. args.Contains("--steps") ? Array.Empty<string>() : ["--steps", "2"], "--out", outDir]);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
        Assert.False(Directory.Exists(outDir), $"--out was created for bad input {string.Join(' ', args)}");
    }

    [Fact]
    public void Bad_spec_files_are_refused_naming_the_file_and_the_field()
    {
        var outDir = Path.Combine(_dir, "out");
        var unknownField = Path.Combine(_dir, "unknown-field.json");
        File.WriteAllText(unknownField, """{ "architecture": "mlp", "inputShape": [1, 28, 28], "depth": 2, "width": 8, "widht": 9 }""");
        var malformed = Path.Combine(_dir, "malformed.json");
        File.WriteAllText(malformed, """{ "architecture": "mlp", "inputShape": [1, 28 """);
        var wrongShape = Path.Combine(_dir, "cifar.json");
        File.WriteAllText(wrongShape, """{ "architecture": "cnn", "inputShape": [3, 32, 32], "depth": 4 }""");
        var missing = Path.Combine(_dir, "missing.json");
        foreach (var (path, expected) in new[]
        {
            (unknownField, "field 'widht'"),
            (malformed, $"Model spec '{malformed}'"),
            (wrongShape, "inputShape [3, 32, 32] does not fit the data set's examples [1, 28, 28]"),
            (missing, $"Model spec file '{missing}' does not exist"),
        })
        {
            var (code, error) = Run("train", "--model", path, "--out", outDir);
            Assert.Equal(2, code);
            Assert.Contains(expected, error);
            Assert.False(Directory.Exists(outDir));
        }
    }

    [Fact]
    public void An_out_path_that_is_a_file_or_cannot_be_created_is_refused_and_left_as_it_was()
    {
        var file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "keep me");
        var (code, error) = Run("train", "--out", file);
        Assert.Equal(2, code);
        Assert.Contains($"--out '{file}' is an existing file", error);
        Assert.Equal("keep me", File.ReadAllText(file));

        (code, error) = Run("train", "--out", Path.Combine(file, "sub"));
        Assert.Equal(2, code);
        Assert.Contains($"'{file}' is a file, not a directory", error);
        Assert.Equal("keep me", File.ReadAllText(file));

        (code, error) = Run("train", "--steps", "1");
        Assert.Equal(2, code);
        Assert.Equal("error: Option '--out' is required (or --resume DIR to continue a run).", error.TrimEnd());

        // An existing directory stays empty when the input is bad.
        var existing = Directory.CreateDirectory(Path.Combine(_dir, "existing")).FullName;
        (code, _) = Run("train", "--norm", "instance", "--out", existing);
        Assert.Equal(2, code);
        Assert.Empty(Directory.EnumerateFileSystemEntries(existing));

        if (OperatingSystem.IsLinux())
        {
            // Valid everything, but the directory cannot be made (procfs): refused after loading the data, before writing anything.
            var proc = $"/proc/covshift-{Guid.NewGuid():N}/out";
            (code, error) = Run("train", "--train-limit", "200", "--test-limit", "100", "--batch-size", "32", "--out", proc);
            Assert.Equal(2, code);
            Assert.Contains($"Cannot write to --out '{proc}'", error);
            Assert.False(Directory.Exists(proc));
        }
    }

    [Fact]
    public void Zoo_defaults_follow_the_data_set_and_the_activation()
    {
        var mlp = ModelSpecResolver.Resolve("MLP", new ModelOverrides(), Shape, 10);
        Assert.Equal(("mlp", 8, 256, "he", NormKind.None), (mlp.Architecture, mlp.Depth, mlp.Width, mlp.Init.ToCliName(), mlp.Norm));
        Assert.Equal(Shape, mlp.InputShape);
        var sigmoid = ModelSpecResolver.Resolve("mlp", new ModelOverrides { Activation = ActivationKind.Sigmoid }, Shape, 10);
        Assert.Equal("xavier", sigmoid.Init.ToCliName());
        var lecun = ModelSpecResolver.Resolve("mlp", new ModelOverrides { Activation = ActivationKind.Tanh, Init = WeightInit.Lecun }, Shape, 10);
        Assert.Equal("lecun", lecun.Init.ToCliName());
        var cnn = ModelSpecResolver.Resolve("cnn", new ModelOverrides { Norm = NormKind.Group, Groups = 8 }, Shape, 10);
        Assert.Equal((4, 32, NormKind.Group, 8), (cnn.Depth, cnn.Width, cnn.Norm, cnn.Groups));
        var resnet = ModelSpecResolver.Resolve("resnet20", new ModelOverrides { Norm = NormKind.Batch }, Shape, 10);
        Assert.Equal((null, null), (resnet.Depth, resnet.Width));
        using var built = ModelZoo.Create(resnet);   // a valid resnet spec
    }

    [Fact]
    public void Flags_override_the_fields_of_a_spec_file()
    {
        // models/bn-paper-mnist-sigmoid-batch.json: widths [100, 100, 100], sigmoid, gaussian:0.01, batch norm.
        var path = Path.Combine(_dir, "paper.json");
        File.WriteAllText(path, """
            { "architecture": "mlp", "inputShape": [1, 28, 28], "classes": 10, "widths": [100, 100, 100],
              "activation": "sigmoid", "init": "gaussian:0.01", "norm": "group", "groups": 4 }
            """);
        var kept = ModelSpecResolver.Resolve(path, new ModelOverrides(), Shape, 10);
        Assert.Equal([100, 100, 100], kept.Widths!);
        Assert.Equal(("gaussian:0.01", NormKind.Group, 4), (kept.Init.ToCliName(), kept.Norm, kept.Groups));

        var deeper = ModelSpecResolver.Resolve(path, new ModelOverrides { Depth = 5, Norm = NormKind.Batch }, Shape, 10);
        Assert.Equal((null, 5, 100), (deeper.Widths, deeper.Depth, deeper.Width));
        Assert.Equal((NormKind.Batch, (int?)null, ActivationKind.Sigmoid), (deeper.Norm, deeper.Groups, deeper.Activation));   // the group count went with the group norm
        var wider = ModelSpecResolver.Resolve(path, new ModelOverrides { Width = 64 }, Shape, 10);
        Assert.Equal((3, 64), (wider.Depth, wider.Width));

        var flat = Path.Combine(_dir, "flat.json");
        File.WriteAllText(flat, """{ "architecture": "mlp", "inputShape": [784], "depth": 1, "width": 16 }""");
        Assert.Equal([784L], ModelSpecResolver.Resolve(flat, new ModelOverrides(), Shape, 10).InputShape);

        var three = Path.Combine(_dir, "three.json");
        File.WriteAllText(three, """{ "architecture": "mlp", "inputShape": [1, 28, 28], "classes": 3, "depth": 1, "width": 16 }""");
        var e = Assert.Throws<ArgumentException>(() => ModelSpecResolver.Resolve(three, new ModelOverrides(), Shape, 10));
        Assert.Contains("classes 3 does not match the data set's 10 classes", e.Message);

        var uneven = Path.Combine(_dir, "uneven.json");
        File.WriteAllText(uneven, """{ "architecture": "mlp", "inputShape": [1, 28, 28], "widths": [64, 32] }""");
        var u = Assert.Throws<ArgumentException>(() => ModelSpecResolver.Resolve(uneven, new ModelOverrides { Depth = 4 }, Shape, 10));
        Assert.Contains("per-layer widths [64, 32]; with --depth 4 give --width too", u.Message);
    }
}
