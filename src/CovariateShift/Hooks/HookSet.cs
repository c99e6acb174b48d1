using CovariateShift.Capture;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>
/// The monitor's forward hooks: owns their registration, arming on recorded steps and removal. Each hook hands
/// (layer, output) to one callback and returns the output unchanged. On the root module (when it takes and returns
/// a tensor) it also tracks whether a training-mode forward pass is in progress, so that the captures of a forward
/// that threw can be told apart: when a new forward of the root begins while the previous one never returned,
/// <c>onAbandonedForward</c> runs first.
/// <para>
/// It also owns the module wrappers (<see cref="WrapperSet"/>): prepared at construction for every field through which a
/// parent reaches a hooked layer, put into those fields when the hooks are armed and taken out (originals put back) when
/// they are disarmed, so an unrecorded step runs the model exactly as without a monitor.
/// A wrapper hands (layer, output) to the same callback when the layer is called with <c>forward()</c>; called with
/// <c>call()</c> it runs the layer's <c>call()</c>, whose hook does it. The callback sees a layer once per call whichever
/// way it was reached.
/// </para>
/// </summary>
/// <remarks>Hooks are registered only while armed (TorchSharp's call() is slower on a module with hooks even when the
/// hook returns at once), so the monitor arms them when a recorded step begins and disarms them after it.</remarks>
internal sealed class HookSet : IDisposable
{
    private readonly nn.Module _root;
    private readonly IReadOnlyList<MonitoredLayer> _layers;
    private readonly Action<MonitoredLayer, Tensor> _onOutput;
    private readonly Action _onAbandonedForward;
    private readonly Action<Tensor>? _onBeforeInPlace;
    private readonly List<nn.Module<Tensor, Tensor>> _inPlace;
    private readonly List<IDisposable> _handles = [];
    private readonly WrapperSet _wrappers;

    /// <param name="root">The model given to the monitor.</param>
    /// <param name="layers">The layers to hook.</param>
    /// <param name="onOutput">Called with (layer, output) inside each layer's forward hook.</param>
    /// <param name="onAbandonedForward">Called when a training-mode forward of the root begins while an earlier one
    /// never returned (it threw).</param>
    /// <param name="onBeforeInPlace">Called with the input of every in-place leaf module of the model (one with
    /// <c>inplace</c> set, e.g. <c>ReLU(inplace: true)</c>) just before it overwrites it, while armed. Null: not watched.</param>
    public HookSet(nn.Module root, IReadOnlyList<MonitoredLayer> layers, Action<MonitoredLayer, Tensor> onOutput, Action onAbandonedForward,
        Action<Tensor>? onBeforeInPlace = null)
    {
        _root = root;
        _layers = layers;
        _onOutput = onOutput;
        _onAbandonedForward = onAbandonedForward;
        _onBeforeInPlace = onBeforeInPlace;
        _inPlace = onBeforeInPlace is null ? [] : [.. root.modules().Append(root).OfType<nn.Module<Tensor, Tensor>>().Where(IsInPlace).Distinct()];
        var inPlace = new HashSet<nn.Module>(_inPlace, ReferenceEqualityComparer.Instance);
        _wrappers = WrapperSet.Install(root, [.. layers.Select(l => new WrapRequest(l.Name, l.Module, output => onOutput(l, output),
            inPlace.Contains(l.Module) ? onBeforeInPlace : null))]);
    }

    /// <summary>A leaf module with a public <c>inplace</c> flag that is set (TorchSharp's ReLU, LeakyReLU, Dropout, ... take one).</summary>
    private static bool IsInPlace(nn.Module m) =>
        !m.children().Any() && m.GetType().GetProperty("inplace")?.GetValue(m) is true;

    /// <summary>Layers held in a field that cannot take a wrapper (forward() through it is not recorded), with the reason.</summary>
    public IReadOnlyList<WrapFallback> WrapFallbacks => _wrappers.Fallbacks;

    /// <summary>Names of the layers that got a recording wrapper.</summary>
    public IReadOnlyList<string> WrappedLayers => _wrappers.WrappedLayers;

    /// <summary>Whether the hooks are registered.</summary>
    public bool IsArmed { get; private set; }

    /// <summary>A training-mode forward of the root began (while armed) and has not returned.</summary>
    public bool ForwardInProgress { get; private set; }

    /// <summary>Registers the hooks (no-op when armed).</summary>
    public void Arm()
    {
        if (IsArmed) return;
        if (_root is nn.Module<Tensor, Tensor> root)
        {
            var pre = root.register_forward_pre_hook((module, input) =>
            {
                if (!module.training) return input;
                if (ForwardInProgress) _onAbandonedForward();
                ForwardInProgress = true;
                return input;
            });
            _handles.Add(new Handle(pre.remove));
            var post = root.register_forward_hook((module, _, output) =>
            {
                if (module.training) ForwardInProgress = false;
                return output;
            });
            _handles.Add(new Handle(post.remove));
        }
        foreach (var m in _inPlace)
        {
            var before = m.register_forward_pre_hook((_, input) =>
            {
                _onBeforeInPlace!(input);
                return input;
            });
            _handles.Add(new Handle(before.remove));
        }
        foreach (var layer in _layers)
        {
            var l = layer;
            var remover = l.Module.register_forward_hook((_, _, output) =>
            {
                _onOutput(l, output);
                return output;
            });
            _handles.Add(new Handle(remover.remove));
        }
        _wrappers.Armed = true;
        IsArmed = true;
    }

    /// <summary>Removes the hooks (no-op when not armed) and forgets any forward in progress.</summary>
    public void Disarm()
    {
        if (!IsArmed) return;
        foreach (var h in _handles) h.Dispose();
        _handles.Clear();
        _wrappers.Armed = false;
        ForwardInProgress = false;
        IsArmed = false;
    }

    /// <summary>Forgets a forward pass in progress (its step is over).</summary>
    public void ForgetForward() => ForwardInProgress = false;

    /// <summary>Removes every hook and wrapper; every original module is back in its field.</summary>
    public void Dispose()
    {
        Disarm();
        _wrappers.Dispose();
    }

    private sealed class Handle(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        public void Dispose()
        {
            _remove?.Invoke();
            _remove = null;
        }
    }
}
