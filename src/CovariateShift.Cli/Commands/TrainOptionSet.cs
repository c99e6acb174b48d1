using System.CommandLine;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// The training options of <c>covshift train</c>, reusable by other commands (fine-tuning adds its own flags on top):
/// <see cref="AddTo"/> puts them on a command, <see cref="Read"/> turns a parse result into <see cref="TrainSettings"/>.
/// Every number is parsed culture-invariantly and range-checked (see <see cref="CliNumbers"/>).
/// </summary>
public sealed class TrainOptionSet
{
    /// <summary>--model.</summary>
    public Option<string> Model { get; } = new("--model") { Description = $"Zoo model ({string.Join(", ", ModelZoo.Names)}) or the path of a .json model spec (see models/).", DefaultValueFactory = _ => "mlp" };

    /// <summary>--norm (several: one run each).</summary>
    public Option<string[]> Norm { get; } = new("--norm") { Description = $"Normalization: {string.Join(", ", NormKinds.CliNames)}. Several (e.g. --norm none batch) train one run each into --out/<norm> and print a comparison. Default: none for a zoo model, the spec's for a .json spec.", AllowMultipleArgumentsPerToken = true };

    /// <summary>--depth.</summary>
    public Option<int?> Depth { get; } = CliNumbers.OptionalInt("--depth", $"Hidden layers (mlp) or conv layers (cnn). Zoo default: mlp {ModelSpecResolver.DefaultMlpDepth}, cnn {ModelSpecResolver.DefaultCnnDepth}.", 1);

    /// <summary>--width.</summary>
    public Option<int?> Width { get; } = CliNumbers.OptionalInt("--width", $"Units per hidden layer (mlp) or base width (cnn). Zoo default: mlp {ModelSpecResolver.DefaultMlpWidth}, cnn {ModelSpecResolver.DefaultCnnWidth}.", 1);

    /// <summary>--activation.</summary>
    public Option<string?> Activation { get; } = new("--activation") { Description = $"Hidden nonlinearity: {string.Join(", ", ActivationKinds.CliNames)}. Zoo default: relu." };

    /// <summary>--init.</summary>
    public Option<string?> Init { get; } = new("--init") { Description = $"Weight init: {string.Join(", ", WeightInit.CliForms)}. Zoo default: he (xavier for sigmoid/tanh)." };

    /// <summary>--norm-placement.</summary>
    public Option<string?> Placement { get; } = new("--norm-placement") { Description = $"Normalization {string.Join(" or ", NormPlacements.CliNames)} the activation. Zoo default: before." };

    /// <summary>--groups.</summary>
    public Option<int?> Groups { get; } = CliNumbers.OptionalInt("--groups", "Group count of group / weight-std normalization (must divide every normalized layer's channels).", 1);

    /// <summary>--dataset.</summary>
    public Option<string> Dataset { get; } = new("--dataset") { Description = $"Data set: {string.Join(", ", Datasets.Names)}.", DefaultValueFactory = _ => "fashion-mnist" };

    /// <summary>--data-dir.</summary>
    public Option<string?> DataDir { get; } = new("--data-dir") { Description = $"Directory of the data files (mnist: the four idx files; cifar10: data_batch_1..5.bin, test_batch.bin). fashion-mnist default: ${MnistFormat.FashionMnistVariable} or {MnistFormat.DefaultFashionMnistDirectory}." };

    /// <summary>--label-column.</summary>
    public Option<string?> LabelColumn { get; } = new("--label-column") { Description = "csv: the column holding the class; every other numeric column is a feature." };

    /// <summary>--test-fraction.</summary>
    public Option<double?> TestFraction { get; } = CliNumbers.OptionalFloat("--test-fraction", "csv: fraction of the rows held out for testing (seeded split). Default 0.2.", 0, true, 1, true);

    /// <summary>--train-limit.</summary>
    public Option<int?> TrainLimit { get; } = CliNumbers.OptionalInt("--train-limit", "Use only the first N training examples. Default: all.", 1);

