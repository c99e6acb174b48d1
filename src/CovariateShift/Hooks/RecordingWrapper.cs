using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>
/// A thin stand-in for a monitored layer, put into the parent's field (or container slot) that the parent's
/// <c>forward</c> code reads, so that <c>child.forward(x)</c> is recorded as well as <c>child.call(x)</c>.
/// </summary>
/// <remarks>
/// <para>
/// Called with <c>forward(x)</c> it runs <c>inner.forward(x)</c>; called with <c>call(x)</c> it runs <c>inner.call(x)</c>,
/// so the inner module's own forward hooks fire exactly when they fired without the wrapper. After a <c>forward()</c> the
/// output goes to the callback while <see cref="Armed"/>; after a <c>call()</c> the inner module's forward hook (armed
/// together with the wrapper) has seen it, so the wrapper does nothing more. The callback records a layer once per step.
/// </para>
/// <para>
/// The wrapper is never registered anywhere: it registers no components of its own (so it has no state_dict, no
/// parameters and is not moved by <c>to()</c> of the parent), and the parent's registration keeps pointing at the
/// inner module. Members that forward code may read through the field (<c>training</c>, <c>train()</c>,
/// <c>parameters()</c>, <c>named_parameters()</c>, <c>buffers()</c>, <c>children()</c>, <c>modules()</c>,
/// <c>state_dict()</c>, <c>GetName()</c>) answer for the inner module. Disposing the wrapper releases only its own
/// native handle, never the inner module.
/// </para>
/// </remarks>
internal sealed class RecordingWrapper : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> _inner;
    private readonly Action<Tensor> _onOutput;
    private readonly Action<Tensor>? _onInput;
    private bool _viaCall;
    private bool _releasing;

    /// <summary>Wraps <paramref name="inner"/>; <paramref name="onOutput"/> receives every output while <see cref="Armed"/>.</summary>
    /// <param name="inner">The module to stand in for.</param>
    /// <param name="onOutput">Receives every output of a forward() through the wrapper while armed.</param>
    /// <param name="onInput">For an in-place module: receives the input before a forward() through the wrapper overwrites it
    /// (the forward pre-hook does that for call()).</param>
    public RecordingWrapper(nn.Module<Tensor, Tensor> inner, Action<Tensor> onOutput, Action<Tensor>? onInput = null) : base(nameof(RecordingWrapper))
    {
        _inner = inner;
        _onOutput = onOutput;
        _onInput = onInput;
        // call() runs the module pre-hooks before forward(); forward() alone runs none. This is how forward() tells the two apart.
        register_forward_pre_hook((Action<nn.Module>)(_ => _viaCall = true));
    }

    /// <summary>
    /// The module this wrapper stands in for: the layer, or another monitor's wrapper of it (two monitors on one model
    /// chain their wrappers). Reassigned only to unlink a disposed wrapper from such a chain.
    /// </summary>
    public nn.Module<Tensor, Tensor> Inner
    {
        get => _inner;
        set => _inner = value;
    }

    /// <summary>Whether outputs are handed to the callback (set on recorded steps only; otherwise the wrapper only delegates).</summary>
    public bool Armed { get; set; }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        bool viaCall = _viaCall;
        _viaCall = false;
        if (viaCall) return _inner.call(input);   // the inner module's hooks (the monitor's, armed with the wrapper, included) see it
        if (Armed) _onInput?.Invoke(input);
        var output = _inner.forward(input);
        if (Armed) _onOutput(output);
        return output;
    }

    /// <summary>Never registers anything: the wrapper must not own the inner module as a child.</summary>
    protected override void RegisterComponents()
    {
    }

    /// <inheritdoc />
    public override bool training => _inner.training;

    /// <inheritdoc />
    public override void train(bool train = true) => _inner.train(train);

    /// <inheritdoc />
    public override IEnumerable<Parameter> parameters(bool recurse = true) =>
        _releasing ? base.parameters(recurse) : _inner.parameters(recurse);

    /// <inheritdoc />
    public override IEnumerable<(string name, Parameter parameter)> named_parameters(bool recurse = true) =>
        _releasing ? base.named_parameters(recurse) : _inner.named_parameters(recurse);

    /// <inheritdoc />
    public override IEnumerable<Tensor> buffers(bool recurse = true, bool include_nonpersistent = true) =>
        _releasing ? base.buffers(recurse, include_nonpersistent) : _inner.buffers(recurse, include_nonpersistent);

    /// <inheritdoc />
    public override IEnumerable<(string name, Tensor buffer)> named_buffers(bool recurse = true, bool include_nonpersistent = true) =>
        _releasing ? base.named_buffers(recurse, include_nonpersistent) : _inner.named_buffers(recurse, include_nonpersistent);

    /// <inheritdoc />
    public override IEnumerable<(string name, nn.Module module)> named_children() =>
        _releasing ? base.named_children() : _inner.named_children();

    /// <inheritdoc />
    public override IEnumerable<(string name, nn.Module module)> named_modules() =>
        _releasing ? base.named_modules() : _inner.named_modules();

    /// <inheritdoc />
    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null) =>
        _inner.state_dict(destination, prefix);

    /// <inheritdoc />
    public override string GetName() => _inner.GetName();

    /// <summary>Releases the wrapper's own native handle; the inner module is left alone.</summary>
    protected override void Dispose(bool disposing)
    {
        _releasing = true;   // the base class disposes what named_parameters/named_modules list: the wrapper's own (none)
        base.Dispose(disposing);
    }
}
