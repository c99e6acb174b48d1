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
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
    };

    /// <summary>Steps completed before this call (the checkpoint's step when resumed; 0 otherwise). <see cref="Losses"/> and <see cref="Evaluations"/> cover this call only.</summary>
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

    /// <summary>The result as indented camelCase JSON (NaN and infinities as the strings "NaN", "Infinity", "-Infinity"; no per-step losses).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);
}
