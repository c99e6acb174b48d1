using CovariateShift.Statistics.Device;

namespace CovariateShift.Statistics;

/// <summary>
/// What one recorded step captured, detached from the layers (which move on to the next step): host summaries of the
/// CPU kernel, gradient captures, the loss, and the device part still on its way to the host (if any). Completed in
/// step order by the monitor; owns the gradient captures and the device capture and disposes them.
/// </summary>
internal sealed class StepCapture : IDisposable
{
    public StepCapture(long step, int layers)
    {
        Step = step;
        Summaries = new ActivationSummary?[layers];
        Gradients = new GradientCapture?[layers];
        Fired = new bool[layers];
    }

    /// <summary>The step the capture belongs to.</summary>
    public long Step { get; }

    /// <summary>Per layer index: the activation summary (filled on completion for device layers).</summary>
    public ActivationSummary?[] Summaries { get; }

    /// <summary>Per layer index: the gradient capture, if gradients were recorded.</summary>
    public GradientCapture?[] Gradients { get; }

    /// <summary>Per layer index: whether the layer's hook fired in this step.</summary>
    public bool[] Fired { get; }

    /// <summary>The step's loss, once known.</summary>
    public double? Loss { get; set; }

    /// <summary>The device part, until completed.</summary>
    public DeviceCapture? Device { get; set; }

    /// <summary>Whether the capture can be completed without waiting.</summary>
    public bool IsReady => Device?.IsReady ?? true;

    /// <summary>Whether the device part is copied asynchronously (a CUDA pack).</summary>
    public bool Asynchronous => Device?.Asynchronous ?? false;

    /// <summary>Waits for the device part if needed and fills the summaries, gradients and loss.</summary>
    public void Complete()
    {
        if (Device is not { } d) return;
        Device = null;
        try
        {
            var loss = d.Complete(Summaries);
            Loss ??= loss;
        }
        finally
        {
            d.Dispose();
        }
    }

    /// <summary>Host-side samples are reusable per-layer buffers; a deferred capture takes its own copies.</summary>
    public void OwnSamples()
    {
        foreach (var s in Summaries)
        {
            if (s is not null) s.Sample = s.Sample.AsSpan(0, s.SampleCount).ToArray();
        }
    }

    public void Dispose()
    {
        Device?.Dispose();
        Device = null;
        foreach (var g in Gradients) g?.Dispose();
    }
}
