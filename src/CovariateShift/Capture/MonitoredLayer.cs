using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Capture;

/// <summary>
/// A monitored layer: its descriptor and the hooked module. Immutable; what changes per step lives in the stage that
/// owns it (the engine's per-layer buffers, the builder's <see cref="Building.LayerHistory"/>).
/// </summary>
internal sealed class MonitoredLayer
{
    public MonitoredLayer(int index, string name, nn.Module<Tensor, Tensor> module)
    {
        // GetName() is wrong for BatchNorm2d/InstanceNorm2d in TorchSharp 0.107: the type name is used.
        Descriptor = new LayerDescriptor(index, name, module.GetType().Name);
        Module = module;
        HasParameters = module.parameters(recurse: false).Any();
    }

    public LayerDescriptor Descriptor { get; }

    public int Index => Descriptor.Index;

    public string Name => Descriptor.Name;

    public nn.Module<Tensor, Tensor> Module { get; }

    /// <summary>Whether the layer has parameters of its own (fixed by the architecture).</summary>
    public bool HasParameters { get; }

    /// <summary>The layer's own parameters, listed afresh (moving a model with <c>to()</c> replaces its Parameter objects).</summary>
    public TorchSharp.Modules.Parameter[] Parameters => Module.parameters(recurse: false).ToArray();
}
