namespace CovariateShift.Statistics;

/// <summary>
/// Saturation thresholds for bounded activations: within 1% of the output range of a bound.
/// Sigmoid (range [0, 1]): x &lt;= 0.01 or x &gt;= 0.99. Tanh (range [-1, 1]): x &lt;= -0.98 or x &gt;= 0.98.
/// </summary>
internal readonly record struct SaturationBounds(float Low, float High, double RangeLow, double RangeHigh)
{
    /// <summary>Bounds for a layer type name, or null when the layer's output is not bounded.</summary>
    public static SaturationBounds? ForLayerType(string typeName) => typeName switch
    {
        "Sigmoid" => new SaturationBounds(0.01f, 0.99f, 0.0, 1.0),
        "Tanh" => new SaturationBounds(-0.98f, 0.98f, -1.0, 1.0),
        _ => null,
    };
}
