namespace CovariateShift.Nn.Normalization;

/// <summary>Command-line names of <see cref="NormPlacement"/>: <c>before</c> and <c>after</c>.</summary>
public static class NormPlacements
{
    private static readonly CliNameTable<NormPlacement> Table = new(
        "normalization placement",
        (NormPlacement.BeforeActivation, "before"),
        (NormPlacement.AfterActivation, "after"));

    /// <summary>All command-line names: before, after.</summary>
    public static IReadOnlyList<string> CliNames => Table.Names;

    /// <summary>Parses <c>before</c> or <c>after</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message quotes it and lists the valid names.</exception>
    public static NormPlacement Parse(string name) => Table.Parse(name);

    /// <summary>The command-line name.</summary>
    public static string ToCliName(this NormPlacement placement) => Table.NameOf(placement);
}
