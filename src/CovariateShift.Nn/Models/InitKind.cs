namespace CovariateShift.Nn.Models;

/// <summary>The weight-initialization family of a <see cref="WeightInit"/>.</summary>
public enum InitKind
{
    /// <summary><c>default</c>: keep each layer's own TorchSharp initialization (U(±1/√fan_in) for weight and bias).</summary>
    Default,

    /// <summary><c>he</c>: W ~ N(0, 2/fan_in) (He et al. 2015, fan-in mode, ReLU gain).</summary>
    He,

    /// <summary><c>xavier</c>: W ~ U(−a, a), a = √(6/(fan_in + fan_out)) (Glorot &amp; Bengio 2010).</summary>
    Xavier,

    /// <summary><c>lecun</c>: W ~ N(0, 1/fan_in) (LeCun et al. 1998).</summary>
    Lecun,

    /// <summary><c>gaussian:σ</c>: W ~ N(0, σ²) with a fixed σ.</summary>
    Gaussian,
}
