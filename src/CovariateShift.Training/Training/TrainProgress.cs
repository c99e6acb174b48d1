namespace CovariateShift.Training.Training;

/// <summary>A progress report of a <see cref="Trainer"/> run.</summary>
/// <param name="Step">Steps completed so far (1-based: after the first step this is 1).</param>
/// <param name="Steps">Steps the run is set to take.</param>
/// <param name="Loss">Training loss of the latest step.</param>
/// <param name="MeanLoss">Mean training loss since the previous report.</param>
/// <param name="LearningRate">Current learning rate.</param>
/// <param name="Elapsed">Wall time since training started (evaluations included).</param>
/// <param name="StepsPerSecond">Steps completed per second of <paramref name="Elapsed"/>.</param>
/// <param name="Epoch">Epochs completed, as a fraction.</param>
/// <param name="BestAccuracy">Best test accuracy so far, or null.</param>
public sealed record TrainProgress(
    int Step,
    int Steps,
    double Loss,
    double MeanLoss,
    double LearningRate,
    TimeSpan Elapsed,
    double StepsPerSecond,
    double Epoch = 0,
    double? BestAccuracy = null);
