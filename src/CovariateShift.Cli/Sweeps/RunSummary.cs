using CovariateShift.Cli.Commands;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Sweeps;

/// <summary>
/// What the sweep reads from a run directory's summary.json (written by <c>covshift train</c> when a run ends, read
/// through the trainer's own reader, <see cref="TrainResult.Read"/>): steps, accuracies, loss, divergence, the
/// forecaster's stop and wall time.
/// </summary>
/// <param name="Steps">Steps completed.</param>
/// <param name="RequestedSteps">Steps the run was set to take.</param>
/// <param name="FinalTrainLoss">Mean training loss at the end (NaN when unknown).</param>
/// <param name="TestAccuracy">Final test accuracy.</param>
/// <param name="BestTestAccuracy">Best test accuracy of the run.</param>
/// <param name="DivergedAtStep">Step of the divergence, or null.</param>
/// <param name="WallSeconds">Wall time of the last training call, in seconds.</param>
public sealed record RunSummary(long Steps, long RequestedSteps, double FinalTrainLoss, double? TestAccuracy, double? BestTestAccuracy, long? DivergedAtStep, double? WallSeconds)
{
    /// <summary>Whether the run diverged.</summary>
    public bool Diverged => DivergedAtStep is not null;

    /// <summary>Whether <c>--on-forecast stop</c> ended the run at the forecaster's first warning (a result: the run is done).</summary>
    public bool StoppedOnForecast { get; init; }

    /// <summary>The step of the forecaster's first warning, or null.</summary>
    public long? FirstForecastStep { get; init; }

    /// <summary>
    /// Reads summary.json of <paramref name="runDirectory"/>; null when it is missing or unreadable, or when it is the
    /// summary of an interrupted run (Ctrl+C / SIGTERM writes one too; such a run has not ended and resumes).
    /// </summary>
    public static RunSummary? TryLoad(string runDirectory)
    {
        var path = Path.Combine(runDirectory, TrainCommand.SummaryFileName);
        if (!File.Exists(path)) return null;
        try
        {
            var r = TrainResult.Read(path);
            if (r.Interrupted) return null;
            return new RunSummary(r.Steps, r.RequestedSteps, r.FinalTrainLoss, r.TestAccuracy, r.BestTestAccuracy, r.DivergedAtStep,
                r.WallTime > TimeSpan.Zero ? r.WallTime.TotalSeconds : null)
            {
                StoppedOnForecast = r.StoppedOnForecast,
                FirstForecastStep = r.FirstForecastStep,
            };
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
