using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>Finds the leaf layers of a model that the monitor can hook, and applies the type/name filters.</summary>
internal static class LayerDiscovery
{
    /// <summary>Depth-first, in registration order (the order layers are usually called in), with dotted names.</summary>
    private static void CollectLeaves(nn.Module module, string prefix, List<(string, nn.Module)> leaves)
    {
        foreach (var (name, child) in module.named_children())
        {
            var full = prefix.Length == 0 ? name : $"{prefix}.{name}";
            if (child.children().Any()) CollectLeaves(child, full, leaves);
            else leaves.Add((full, child));
        }
    }

    /// <summary>
    /// Leaf layers (modules without children) in model order (depth-first) with their dotted <c>named_modules()</c> names. A model
    /// without children that has parameters is itself the only layer (named after its type). Leaves that are not
    /// <c>Module&lt;Tensor, Tensor&gt;</c> cannot carry a tensor forward hook and are returned in <paramref name="skipped"/>.
    /// </summary>
    public static List<(string Name, nn.Module<Tensor, Tensor> Module)> Find(nn.Module model, MonitorOptions options, out List<string> skipped)
    {
        ArgumentNullException.ThrowIfNull(model);
        skipped = [];
        var leaves = new List<(string, nn.Module)>();
        CollectLeaves(model, "", leaves);
        if (leaves.Count == 0 && !model.children().Any() && model.parameters().Any())
            leaves.Add((model.GetType().Name, model));

        if (leaves.Count == 0)
        {
            throw new ArgumentException(
                $"The model ({model.GetType().Name}) has no leaf layers to monitor. Expected a model whose layers are registered " +
                "submodules (custom modules must call RegisterComponents() in their constructor).", nameof(model));
        }

        var typeFilter = new HashSet<string>(options.LayerTypes, StringComparer.OrdinalIgnoreCase);
        var result = new List<(string, nn.Module<Tensor, Tensor>)>();
        foreach (var (name, module) in leaves)
        {
            if (typeFilter.Count > 0 && !typeFilter.Contains(module.GetType().Name)) continue;
            if (options.LayerNamePattern is { } rx && !rx.IsMatch(name)) continue;
            if (module is nn.Module<Tensor, Tensor> hookable) result.Add((name, hookable));
            else skipped.Add($"{name} ({module.GetType().Name}: not a Module<Tensor, Tensor>)");
        }

        if (result.Count == 0)
        {
            var available = string.Join(", ", leaves.Take(20).Select(l => $"{l.Item1} ({l.Item2.GetType().Name})"));
            var filters = $"types [{string.Join(", ", options.LayerTypes)}], name pattern '{options.LayerNamePattern}'";
            throw new ArgumentException(
                $"No layer of the model matched the filters ({filters}). Layers available: {available}{(leaves.Count > 20 ? ", ..." : "")}.", nameof(options));
        }
        return result;
    }
}
