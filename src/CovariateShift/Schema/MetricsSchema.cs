namespace CovariateShift.Schema;

/// <summary>The metrics file's schema: its version and the naming rule of its fields.</summary>
public static class MetricsSchema
{
    /// <summary>Version written in every line's <c>version</c> field. Version 1 (no version field) is read too.</summary>
    public const int Version = 2;
}
