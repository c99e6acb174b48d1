using System.Collections.Immutable;

namespace CovariateShift.Capture;

/// <summary>
/// The raw reductions of one layer's output at one recorded step, as an engine hands them to the record builder:
/// exact counts, moments and extremes, and the finite sampled values for percentiles and the histogram. Immutable.
/// </summary>
internal sealed record LayerSummary
{
    /// <summary>Elements in the output.</summary>
    public required long Count { get; init; }

    /// <summary>Finite elements (the moments and extremes are over these).</summary>
    public required long FiniteCount { get; init; }

    /// <summary>Mean of the finite elements (NaN when there are none).</summary>
    public required double Mean { get; init; }

    /// <summary>Population variance of the finite elements (NaN when there are none).</summary>
    public required double Variance { get; init; }

    /// <summary>Smallest finite element (NaN or +Inf when there are none).</summary>
    public required double Min { get; init; }

    /// <summary>Largest finite element.</summary>
    public required double Max { get; init; }

    /// <summary>Elements with |x| at or below the near-zero threshold.</summary>
    public required long NearZero { get; init; }

    /// <summary>Units along dimension 1 (features or channels; 1 for a 1-D output).</summary>
    public required long Units { get; init; }

    /// <summary>Units all of whose elements in the batch are near zero.</summary>
    public required long DeadUnits { get; init; }

    /// <summary>Saturated elements (sigmoid/tanh layers; 0 otherwise).</summary>
    public required long Saturated { get; init; }

    /// <summary>NaN elements.</summary>
    public required long Nan { get; init; }

    /// <summary>+Inf or -Inf elements.</summary>
    public required long Inf { get; init; }

    /// <summary>4-D outputs: mean over channels of the squared channel mean; null otherwise.</summary>
    public double? ChannelSquaredMean { get; init; }

    /// <summary>4-D outputs: mean over channels of the channel variance; null otherwise.</summary>
    public double? ChannelVariance { get; init; }

    /// <summary>The finite sampled values (a fixed stratified sample of the output). When <see cref="SampleLease"/> is
    /// set they live in a pooled buffer: read them only until the capture is released
    /// (<see cref="StepCapture.ReleaseSamples"/>), which lends the buffer to a later step.</summary>
    public ImmutableArray<float> Sample { get; init; } = [];

    /// <summary>The pooled buffer behind <see cref="Sample"/>, or null when the sample is an array of its own.</summary>
    public SampleLease? SampleLease { get; init; }

    /// <summary>A summary of an output without elements: Count 0, NaN moments, empty sample.</summary>
    public static LayerSummary Empty { get; } = new()
    {
        Count = 0, FiniteCount = 0, Mean = double.NaN, Variance = double.NaN, Min = double.NaN, Max = double.NaN,
        NearZero = 0, Units = 0, DeadUnits = 0, Saturated = 0, Nan = 0, Inf = 0,
    };
}
