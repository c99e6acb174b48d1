namespace CovariateShift.Nn.Normalization;

/// <summary>Where the normalization sits relative to the nonlinearity of a hidden layer.</summary>
public enum NormPlacement
{
    /// <summary><c>before</c>: linear/conv → norm → activation, as in the Batch Normalization paper (default).</summary>
    BeforeActivation,

    /// <summary><c>after</c>: linear/conv → activation → norm.</summary>
    AfterActivation,
}