    /// <summary>--test-limit.</summary>
    public Option<int?> TestLimit { get; } = CliNumbers.OptionalInt("--test-limit", "Evaluate on only the first N test examples. Default: all.", 1);

    /// <summary>--steps.</summary>
    public Option<int> Steps { get; } = CliNumbers.WholeNumber("--steps", "Optimizer steps (epochs repeat as needed); ignored with --epochs.", 500, 1);

    /// <summary>--epochs.</summary>
    public Option<int?> Epochs { get; } = CliNumbers.OptionalInt("--epochs", "Train for N epochs (passes over the training set) instead of --steps.", 1);

    /// <summary>--batch-size.</summary>
    public Option<int> BatchSize { get; } = CliNumbers.WholeNumber("--batch-size", "Mini-batch size.", 128, 1);

    /// <summary>--optimizer.</summary>
    public Option<string> Optimizer { get; } = new("--optimizer") { Description = $"Optimizer: {string.Join(", ", OptimizationNames.Optimizers)}.", DefaultValueFactory = _ => "sgd" };

    /// <summary>--lr.</summary>
    public Option<double> LearningRate { get; } = CliNumbers.Number("--lr", "Base learning rate.", 0.01, 0, true, float.MaxValue);

    /// <summary>--momentum.</summary>
    public Option<double> Momentum { get; } = CliNumbers.Number("--momentum", "SGD momentum, in [0, 1).", 0.9, 0, false, 1, maxExclusive: true);

    /// <summary>--nesterov.</summary>
    public Option<bool> Nesterov { get; } = new("--nesterov") { Description = "SGD: Nesterov momentum." };

    /// <summary>--weight-decay.</summary>
    public Option<double> WeightDecay { get; } = CliNumbers.Number("--weight-decay", "Weight decay, >= 0 (L2 for sgd and adam, decoupled for adamw).", 0.0, 0, false, float.MaxValue);

    /// <summary>--schedule.</summary>
    public Option<string> Schedule { get; } = new("--schedule") { Description = $"Learning-rate schedule: {string.Join(", ", OptimizationNames.Schedules)}.", DefaultValueFactory = _ => "constant" };

    /// <summary>--warmup-steps.</summary>
    public Option<int> WarmupSteps { get; } = CliNumbers.WholeNumber("--warmup-steps", "Linear warm-up steps before the schedule.", 0, 0);

    /// <summary>--step-every.</summary>
    public Option<int> StepEvery { get; } = CliNumbers.WholeNumber("--step-every", "step schedule: multiply the rate by --step-factor every K epochs.", 10, 1);

    /// <summary>--step-factor.</summary>
    public Option<double> StepFactor { get; } = CliNumbers.Number("--step-factor", "step schedule: the factor, in (0, 1].", 0.1, 0, true, 1);

    /// <summary>--record-every.</summary>
    public Option<int> RecordEvery { get; } = CliNumbers.WholeNumber("--record-every", "The monitor records every K-th step.", 10, 1);

    /// <summary>--overhead-budget.</summary>
    public Option<double?> OverheadBudget { get; } = CliNumbers.OptionalFloat("--overhead-budget", "The share of the step time the monitor may take, e.g. 0.02: it records every --record-every x 2^k steps, adapting k to stay under it. Default: off.", 0, true, 1, true);

    /// <summary>--eval-every.</summary>
    public Option<int> EvalEvery { get; } = CliNumbers.WholeNumber("--eval-every", "Also evaluate on the test set every K steps (it is evaluated every epoch and at the end anyway); 0 = off.", 0, 0);

    /// <summary>--log-every.</summary>
    public Option<int> LogEvery { get; } = CliNumbers.WholeNumber("--log-every", "Write the training loss (mean since the last line) to training.jsonl every K steps.", 50, 1);

    /// <summary>--log-layers.</summary>
    public Option<bool> LogLayers { get; } = new("--log-layers") { Description = "Also write the monitor's per-layer Debug events to log.clef (about 1 KB per layer per record; metrics.jsonl has the same values)." };

