using System.Collections.Immutable;

namespace CovariateShift.Capture;

/// <summary>
/// Everything an engine captured during one recorded step, on the host: per layer (indexed by
/// <see cref="LayerDescriptor.Index"/>) the activation summary (null when the layer did not run) and the gradient
/// sums (null without <c>RecordGradients()</c> or trainable parameters), and the loss. Immutable: the record builder
/// reads it, nothing writes it after <see cref="IStatisticsEngine.Collect"/>.
/// </summary>
/// <param name="Step">The recorded training step.</param>
/// <param name="Loss">The step's loss, or null.</param>
/// <param name="Activations">Per layer, its output summary or null.</param>
/// <param name="Gradients">Per layer, its gradient sums or null.</param>
internal sealed record StepCapture(long Step, double? Loss, ImmutableArray<LayerSummary?> Activations, ImmutableArray<GradientSums?> Gradients)
{
    /// <summary>Whether any layer's forward hook captured an output.</summary>
    public bool AnyActivation => Activations.Any(a => a is not null);

    /// <summary>Whether any layer's gradients were captured.</summary>
    public bool AnyGradients => Gradients.Any(g => g is not null);

    /// <summary>
    /// Gives the pooled sample buffers of the activation summaries back to their pool (see <see cref="SamplePool"/>):
    /// call it once the capture has been built into a record; the samples must not be read afterwards. Calling it again
    /// does nothing.
    /// </summary>
    public void ReleaseSamples()
    {
        foreach (var a in Activations) a?.SampleLease?.Return();
    }
}
