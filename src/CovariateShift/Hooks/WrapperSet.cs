using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>A layer to wrap: its dotted name (for messages), the module, and where its outputs go.</summary>
internal readonly record struct WrapRequest(string Name, nn.Module<Tensor, Tensor> Module, Action<Tensor> OnOutput);

/// <summary>A layer that a slot holds but that could not be wrapped there: its name and the whole explanation.</summary>
internal sealed record WrapFallback(string Layer, string Message);

/// <summary>
/// Puts a <see cref="RecordingWrapper"/> into every field (and ModuleList/ModuleDict slot) through which a parent's
/// forward code reaches a monitored layer, so that layers called with <c>forward()</c> are recorded too; puts every
/// original back on <see cref="Dispose"/>. Only the slots are swapped: the parents' registration (named_modules,
/// state_dict, parameters, to(), train()/eval(), checkpoints) keeps pointing at the original modules, and the wrappers
/// are registered nowhere.
/// </summary>
internal sealed class WrapperSet : IDisposable
{
    private readonly List<(ModuleSlot Slot, RecordingWrapper Wrapper)> _swapped = [];
    private readonly List<RecordingWrapper> _wrappers = [];
    private readonly List<WrapFallback> _fallbacks = [];
    private readonly List<string> _wrapped = [];
    private bool _armed;

    private WrapperSet()
    {
    }

    /// <summary>
    /// Wraps every layer of <paramref name="layers"/> that a slot of <paramref name="model"/> holds. A layer held by a
    /// slot that cannot take the wrapper (a field typed with a concrete class such as <c>Conv2d</c>, a
    /// <c>ModuleList&lt;Linear&gt;</c>) is listed in <see cref="Fallbacks"/> with the reason: it is recorded only when
    /// called with <c>call()</c> (by the hook). Layers that no slot holds (children of Sequential, which calls them with
    /// <c>call()</c>) are left to the hook silently. On failure every slot already swapped is restored.
    /// </summary>
    public static WrapperSet Install(nn.Module model, IReadOnlyList<WrapRequest> layers)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(layers);
        var set = new WrapperSet();
        try
        {
            var slots = ModuleSlot.Find(model, layers.Select(l => (nn.Module)l.Module).ToList());
            foreach (var request in layers)
            {
                if (!slots.TryGetValue(request.Module, out var held)) continue;
                var refused = new List<string>();
                var usable = new List<ModuleSlot>();
                foreach (var slot in held)
                {
                    if (!slot.CanHoldWrapper)
                        refused.Add($"{slot.Describe()} is typed {TypeName(slot.SlotType)}, which cannot hold a recording wrapper");
                    else if (!slot.IsRegistrationSafe(out var reason))
                        refused.Add($"{slot.Describe()}: {reason}");
                    else
                        usable.Add(slot);
                }
                if (refused.Count > 0)
                {
                    set._fallbacks.Add(new WrapFallback(request.Name,
                        $"{request.Name} ({request.Module.GetType().Name}): {string.Join("; ", refused)}; " +
                        "it is recorded only when called with call() (through the forward hook), not with forward()"));
                }
                if (usable.Count == 0) continue;

                set._wrapped.Add(request.Name);
                RecordingWrapper? shared = null;
                foreach (var slot in usable)
                {
                    // The slot holds the layer, or another monitor's wrapper of it: the new wrapper goes around what is there.
                    var current = (nn.Module<Tensor, Tensor>)slot.Get()!;
                    RecordingWrapper wrapper;
                    if (ReferenceEquals(current, request.Module))
                    {
                        wrapper = shared ??= set.Add(new RecordingWrapper(request.Module, request.OnOutput));
                    }
                    else
                    {
                        wrapper = set.Add(new RecordingWrapper(current, request.OnOutput));
                    }
                    slot.Set(wrapper);
                    set._swapped.Add((slot, wrapper));
                }
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    private RecordingWrapper Add(RecordingWrapper wrapper)
    {
        _wrappers.Add(wrapper);
        return wrapper;
    }

    /// <summary>Names of the layers that got a wrapper (in the order given).</summary>
    public IReadOnlyList<string> WrappedLayers => _wrapped;

    /// <summary>One line per layer that a slot holds but that could not be wrapped there: the layer, the slot and why.</summary>
    public IReadOnlyList<WrapFallback> Fallbacks => _fallbacks;

    /// <summary>Whether the wrappers hand outputs to their callbacks (recorded steps only); they always delegate.</summary>
    public bool Armed
    {
        get => _armed;
        set
        {
            _armed = value;
            foreach (var w in _wrappers) w.Armed = value;
        }
    }

    /// <summary>
    /// Puts every original module back into its slot and releases the wrappers. A slot the user has meanwhile filled
    /// with something else is left as it is; when another monitor's wrapper was put around ours since, ours is unlinked
    /// from that chain instead, so monitors on one model can be disposed in any order.
    /// </summary>
    public void Dispose()
    {
        for (int i = _swapped.Count - 1; i >= 0; i--)
        {
            // What the wrapper wraps now: what the slot held at install, unless a monitor wrapped in between was
            // disposed first and unlinked itself from under this wrapper.
            var (slot, wrapper) = _swapped[i];
            var original = wrapper.Inner;
            var current = slot.Get();
            if (ReferenceEquals(current, wrapper))
            {
                slot.Set(original);
                continue;
            }
            for (var outer = current as RecordingWrapper; outer is not null; outer = outer.Inner as RecordingWrapper)
            {
                if (ReferenceEquals(outer.Inner, wrapper))
                {
                    outer.Inner = original;
                    break;
                }
            }
        }
        _swapped.Clear();
        foreach (var w in _wrappers)
        {
            w.Armed = false;
            w.Dispose();
        }
        _wrappers.Clear();
    }

    private static string TypeName(Type t) =>
        t.IsGenericType ? $"{t.Name.Split('`')[0]}<{string.Join(", ", t.GetGenericArguments().Select(TypeName))}>" : t.Name;
}
