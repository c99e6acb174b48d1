using static TorchSharp.torch;

namespace CovariateShift.Capture;

/// <summary>
/// Where per-layer reductions are computed. The hook set hands it (layer, output) on recorded training steps; the
/// monitor adds gradients and the loss; <see cref="Collect"/> ends the step and hands over everything captured as
/// one immutable <see cref="StepCapture"/> (possibly still pending, for engines that copy to the host
/// asynchronously). An engine owns every tensor it keeps between a capture and the collection, and releases it at
/// <see cref="Collect"/>, <see cref="DiscardActivations"/> or <see cref="IDisposable.Dispose"/>.
/// </summary>
internal interface IStatisticsEngine : IDisposable
{
    /// <summary>Device-to-host transfers made so far (diagnostics and tests).</summary>
    int HostTransfers { get; }

    /// <summary>Reduces <paramref name="output"/> of <paramref name="layer"/> (inside its forward hook). Only the first
    /// output of a layer per step is captured (a shared layer called twice is recorded once). Keeps no activation.</summary>
    void CaptureActivation(MonitoredLayer layer, Tensor output);

    /// <summary>Gradient and weight reductions of <paramref name="layers"/>' own parameters, and a snapshot of the
    /// parameters so that <see cref="Collect"/> can measure the optimizer's update.</summary>
    void CaptureGradients(IReadOnlyList<MonitoredLayer> layers);

    /// <summary>Records the step's loss (read in the same transfer as the rest on a device).</summary>
    void CaptureLoss(Tensor loss);

    /// <summary>Drops every activation captured since the last collection (a forward pass that did not finish).</summary>
    void DiscardActivations();

    /// <summary>An in-place module (e.g. <c>ReLU(inplace: true)</c>) is about to overwrite <paramref name="input"/>: an engine
    /// that reads captured outputs later than in their hook must copy it now if it is one of them.</summary>
    void BeforeInPlace(Tensor input)
    {
    }

    /// <summary>Ends the step: measures the updates, moves everything to the host (one transfer at most) and resets
    /// the per-step state. The capture is indexed by layer index over <paramref name="layerCount"/> layers.</summary>
    PendingCapture Collect(long step, int layerCount);
}
