using System.Text.Json;
using System.Text.Json.Serialization;

namespace CovariateShift.Training.Training;

/// <summary>What a <see cref="Trainer"/> run did and reached.</summary>
/// <param name="Steps">Optimizer steps completed (fewer than <paramref name="RequestedSteps"/> when the run diverged).</param>
/// <param name="RequestedSteps">Steps the run was set to take (<see cref="TrainerOptions.Steps"/>).</param>
/// <param name="Epochs">Passes over the training set completed: Steps × batch size / training examples.</param>
/// <param name="FinalTrainLoss">Mean training loss of the last <see cref="TrainerOptions.LossWindow"/> completed steps (NaN when no step completed).</param>
/// <param name="TestAccuracy">Accuracy of the last evaluation; null when there was no test set.</param>
/// <param name="TestLoss">Mean cross-entropy of the last evaluation; null when there was no test set.</param>
/// <param name="Evaluations">Every evaluation, in order (periodic ones, then the final one).</param>
/// <param name="WallTime">Wall time of the whole run, evaluations included.</param>
/// <param name="StepsPerSecond">Completed steps per second of <paramref name="WallTime"/>.</param>
/// <param name="OutputDirectory">Full path of <see cref="TrainerOptions.OutputDirectory"/>, or null.</param>
/// <param name="MetricsPath">Full path of the monitor's JSON Lines metrics file, or null when none was written.</param>
/// <param name="DivergedAtStep">0-based index of the step whose loss was NaN or infinite (training stopped there, before
/// that step's update); null when the run did not diverge.</param>
/// <param name="DivergenceMessage">What happened when the run diverged; null otherwise.</param>
/// <param name="Losses">Training loss of every step taken, including a non-finite one at <paramref name="DivergedAtStep"/>
/// (not written to JSON).</param>
public sealed record TrainResult(
    int Steps,
    int RequestedSteps,
    double Epochs,
    double FinalTrainLoss,
    double? TestAccuracy,
    double? TestLoss,
    IReadOnlyList<EvaluationResult> Evaluations,
    TimeSpan WallTime,
    double StepsPerSecond,
    string? OutputDirectory,
    string? MetricsPath,
    long? DivergedAtStep,
    string? DivergenceMessage,
    [property: JsonIgnore] IReadOnlyList<double> Losses)
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,   // the run directory's one convention (as the JSON Lines files)
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
    };

    /// <summary>Steps completed before this call (the checkpoint's step when resumed; 0 otherwise). <see cref="Losses"/>
    /// covers this call only; <see cref="Evaluations"/> and <see cref="FinalTrainLoss"/> the whole run (as a straight run's).</summary>
    public long StartStep { get; init; }

    /// <summary>True when training stopped early because <see cref="TrainerOptions.Cancellation"/> was cancelled (Ctrl+C).</summary>
    public bool Interrupted { get; init; }

    /// <summary>Best test accuracy of every evaluation of the run (before a resume included); null without a test set.</summary>
    public double? BestTestAccuracy { get; init; }

    /// <summary>The step of the forecaster's first warning (<see cref="MonitorOptions.Forecast"/>); null without one.</summary>
    public long? FirstForecastStep { get; init; }

    /// <summary>True when training stopped at the forecaster's first warning (<see cref="TrainerOptions.StopOnForecast"/>).</summary>
    public bool StoppedOnForecast { get; init; }

    /// <summary>The failure step (<see cref="Forecast.FailureLabel"/>): the first step whose loss is NaN or infinite, or at which
    /// the mean loss of the last 5 steps is back above ln(classes) after the run had learned; null when the run did not fail.</summary>
    public long? FailureStep { get; init; }

    /// <summary>True when the loss became NaN or infinite and training stopped early.</summary>
    public bool Diverged => DivergedAtStep is not null;

    /// <summary>
    /// Reads a summary.json written by <see cref="ToJson"/> (property names in camelCase or snake_case): what the
    /// comparison of several runs and the report need; <see cref="Losses"/> is empty (not written) and
    /// <see cref="MetricsPath"/> is the metrics file next to it when there is one.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a summary; the message names it.</exception>
    public static TrainResult Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var e = doc.RootElement;
            double Number(string name) => Get(e, name) is { } v ? ReadDouble(v) : double.NaN;
            double? Optional(string name) => Get(e, name) is { ValueKind: not JsonValueKind.Null } v ? ReadDouble(v) : null;
            var evaluations = new List<EvaluationResult>();
            if (Get(e, "evaluations") is { ValueKind: JsonValueKind.Array } list)
            {
                foreach (var ev in list.EnumerateArray())
                {
                    evaluations.Add(new EvaluationResult((int)ReadDouble(Get(ev, "step")!.Value), ReadDouble(Get(ev, "accuracy")!.Value),
                        ReadDouble(Get(ev, "loss")!.Value), (long)ReadDouble(Get(ev, "examples")!.Value)));
                }
            }
            var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            var metrics = Path.Combine(dir, TrainerOptions.MetricsFileName);
            return new TrainResult(
                (int)Number("steps"), (int)Number("requestedSteps"), Number("epochs"), Number("finalTrainLoss"), Optional("testAccuracy"), Optional("testLoss"),
                evaluations, Get(e, "wallTime") is { ValueKind: JsonValueKind.String } w && TimeSpan.TryParse(w.GetString(), System.Globalization.CultureInfo.InvariantCulture, out var t) ? t : TimeSpan.Zero,
                Number("stepsPerSecond"), dir, File.Exists(metrics) ? metrics : null,
                Get(e, "divergedAtStep") is { ValueKind: JsonValueKind.Number } d ? d.GetInt64() : null,
                Get(e, "divergenceMessage") is { ValueKind: JsonValueKind.String } m ? m.GetString() : null, [])
            {
                StartStep = Get(e, "startStep") is { ValueKind: JsonValueKind.Number } st ? st.GetInt64() : 0,
                Interrupted = Get(e, "interrupted") is { ValueKind: JsonValueKind.True },
                BestTestAccuracy = Optional("bestTestAccuracy"),
                FirstForecastStep = Get(e, "firstForecastStep") is { ValueKind: JsonValueKind.Number } ff ? ff.GetInt64() : null,
                StoppedOnForecast = Get(e, "stoppedOnForecast") is { ValueKind: JsonValueKind.True },
                FailureStep = Get(e, "failureStep") is { ValueKind: JsonValueKind.Number } fs ? fs.GetInt64() : null,
            };
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException or IOException)
        {
            throw new InvalidDataException($"'{path}' is not a covshift summary.json: {ex.Message}", ex);
        }
    }

    /// <summary>The property <paramref name="camelName"/>, or its snake_case form.</summary>
    private static JsonElement? Get(JsonElement e, string camelName)
    {
        if (e.ValueKind != JsonValueKind.Object) return null;
        if (e.TryGetProperty(camelName, out var v)) return v;
        return e.TryGetProperty(JsonNamingPolicy.SnakeCaseLower.ConvertName(camelName), out v) ? v : null;
    }

    private static double ReadDouble(JsonElement v) => v.ValueKind == JsonValueKind.String
        ? double.Parse(v.GetString()!, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture)
        : v.GetDouble();

    /// <summary>The result as indented snake_case JSON (summary.json; <see cref="Read"/> also reads the camelCase of older runs) (NaN and infinities as the strings "NaN", "Infinity", "-Infinity"; no per-step losses).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);
}
