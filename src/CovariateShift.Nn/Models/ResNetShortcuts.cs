namespace CovariateShift.Nn.Models;

/// <summary>Command-line names of <see cref="ResNetShortcut"/>: <c>A</c> and <c>B</c> (case-insensitive).</summary>
public static class ResNetShortcuts
{
    private static readonly CliNameTable<ResNetShortcut> Table = new(
        "ResNet shortcut option",
        (ResNetShortcut.A, "A"),
        (ResNetShortcut.B, "B"));

    /// <summary>All command-line names: A, B.</summary>
    public static IReadOnlyList<string> CliNames => Table.Names;

    /// <summary>Parses <c>A</c> or <c>B</c> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message quotes it and lists the valid names.</exception>
    public static ResNetShortcut Parse(string name) => Table.Parse(name);

    /// <summary>The command-line name.</summary>
    public static string ToCliName(this ResNetShortcut shortcut) => Table.NameOf(shortcut);
}
