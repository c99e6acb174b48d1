using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn;

/// <summary>
/// Creates parameters and buffers that belong to a module rather than to whatever dispose scope is open while
/// the module is constructed (a tensor created inside <c>torch.NewDisposeScope()</c> is otherwise freed when the
/// scope ends, leaving the module with dead handles).
/// </summary>
internal static class Owned
{
    /// <summary>A trainable parameter wrapping <paramref name="data"/>, detached from any dispose scope.</summary>
    public static Parameter Parameter(Tensor data)
    {
        var parameter = new Parameter(data, requires_grad: true);
        parameter.DetachFromDisposeScope();
        return parameter;
    }

    /// <summary><paramref name="buffer"/> itself, detached from any dispose scope.</summary>
    public static Tensor Buffer(Tensor buffer) => buffer.DetachFromDisposeScope();
}
