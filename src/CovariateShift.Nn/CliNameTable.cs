namespace CovariateShift.Nn;

/// <summary>
/// Two-way map between the values of an enum and their command-line names (lower-case, hyphenated).
/// Parsing is case-insensitive, ignores surrounding white space, and reports every valid name when it fails.
/// </summary>
/// <typeparam name="T">The enum type; every defined value must have exactly one name.</typeparam>
internal sealed class CliNameTable<T>
    where T : struct, Enum
{
    private readonly (T Value, string Name)[] entries;
    private readonly string what;

    /// <param name="what">What the names denote, used in error messages (e.g. "normalization").</param>
    /// <param name="entries">One (value, name) pair per defined enum value.</param>
    public CliNameTable(string what, params (T Value, string Name)[] entries)
    {
        foreach (var value in Enum.GetValues<T>())
        {
            if (entries.Count(e => EqualityComparer<T>.Default.Equals(e.Value, value)) != 1)
            {
                throw new InvalidOperationException($"{typeof(T).Name}.{value} needs exactly one command-line name.");
            }
        }

        this.what = what;
        this.entries = entries;
        Names = entries.Select(e => e.Name).ToArray();
    }

    /// <summary>The valid names, in declaration order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Parses a command-line name.</summary>
    /// <exception cref="ArgumentException">The name is unknown; the message quotes it and lists the valid names.</exception>
    public T Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var key = name.Trim();
        foreach (var (value, cliName) in entries)
        {
            if (string.Equals(cliName, key, StringComparison.OrdinalIgnoreCase))
            {
                return value;
            }
        }

        throw new ArgumentException($"Unknown {what} '{name}'. Valid names: {string.Join(", ", Names)}.");
    }

    /// <summary>The command-line name of <paramref name="value"/>.</summary>
    public string NameOf(T value)
    {
        foreach (var (candidate, cliName) in entries)
        {
            if (EqualityComparer<T>.Default.Equals(candidate, value))
            {
                return cliName;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(value), value, $"Not a defined {typeof(T).Name} value.");
    }
}
