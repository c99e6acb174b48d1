using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>
/// A training step as <see cref="TrainerOptions.AfterOptimizerStep"/> sees it: after <c>optimizer.step()</c> and before
/// <see cref="ActivationMonitor.Step"/> (e.g. <see cref="ActivationMonitor.MeasureGradientIcs"/> recomputes the loss on
/// the step's batch here). The tensors belong to the step's dispose scope: do not keep them.
/// </summary>
/// <param name="Step">0-based step number.</param>
/// <param name="Monitor">The run's monitor.</param>
/// <param name="Model">The model being trained (training mode).</param>
/// <param name="Images">The step's batch of inputs, on the training device.</param>
/// <param name="Labels">The step's labels, on the training device.</param>
public readonly record struct TrainStep(long Step, ActivationMonitor Monitor, nn.Module<Tensor, Tensor> Model, Tensor Images, Tensor Labels);
