using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using CovariateShift.Nn.Models;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;

namespace CovariateShift.Training.Runtime;

/// <summary>The <c>optimizer</c> object of config.json.</summary>
/// <param name="Name">sgd, adam or adamw.</param>
/// <param name="LearningRate">Base learning rate.</param>
/// <param name="Momentum">SGD momentum.</param>
/// <param name="Nesterov">SGD Nesterov momentum.</param>
/// <param name="WeightDecay">Weight decay (L2 for sgd/adam, decoupled for adamw).</param>
/// <param name="Beta1">Adam/AdamW beta1.</param>
/// <param name="Beta2">Adam/AdamW beta2.</param>
/// <param name="Eps">Adam/AdamW epsilon.</param>
public sealed record OptimizerConfig(string Name, double LearningRate, double Momentum, bool Nesterov, double WeightDecay, double Beta1, double Beta2, double Eps);

/// <summary>The <c>schedule</c> object of config.json.</summary>
/// <param name="Name">constant, step or cosine.</param>
/// <param name="WarmupSteps">Linear warm-up steps.</param>
/// <param name="StepEveryEpochs">step: epochs between decays.</param>
/// <param name="StepFactor">step: the decay factor.</param>
public sealed record ScheduleConfig(string Name, int WarmupSteps, int StepEveryEpochs, double StepFactor);

/// <summary>The <c>training</c> object of config.json.</summary>
/// <param name="Steps">--steps (used when Epochs is null).</param>
/// <param name="Epochs">--epochs, or null.</param>
/// <param name="BatchSize">Mini-batch size.</param>
/// <param name="EvalEvery">Evaluate every K steps (0 = only every epoch and at the end).</param>
/// <param name="EvalBatchSize">Examples per evaluation batch.</param>
/// <param name="LogEvery">training.jsonl gets a train line every K steps.</param>
/// <param name="KeepCheckpoints">Per-epoch checkpoints kept.</param>
/// <param name="AllowDivergence">Exit 0 (not 3) when the loss became NaN/Inf.</param>
public sealed record TrainingConfig(int Steps, int? Epochs, int BatchSize, int EvalEvery, int EvalBatchSize, int LogEvery, int KeepCheckpoints, bool AllowDivergence);

/// <summary>The <c>monitor</c> object of config.json.</summary>
/// <param name="RecordEvery">The monitor records every K steps.</param>
/// <param name="HistogramBins">Histogram bins.</param>
/// <param name="SampleSize">Sampled elements per layer.</param>
/// <param name="TensorBoardHistogramEvery">TensorBoard histogram every K records.</param>
/// <param name="OverheadBudget">The monitor's overhead budget (<c>--overhead-budget</c>), or null (off; also in
/// config.json of versions before it was kept).</param>
public sealed record MonitorConfig(int RecordEvery, int HistogramBins, int SampleSize, int TensorBoardHistogramEvery, double? OverheadBudget = null);

/// <summary>
/// config.json of a run directory: the full resolved configuration, enough to rerun or resume the run with no other
/// input (<c>covshift train --resume DIR</c> reads only this and <c>checkpoints/last</c>).
/// </summary>
public sealed record RunConfig
{
    /// <summary>Name of the file in the run directory.</summary>
    public const string FileName = "config.json";

    /// <summary>The model spec (the same document as model.json).</summary>
    public required ModelSpec Model { get; init; }

    /// <summary>The data set and its location.</summary>
    public required DatasetSpec Dataset { get; init; }

    /// <summary>The optimizer.</summary>
    public required OptimizerConfig Optimizer { get; init; }

    /// <summary>The learning-rate schedule.</summary>
    public required ScheduleConfig Schedule { get; init; }

    /// <summary>Steps/epochs, batch size, evaluation and logging cadence, checkpoints.</summary>
    public required TrainingConfig Training { get; init; }

    /// <summary>Seed of the initialization, the shuffling (and the csv split / gaussian data).</summary>
    public long Seed { get; init; }

    /// <summary>How the monitor records.</summary>
    public required MonitorConfig Monitor { get; init; }

    /// <summary>The device the run was started on (cpu, cuda, cuda:N).</summary>
    public required string Device { get; init; }

