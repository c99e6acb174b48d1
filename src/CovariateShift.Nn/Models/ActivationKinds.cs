using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>Command-line names of <see cref="ActivationKind"/> and the activation modules.</summary>
public static class ActivationKinds
{
    private static readonly CliNameTable<ActivationKind> Table = new(
        "activation",
        (ActivationKind.Relu, "relu"),
        (ActivationKind.Sigmoid, "sigmoid"),
        (ActivationKind.Tanh, "tanh"),
        (ActivationKind.Gelu, "gelu"));

    /// <summary>All command-line names: relu, sigmoid, tanh, gelu.</summary>
    public static IReadOnlyList<string> CliNames => Table.Names;

    /// <summary>Parses a command-line name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message quotes it and lists the valid names.</exception>
    public static ActivationKind Parse(string name) => Table.Parse(name);

    /// <summary>The command-line name.</summary>
    public static string ToCliName(this ActivationKind kind) => Table.NameOf(kind);

    /// <summary>
    /// A new, parameter-free activation module (TorchSharp's ReLU, Sigmoid, Tanh or GELU), so that a forward hook
    /// can observe the post-activation tensor.
    /// </summary>
    public static nn.Module<Tensor, Tensor> Create(this ActivationKind kind) => kind switch
    {
        ActivationKind.Relu => nn.ReLU(),
        ActivationKind.Sigmoid => nn.Sigmoid(),
        ActivationKind.Tanh => nn.Tanh(),
        ActivationKind.Gelu => nn.GELU(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation."),
    };
}
