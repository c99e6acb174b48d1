using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>A layer to wrap: its dotted name (for messages), the module, where its outputs go, and (an in-place module)
/// where its input goes before it is overwritten.</summary>
internal readonly record struct WrapRequest(string Name, nn.Module<Tensor, Tensor> Module, Action<Tensor> OnOutput, Action<Tensor>? OnInput = null);

/// <summary>A layer that a slot holds but that could not be wrapped there: its name and the whole explanation.</summary>
internal sealed record WrapFallback(string Layer, string Message);

/// <summary>
/// Prepares a <see cref="RecordingWrapper"/> for every field (and ModuleList/ModuleDict slot) through which a parent's
/// forward code reaches a monitored layer, so that layers called with <c>forward()</c> are recorded too. The wrappers are
/// in the slots only while <see cref="Armed"/> (the monitor arms them on recorded steps, with its hooks): on other steps
/// the model runs exactly as it does without a monitor (each layer dispatched once, no wrapper pre-hook). Only the slots
/// are swapped: the parents' registration (named_modules, state_dict, parameters, to(), train()/eval(), checkpoints) keeps
/// pointing at the original modules, and the wrappers are registered nowhere.
/// </summary>
/// <remarks>Two monitors on one model chain their wrappers in whatever order they arm: arming puts the wrapper around
/// whatever the slot holds (the layer or the other monitor's wrapper of it); disarming takes it out of the slot, or out of
/// the chain when the other monitor's wrapper was put around it since.</remarks>
internal sealed class WrapperSet : IDisposable
{
    private readonly List<(ModuleSlot Slot, nn.Module Layer, RecordingWrapper Wrapper)> _slots = [];
    private readonly List<(ModuleSlot Slot, RecordingWrapper Wrapper)> _inserted = [];
    private readonly List<WrapFallback> _fallbacks = [];
    private readonly List<string> _wrapped = [];
    private bool _armed;

    private WrapperSet()
    {
    }

    /// <summary>
    /// Finds every slot of <paramref name="model"/> that holds a layer of <paramref name="layers"/> and prepares one wrapper
    /// per slot (nothing is swapped until <see cref="Armed"/> is set). A layer held by a slot that cannot take the wrapper
    /// (a field typed with a concrete class such as <c>Conv2d</c>, a <c>ModuleList&lt;Linear&gt;</c>) is listed in
    /// <see cref="Fallbacks"/> with the reason: it is recorded only when called with <c>call()</c> (by the hook). Layers
    /// that no slot holds (children of Sequential, which calls them with <c>call()</c>) are left to the hook silently.
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
                // One wrapper per slot: what each slot holds when armed (the layer, or another monitor's wrapper of it)
                // becomes that wrapper's inner module.
                foreach (var slot in usable)
                    set._slots.Add((slot, request.Module, new RecordingWrapper(request.Module, request.OnOutput, request.OnInput)));
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    /// <summary>Names of the layers that got a wrapper (in the order given).</summary>
    public IReadOnlyList<string> WrappedLayers => _wrapped;

    /// <summary>One line per layer that a slot holds but that could not be wrapped there: the layer, the slot and why.</summary>
    public IReadOnlyList<WrapFallback> Fallbacks => _fallbacks;

    /// <summary>Number of slots that hold one of this set's wrappers now (tests).</summary>
    public int InsertedCount => _inserted.Count;

    /// <summary>
    /// Whether the wrappers are in their slots (recorded steps only). Setting it puts them in (around whatever each slot
    /// holds, when that is still the layer or a chain of wrappers of it; a slot the user has refilled is left alone) or
    /// takes them out again.
    /// </summary>
    public bool Armed
    {
        get => _armed;
        set
        {
            if (value == _armed) return;
            if (value) Insert();
            else Remove();
            _armed = value;
        }
    }

    private void Insert()
    {
        foreach (var (slot, layer, wrapper) in _slots)
        {
            if (slot.Get() is not nn.Module<Tensor, Tensor> current || !ReferenceEquals(ModuleSlot.Unwrap(current), layer)) continue;
            wrapper.Inner = current;
            wrapper.Armed = true;
            slot.Set(wrapper);
            _inserted.Add((slot, wrapper));
        }
    }

    /// <summary>
    /// Takes every inserted wrapper out: the slot gets back what the wrapper wraps. A slot the user has meanwhile filled
    /// with something else is left as it is; when another monitor's wrapper was put around ours since, ours is unlinked
    /// from that chain instead, so monitors on one model can arm, disarm and be disposed in any order.
    /// </summary>
    private void Remove()
    {
        for (int i = _inserted.Count - 1; i >= 0; i--)
        {
            var (slot, wrapper) = _inserted[i];
            wrapper.Armed = false;
            var inner = wrapper.Inner;
            var current = slot.Get();
            if (ReferenceEquals(current, wrapper))
            {
                slot.Set(inner);
                continue;
            }
            for (var outer = current as RecordingWrapper; outer is not null; outer = outer.Inner as RecordingWrapper)
            {
                if (ReferenceEquals(outer.Inner, wrapper))
                {
                    outer.Inner = inner;
                    break;
                }
            }
        }
        _inserted.Clear();
    }

    /// <summary>Takes the wrappers out of their slots (every original module is back) and releases them.</summary>
    public void Dispose()
    {
        Armed = false;
        foreach (var (_, _, w) in _slots) w.Dispose();
        _slots.Clear();
    }

    private static string TypeName(Type t) =>
        t.IsGenericType ? $"{t.Name.Split('`')[0]}<{string.Join(", ", t.GetGenericArguments().Select(TypeName))}>" : t.Name;
}