    /// <summary>Versions: covshift, TorchSharp, .NET, OS.</summary>
    public IReadOnlyDictionary<string, string> Versions { get; init; } = CurrentVersions();

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,   // the run directory's one convention; Load also reads camelCase
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>The versions of this process: covshift, TorchSharp, .NET runtime, OS.</summary>
    public static IReadOnlyDictionary<string, string> CurrentVersions() => new SortedDictionary<string, string>(StringComparer.Ordinal)
    {
        ["covshift"] = typeof(RunConfig).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown",
        ["torchsharp"] = typeof(TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                         ?? typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString() ?? "unknown",
        ["dotnet"] = Environment.Version.ToString(),
        ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
    };

    /// <summary>The options of the <see cref="Trainer"/> this configuration describes (no logger, progress, output or device set).</summary>
    public TrainerOptions ToTrainerOptions() => new()
    {
        Steps = Training.Steps,
        Epochs = Training.Epochs,
        BatchSize = Training.BatchSize,
        LearningRate = Optimizer.LearningRate,
        Momentum = Optimizer.Momentum,
        Nesterov = Optimizer.Nesterov,
        WeightDecay = Optimizer.WeightDecay,
        Optimizer = OptimizationNames.ParseOptimizer(Optimizer.Name),
        Beta1 = Optimizer.Beta1,
        Beta2 = Optimizer.Beta2,
        AdamEpsilon = Optimizer.Eps,
        Schedule = new LearningRateSchedule
        {
            Kind = OptimizationNames.ParseSchedule(Schedule.Name),
            WarmupSteps = Schedule.WarmupSteps,
            StepEveryEpochs = Schedule.StepEveryEpochs,
            StepFactor = Schedule.StepFactor,
        },
        Seed = Seed,
        RecordEvery = Monitor.RecordEvery,
        OverheadBudget = Monitor.OverheadBudget,
        EvaluateEvery = Training.EvalEvery,
        EvaluationBatchSize = Training.EvalBatchSize,
        LogEvery = Training.LogEvery,
        KeepCheckpoints = Training.KeepCheckpoints,
        EvaluateEveryEpoch = true,
        Monitor = new MonitorOptions { HistogramBins = Monitor.HistogramBins, SampleSize = Monitor.SampleSize, TensorBoardHistogramEvery = Monitor.TensorBoardHistogramEvery },
    };

    /// <summary>The configuration of <paramref name="options"/> training <paramref name="model"/> on <paramref name="dataset"/>.</summary>
    public static RunConfig From(ModelSpec model, DatasetSpec dataset, TrainerOptions options, string device, bool allowDivergence)
    {
        ArgumentNullException.ThrowIfNull(options);
        var schedule = options.Schedule ?? new LearningRateSchedule();
        var monitor = options.Monitor ?? new MonitorOptions();
        return new RunConfig
        {
            Model = model,
            Dataset = dataset,
            Optimizer = new OptimizerConfig(options.Optimizer.ToCliName(), options.LearningRate, options.Momentum, options.Nesterov, options.WeightDecay, options.Beta1, options.Beta2, options.AdamEpsilon),
            Schedule = new ScheduleConfig(schedule.Kind.ToCliName(), schedule.WarmupSteps, schedule.StepEveryEpochs, schedule.StepFactor),
            Training = new TrainingConfig(options.Steps, options.Epochs, options.BatchSize, options.EvaluateEvery, options.EvaluationBatchSize, options.LogEvery, options.KeepCheckpoints, allowDivergence),
            Seed = options.Seed,
            Monitor = new MonitorConfig(options.RecordEvery, monitor.HistogramBins, monitor.SampleSize, monitor.TensorBoardHistogramEvery, options.OverheadBudget ?? monitor.OverheadBudget),
            Device = device,
        };
    }

    /// <summary>The configuration as indented snake_case JSON (the model as its spec document, as model.json).</summary>
    public string ToJson()
    {
        var node = JsonSerializer.SerializeToNode(this with { Model = Model }, JsonOptions)!.AsObject();
        node["model"] = JsonNode.Parse(Model.ToJson());
        return node.ToJsonString(JsonOptions);
    }

    /// <summary>Writes config.json to <paramref name="directory"/> atomically.</summary>
    public void Save(string directory) => SafeFile.WriteAtomic(Path.Combine(directory, FileName), ToJson() + "\n");

    /// <summary>Reads config.json from <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">There is none (not a run directory).</exception>
    /// <exception cref="InvalidDataException">It is not a valid configuration; the message names the file and the problem.</exception>
    public static RunConfig Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"'{directory}' is not a covshift run directory: it has no {FileName}.", path);
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new InvalidDataException($"'{path}' is not a JSON object.");
            var modelNode = root["model"] ?? throw new InvalidDataException($"'{path}' has no 'model'.");
            var model = ModelSpec.FromJson(modelNode.ToJsonString(), $"{path} (model)");
            root["model"] = null;
            ToSnakeCase(root);   // config.json of earlier versions has camelCase names
            var config = root.Deserialize<RunConfigDto>(JsonOptions) ?? throw new InvalidDataException($"'{path}' is empty.");
            return new RunConfig
            {
                Model = model,
                Dataset = config.Dataset ?? throw new InvalidDataException($"'{path}' has no 'dataset'."),
                Optimizer = config.Optimizer ?? throw new InvalidDataException($"'{path}' has no 'optimizer'."),
                Schedule = config.Schedule ?? throw new InvalidDataException($"'{path}' has no 'schedule'."),
                Training = config.Training ?? throw new InvalidDataException($"'{path}' has no 'training'."),
                Seed = config.Seed,
                Monitor = config.Monitor ?? throw new InvalidDataException($"'{path}' has no 'monitor'."),
                Device = config.Device ?? "cpu",
                Versions = config.Versions ?? new Dictionary<string, string>(),
            };
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid run configuration: {e.Message}", e);
        }
    }

    /// <summary>Renames every property of <paramref name="node"/> and the objects below it to snake_case (the
    /// version dictionary's keys are lower case already).</summary>
    private static void ToSnakeCase(JsonObject node)
    {
        foreach (var (name, value) in node.ToList())
        {
            if (value is JsonObject child) ToSnakeCase(child);
            var snake = JsonNamingPolicy.SnakeCaseLower.ConvertName(name);
            if (snake == name || node.ContainsKey(snake)) continue;
            node.Remove(name);
            node[snake] = value;
        }
    }

    private sealed record RunConfigDto(
        JsonNode? Model,
        DatasetSpec? Dataset,
        OptimizerConfig? Optimizer,
        ScheduleConfig? Schedule,
        TrainingConfig? Training,
        long Seed,
        MonitorConfig? Monitor,
        string? Device,
        Dictionary<string, string>? Versions);
}
