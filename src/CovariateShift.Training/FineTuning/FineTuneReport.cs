using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Records;

namespace CovariateShift.Training.FineTuning;

/// <summary>Accuracy on the source and the target test data at one point of a fine-tuning run.</summary>
/// <param name="Step">Fine-tuning steps done (0 = before the first).</param>
/// <param name="SourceAccuracy">Accuracy on the source test data.</param>
/// <param name="TargetAccuracy">Accuracy on the target test data.</param>
/// <param name="SourceLoss">Mean cross-entropy on the source test data.</param>
/// <param name="TargetLoss">Mean cross-entropy on the target test data.</param>
public sealed record DomainAccuracy(long Step, double SourceAccuracy, double TargetAccuracy, double SourceLoss, double TargetLoss);

/// <summary>A layer's shift from the source reference snapshot at its first and its last record.</summary>
/// <param name="Layer">Dotted layer name.</param>
/// <param name="LayerType">Module type.</param>
/// <param name="FirstStep">Step of the first record with a reference shift.</param>
/// <param name="First">Reference shift at the first record.</param>
/// <param name="LastStep">Step of the last record.</param>
/// <param name="Last">Reference shift at the last record.</param>
public sealed record LayerReferenceShift(string Layer, string LayerType, long FirstStep, ShiftMetrics First, long LastStep, ShiftMetrics Last);

/// <summary>
/// The settings of a fine-tuning run as given (saved in finetune.json so that <c>--resume</c> can rebuild the same run).
/// </summary>
/// <param name="From">--from RUN_DIR (full path), or null.</param>
/// <param name="Checkpoint">--checkpoint FILE (full path), or null.</param>
/// <param name="Model">--model as given with --checkpoint, or null.</param>
/// <param name="SourceDataset">The source data set (the training run's, or --dataset with --checkpoint).</param>
/// <param name="TargetDataset">--dataset when it names another data set than the source (with --from), or null: the target is the shifted source.</param>
/// <param name="Shift">--shift in canonical syntax ("" = none).</param>
/// <param name="Freeze">--freeze pattern, or null.</param>
/// <param name="ResetHead">--reset-head.</param>
/// <param name="BatchNormMode">--bn-mode.</param>
public sealed record FineTuneSettings(string? From, string? Checkpoint, string? Model, Data.DatasetSpec SourceDataset, Data.DatasetSpec? TargetDataset, string Shift, string? Freeze, bool ResetHead, string BatchNormMode);

/// <summary>
/// finetune.json: what a fine-tuning run did to the source and target accuracy, and how far each layer moved from the
/// source domain.
/// </summary>
public sealed record FineTuneReport
{
    /// <summary>File name in the run directory.</summary>
    public const string FileName = "finetune.json";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
    };

    /// <summary>The run's settings.</summary>
    public required FineTuneSettings Settings { get; init; }

    /// <summary>Frozen parameter names.</summary>
    public IReadOnlyList<string> FrozenParameters { get; init; } = [];

    /// <summary>The re-initialized head, or null.</summary>
    public string? ResetHeadLayer { get; init; }

    /// <summary>Batch-norm layers --bn-mode applies to.</summary>
    public IReadOnlyList<string> BatchNormLayers { get; init; } = [];

    /// <summary>Other normalization layers: unaffected by --bn-mode.</summary>
    public IReadOnlyList<string> OtherNormLayersUnaffected { get; init; } = [];

    /// <summary>Accuracy of the model as loaded, before any change.</summary>
    public required DomainAccuracy Before { get; init; }

    /// <summary>Accuracy after recalibrating the batch-norm statistics on the target data and before training (recalibrate only).</summary>
    public DomainAccuracy? AfterRecalibration { get; init; }

    /// <summary>Accuracy at every evaluation during fine-tuning (every --log-every steps), in step order.</summary>
    public IReadOnlyList<DomainAccuracy> Evaluations { get; init; } = [];

    /// <summary>Accuracy after the last step; null while the run is not finished.</summary>
    public DomainAccuracy? After { get; init; }

    /// <summary>Per layer, the reference shift (from the source snapshot) at the first and the last record.</summary>
    public IReadOnlyList<LayerReferenceShift> Layers { get; init; } = [];

    /// <summary>Indented camelCase JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads finetune.json.</summary>
    /// <exception cref="InvalidDataException">The file is not a fine-tuning report.</exception>
    public static FineTuneReport Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<FineTuneReport>(File.ReadAllText(path), JsonOptions) ?? throw new InvalidDataException($"'{path}' is empty; expected a {FileName}.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid {FileName}: {e.Message}", e);
        }
    }
}

/// <summary>Keeps, per layer, the first and the last reference shift the monitor reported (subscribe it to the monitor).</summary>
public sealed class ReferenceShiftTracker : IObserver<StepRecord>
{
    private readonly Dictionary<string, (string Type, long FirstStep, ShiftMetrics First, long LastStep, ShiftMetrics Last)> _layers = [];
    private readonly List<string> _order = [];

    /// <summary>Added to the monitor's step numbers (the trainer's offset when the monitor's steps are not the run's).</summary>
    public long Offset { get; set; }

    /// <summary>Starts from an earlier part of the run (a resumed run keeps the first shifts it had).</summary>
    public void Seed(IEnumerable<LayerReferenceShift> earlier)
    {
        ArgumentNullException.ThrowIfNull(earlier);
        foreach (var l in earlier)
        {
            if (!_layers.ContainsKey(l.Layer)) _order.Add(l.Layer);
            _layers[l.Layer] = (l.LayerType, l.FirstStep, l.First, l.LastStep, l.Last);
        }
    }

    /// <summary>The layers in model order.</summary>
    public IReadOnlyList<LayerReferenceShift> Layers =>
        _order.Select(n => _layers[n]).Zip(_order, (v, n) => new LayerReferenceShift(n, v.Type, v.FirstStep, v.First, v.LastStep, v.Last)).ToList();

    /// <inheritdoc />
    public void OnNext(StepRecord value)
    {
        ArgumentNullException.ThrowIfNull(value);
        foreach (var l in value.Layers)
        {
            if (l.ReferenceShift is not { } shift) continue;
            long step = l.Step + Offset;
            if (_layers.TryGetValue(l.Layer, out var v))
            {
                _layers[l.Layer] = v with { LastStep = step, Last = shift };
            }
            else
            {
                _order.Add(l.Layer);
                _layers[l.Layer] = (l.LayerType, step, shift, step, shift);
            }
        }
    }

    /// <inheritdoc />
    public void OnCompleted()
    {
    }

    /// <inheritdoc />
    public void OnError(Exception error)
    {
    }
}
