namespace CovariateShift.Nn.Normalization;

/// <summary>Command-line names and properties of <see cref="NormKind"/>.</summary>
public static class NormKinds
{
    private static readonly CliNameTable<NormKind> Table = new(
        "normalization",
        (NormKind.None, "none"),
        (NormKind.Batch, "batch"),
        (NormKind.Layer, "layer"),
        (NormKind.Group, "group"),
        (NormKind.Instance, "instance"),
        (NormKind.WeightStd, "weight-std"),
        (NormKind.Rms, "rms"),
        (NormKind.BatchRenorm, "batch-renorm"),
        (NormKind.NoisyBatch, "noisy-batch"));

    /// <summary>All command-line names: none, batch, layer, group, instance, weight-std, rms, batch-renorm, noisy-batch.</summary>
    public static IReadOnlyList<string> CliNames => Table.Names;

    /// <summary>Parses a command-line name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message quotes it and lists the valid names.</exception>
    public static NormKind Parse(string name) => Table.Parse(name);

    /// <summary>The command-line name, e.g. <c>weight-std</c>.</summary>
    public static string ToCliName(this NormKind kind) => Table.NameOf(kind);

    /// <summary>
    /// True when the normalization subtracts a per-channel (per-feature) mean and adds a learned per-channel shift
    /// (batch, batch-renorm, noisy-batch, instance). A bias in the layer right before such a normalization cancels
    /// out exactly, so the models build that layer without a bias. Layer, group, weight-std and rms normalization
    /// do not cancel a per-channel bias (they pool several channels, or subtract no mean), so the bias is kept.
    /// </summary>
    public static bool CancelsPrecedingBias(this NormKind kind) =>
        kind is NormKind.Batch or NormKind.BatchRenorm or NormKind.NoisyBatch or NormKind.Instance;
}
