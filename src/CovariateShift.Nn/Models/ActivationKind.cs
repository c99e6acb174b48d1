namespace CovariateShift.Nn.Models;

/// <summary>The hidden-layer nonlinearity. Command-line names: relu, sigmoid, tanh, gelu.</summary>
public enum ActivationKind
{
    /// <summary><c>relu</c>: max(0, x).</summary>
    Relu,

    /// <summary><c>sigmoid</c>: 1 / (1 + e^(−x)).</summary>
    Sigmoid,

    /// <summary><c>tanh</c>: tanh(x).</summary>
    Tanh,

    /// <summary><c>gelu</c>: x·Φ(x) with the exact Gaussian CDF Φ (no tanh approximation).</summary>
    Gelu,
}