    /// <summary>--keep-checkpoints.</summary>
    public Option<int> KeepCheckpoints { get; } = CliNumbers.WholeNumber("--keep-checkpoints", "Keep the newest K per-epoch checkpoints (checkpoints/epoch-NNNN) besides checkpoints/last.", 0, 0);

    /// <summary>--seed.</summary>
    public Option<int> Seed { get; } = CliNumbers.WholeNumber("--seed", "Seed of the initialization and the shuffling.", 0, int.MinValue);

    /// <summary>--device.</summary>
    public Option<string> Device { get; } = new("--device") { Description = "auto, cpu or cuda.", DefaultValueFactory = _ => "auto" };

    /// <summary>--out.</summary>
    public Option<string?> Out { get; } = new("--out") { Description = "Run directory (created; an existing non-empty one needs --resume or --overwrite)." };

    /// <summary>--resume.</summary>
    public Option<string?> Resume { get; } = new("--resume") { Description = "Continue the run in DIR from checkpoints/last (its config.json gives every setting)." };

    /// <summary>--overwrite.</summary>
    public Option<bool> Overwrite { get; } = new("--overwrite") { Description = "Clear an existing run directory in --out first." };

    /// <summary>--allow-divergence.</summary>
    public Option<bool> AllowDivergence { get; } = new("--allow-divergence") { Description = $"Exit 0 instead of {TrainCommand.DivergedExitCode} when a run's loss became NaN or infinite." };

    /// <summary>--forecast.</summary>
    public Option<bool> Forecast { get; } = new("--forecast") { Description = "Run the divergence forecaster: a warning (log.clef, console) and a line in forecast.jsonl when the run is predicted to diverge; the first warning step goes into summary.json." };

    /// <summary>--on-forecast.</summary>
    public Option<string?> OnForecast { get; } = new("--on-forecast") { Description = $"What a forecast warning does: warn (log it and go on) or stop (save checkpoints/last and exit {TrainCommand.ForecastStopExitCode}). Implies --forecast. Default: warn. --resume of a forecasting run goes on forecasting, with warnings only." };

    /// <summary>Every option, in help order.</summary>
    public IReadOnlyList<Option> All =>
    [
        Model, Norm, Depth, Width, Activation, Init, Placement, Groups, Dataset, DataDir, LabelColumn, TestFraction, TrainLimit, TestLimit,
        Steps, Epochs, BatchSize, Optimizer, LearningRate, Momentum, Nesterov, WeightDecay, Schedule, WarmupSteps, StepEvery, StepFactor,
        RecordEvery, OverheadBudget, EvalEvery, LogEvery, LogLayers, KeepCheckpoints, Seed, Device, Out, Resume, Overwrite, AllowDivergence, Forecast, OnForecast,
    ];

