namespace CovariateShift.Sinks;

/// <summary>
/// Names of the structured properties of the monitor's Serilog events (<see cref="SerilogSink"/>): the one set shared
/// by the sink that writes them and every reader of a log (the report's warnings table reads log.clef with them).
/// </summary>
public static class LogProperties
{
    /// <summary>Training step of the event (the run's step number).</summary>
    public const string Step = "Step";

    /// <summary>A layer's dotted name; on an anomaly warning, the layer with the most extreme value.</summary>
    public const string Layer = "Layer";

    /// <summary>The <see cref="Records.AnomalyKind"/> of an anomaly warning, as its name.</summary>
    public const string Kind = "Kind";

    /// <summary>An anomaly's value (the most extreme one of a warning).</summary>
    public const string Value = "Value";

    /// <summary>What to check: on the first warning of each kind in a run, and on every per-layer Debug event.</summary>
    public const string Hint = "Hint";

    /// <summary>The layers an anomaly warning is about (an array of dotted names, in model order).</summary>
    public const string Layers = "Layers";

    /// <summary>How many layers an anomaly warning is about.</summary>
    public const string LayerCount = "LayerCount";

    /// <summary>On a repeat summary: how many more times the same warning (kind and layers) was raised and not logged again.</summary>
    public const string Repeats = "Repeats";

    /// <summary>On a repeat summary: the step of the last repeat.</summary>
    public const string LastStep = "LastStep";

    /// <summary>Before the schema's names: the anomaly kind's property (read for logs written then).</summary>
    public const string LegacyKind = "AnomalyKind";
}
