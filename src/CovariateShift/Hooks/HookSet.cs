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
/// </summary>
/// <remarks>Hooks are registered only while armed (TorchSharp's call() is slower on a module with hooks even when the
/// hook returns at once), so the monitor arms them when a recorded step begins and disarms them after it.</remarks>
internal sealed class HookSet : IDisposable
{
    private readonly nn.Module _root;
    private readonly IReadOnlyList<MonitoredLayer> _layers;
    private readonly Action<MonitoredLayer, Tensor> _onOutput;
    private readonly Action _onAbandonedForward;
    private readonly List<IDisposable> _handles = [];

    /// <param name="root">The model given to the monitor.</param>
    /// <param name="layers">The layers to hook.</param>
    /// <param name="onOutput">Called with (layer, output) inside each layer's forward hook.</param>
    /// <param name="onAbandonedForward">Called when a training-mode forward of the root begins while an earlier one
    /// never returned (it threw).</param>
    public HookSet(nn.Module root, IReadOnlyList<MonitoredLayer> layers, Action<MonitoredLayer, Tensor> onOutput, Action onAbandonedForward)
    {
        _root = root;
        _layers = layers;
        _onOutput = onOutput;
        _onAbandonedForward = onAbandonedForward;
    }

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
        IsArmed = true;
    }

    /// <summary>Removes the hooks (no-op when not armed) and forgets any forward in progress.</summary>
    public void Disarm()
    {
        if (!IsArmed) return;
        foreach (var h in _handles) h.Dispose();
        _handles.Clear();
        ForwardInProgress = false;
        IsArmed = false;
    }

    /// <summary>Forgets a forward pass in progress (its step is over).</summary>
    public void ForgetForward() => ForwardInProgress = false;

    /// <summary>Removes every hook.</summary>
    public void Dispose() => Disarm();

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