    /// <summary>Adds every option to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        foreach (var o in All) command.Options.Add(o);
    }

    /// <summary>The options the user gave explicitly (not defaults).</summary>
    public IReadOnlyList<string> Given(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        return All.Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
    }

    /// <summary>
    /// The settings of a new run (not --resume): names, combinations and numbers checked; the model specs resolved
    /// against the data set's example shape and class count (<paramref name="exampleShape"/>, <paramref name="classes"/>).
    /// Reads no data and writes nothing.
    /// </summary>
    /// <exception cref="ArgumentException">A user mistake; the message names the option and what is expected.</exception>
    public TrainSettings Read(ParseResult parse, DatasetSpec dataset, IReadOnlyList<long> exampleShape, int classes)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var norms = (parse.GetValue(Norm) ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(NormKinds.Parse).Distinct().Select(k => (NormKind?)k).DefaultIfEmpty(null).ToList();
        var overrides = new ModelOverrides
        {
            Depth = parse.GetValue(Depth),
            Width = parse.GetValue(Width),
            Activation = parse.GetValue(Activation) is { } a ? ActivationKinds.Parse(a) : null,
            Init = parse.GetValue(Init) is { } i ? WeightInit.Parse(i) : null,
            NormPlacement = parse.GetValue(Placement) is { } p ? NormPlacements.Parse(p) : null,
            Groups = parse.GetValue(Groups),
        };
        var modelArg = parse.GetValue(Model)!;
        var specs = norms.Select(n => ModelSpecResolver.Resolve(modelArg, overrides with { Norm = n }, exampleShape, classes)).ToList();
        var optimizer = OptimizationNames.ParseOptimizer(parse.GetValue(Optimizer)!);
        if (parse.GetValue(Nesterov) && optimizer != OptimizerKind.Sgd) throw new ArgumentException($"--nesterov applies only to --optimizer sgd; got --optimizer {optimizer.ToCliName()}.");
        if (parse.GetValue(Nesterov) && parse.GetValue(Momentum) <= 0) throw new ArgumentException("--nesterov needs --momentum > 0.");
        var options = new TrainerOptions
        {
            Steps = parse.GetValue(Steps),
            Epochs = parse.GetValue(Epochs),
            BatchSize = parse.GetValue(BatchSize),
            Optimizer = optimizer,
            LearningRate = parse.GetValue(LearningRate),
            Momentum = parse.GetValue(Momentum),
            Nesterov = parse.GetValue(Nesterov),
            WeightDecay = parse.GetValue(WeightDecay),
            Schedule = new LearningRateSchedule
            {
                Kind = OptimizationNames.ParseSchedule(parse.GetValue(Schedule)!),
                WarmupSteps = parse.GetValue(WarmupSteps),
                StepEveryEpochs = parse.GetValue(StepEvery),
                StepFactor = parse.GetValue(StepFactor),
            },
            Seed = parse.GetValue(Seed),
            RecordEvery = parse.GetValue(RecordEvery),
            OverheadBudget = parse.GetValue(OverheadBudget),
            EvaluateEvery = parse.GetValue(EvalEvery),
            EvaluateEveryEpoch = true,
            LogEvery = parse.GetValue(LogEvery),
            KeepCheckpoints = parse.GetValue(KeepCheckpoints),
        };
        var onForecast = parse.GetValue(OnForecast)?.Trim().ToLowerInvariant();
        if (onForecast is not (null or "warn" or "stop")) throw new ArgumentException($"--on-forecast must be warn or stop; got '{parse.GetValue(OnForecast)}'.");
        if (parse.GetValue(Forecast) || onForecast is not null)
            options = options with { Monitor = new MonitorOptions { Forecast = new CovariateShift.Forecast.ForecastOptions() }, StopOnForecast = onForecast == "stop" };
        options.Validate();
        var mode = parse.GetValue(Overwrite) ? RunDirectoryMode.Overwrite : RunDirectoryMode.New;
        return new TrainSettings(modelArg, specs, dataset, options, parse.GetValue(AllowDivergence), mode);
    }

    /// <summary>The data set of the parse result (no file is read).</summary>
    public DatasetSpec ReadDataset(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        return Datasets.Parse(parse.GetValue(Dataset)!, parse.GetValue(DataDir), parse.GetValue(TrainLimit), parse.GetValue(TestLimit), parse.GetValue(LabelColumn), parse.GetValue(TestFraction));
    }
}

/// <summary>What <c>covshift train</c> runs: one model spec per --norm, the data set, the trainer options.</summary>
/// <param name="ModelArgument">The --model argument as given.</param>
/// <param name="Specs">One spec per run.</param>
/// <param name="Dataset">The data set.</param>
/// <param name="Options">Trainer options (no logger, output or device yet).</param>
/// <param name="AllowDivergence">--allow-divergence.</param>
/// <param name="Mode">New run or --overwrite.</param>
public sealed record TrainSettings(string ModelArgument, IReadOnlyList<ModelSpec> Specs, DatasetSpec Dataset, TrainerOptions Options, bool AllowDivergence, RunDirectoryMode Mode);
