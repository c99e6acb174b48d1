using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift;

/// <summary>
/// The monitor in module form: wraps a model, installs the monitor's hooks on it and forwards every call unchanged,
/// so it drops into code that expects a <c>Module&lt;Tensor, Tensor&gt;</c>. Layer names are those of the wrapped model.
/// </summary>
/// <remarks>
/// With <c>advanceOnForward</c> (the default) each training-mode forward starts a new step: the previous step is
/// finished (<see cref="ActivationMonitor.Step"/>) first, so a loop that never calls the monitor still gets one record per
/// RecordEvery training batches. Call <see cref="FinishStep"/> after the last batch (or dispose the module) to record the
/// final step. Evaluation-mode forwards never advance the step. The wrapper owns the wrapped model: disposing it
/// disposes the model.
/// </remarks>
public sealed class MonitoredModule : nn.Module<Tensor, Tensor>
{
    // A registered submodule: TorchSharp takes the field name as its state_dict prefix ("model."), so no underscore.
#pragma warning disable IDE1006
    private readonly nn.Module<Tensor, Tensor> model;
#pragma warning restore IDE1006
    private readonly bool _advanceOnForward;
    private bool _stepOpen;

    /// <summary>Wraps <paramref name="model"/> and attaches a monitor configured by <paramref name="options"/>.</summary>
    public MonitoredModule(nn.Module<Tensor, Tensor> model, MonitorOptions? options = null, bool advanceOnForward = true)
        : base(nameof(MonitoredModule))
    {
        ArgumentNullException.ThrowIfNull(model);
        this.model = model;
        _advanceOnForward = advanceOnForward;
        RegisterComponents();
        Monitor = ActivationMonitor.Attach(model, options);
    }

    /// <summary>The monitor attached to the wrapped model (for RecordGradients, CaptureReference, records...).</summary>
    public ActivationMonitor Monitor { get; }

    /// <summary>The wrapped model.</summary>
    public nn.Module<Tensor, Tensor> Inner => model;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (training && _advanceOnForward)
        {
            if (_stepOpen) Monitor.Step();
            _stepOpen = true;
        }
        return model.call(input);
    }

    /// <summary>Finishes the open step (if any) so that its record is written; returns it when the step was recorded.</summary>
    public Records.StepRecord? FinishStep()
    {
        if (!_stepOpen) return null;
        _stepOpen = false;
        return Monitor.Step();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            FinishStep();
            Monitor.Dispose();
        }
        base.Dispose(disposing);
    }
}
