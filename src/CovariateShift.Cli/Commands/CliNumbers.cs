using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// Numeric options parsed culture-invariantly and strictly: integers without separators, decimal numbers with '.' as
/// the decimal point and no thousands separators ("0,01" is an error, not 1), and floating-point values that must fit
/// float32 (the optimizers compute in float32). Mistakes are parse errors: one "error:" line and exit code 2.
/// </summary>
public static class CliNumbers
{
    /// <summary>The smallest positive normal float32.</summary>
    public const double Float32MinNormal = 1.1754943508222875e-38;

    /// <summary>An int option with a default and a minimum.</summary>
    public static Option<int> WholeNumber(string name, string description, int defaultValue, int min) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue, CustomParser = r => ParseInt(r, name, min) ?? default };

    /// <summary>An optional int option (null when not given) with a minimum.</summary>
    public static Option<int?> OptionalInt(string name, string description, int min) =>
        new(name) { Description = description, CustomParser = r => ParseInt(r, name, min) };

    /// <summary>A float32-range number option with a default, in [min, max] (min exclusive when <paramref name="minExclusive"/>).</summary>
    public static Option<double> Number(string name, string description, double defaultValue, double min, bool minExclusive, double max, bool maxExclusive = false) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue, CustomParser = r => ParseFloat(r, name, min, minExclusive, max, maxExclusive) ?? default };

    /// <summary>An optional float32-range number option (null when not given).</summary>
    public static Option<double?> OptionalFloat(string name, string description, double min, bool minExclusive, double max, bool maxExclusive = false) =>
        new(name) { Description = description, CustomParser = r => ParseFloat(r, name, min, minExclusive, max, maxExclusive) };

    private static int? ParseInt(ArgumentResult r, string name, int min)
    {
        var text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v))
        {
            r.AddError(IsInteger(text)
                ? $"{name} {text} is out of range; expected a whole number from {min} to {int.MaxValue}."
                : $"{name} '{text}' is not a whole number; expected an integer >= {min} (digits only).");
            return null;
        }
        if (v < min)
        {
            r.AddError($"{name} must be at least {min}; got {v}.");
            return null;
        }
        return v;
    }

    private static double? ParseFloat(ArgumentResult r, string name, double min, bool minExclusive, double max, bool maxExclusive)
    {
        var text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || double.IsNaN(v))
        {
            r.AddError($"{name} '{text}' is not a number; expected a decimal number with '.' as the decimal point (e.g. 0.01 or 1e-3).");
            return null;
        }
        bool below = minExclusive ? v <= min : v < min;
        bool above = maxExclusive ? v >= max : v > max;
        if (below || above || Math.Abs(v) > float.MaxValue)
        {
            r.AddError($"{name} must be in {Range(min, minExclusive, max, maxExclusive)}; got {text}.");
            return null;
        }
        if (v != 0 && Math.Abs(v) < Float32MinNormal)
        {
            bool zeroAllowed = minExclusive ? 0 > min : 0 >= min;
            r.AddError(string.Create(CultureInfo.InvariantCulture,
                $"{name} {text} does not fit a float32 (the optimizers compute in float32); expected {(zeroAllowed ? "0 or " : "")}a magnitude of at least {Float32MinNormal:G3}."));
            return null;
        }
        return v;
    }

    /// <summary>Whether <paramref name="text"/> is an optionally signed run of digits (a whole number of any size).</summary>
    private static bool IsInteger(string text)
    {
        var digits = text.StartsWith('-') || text.StartsWith('+') ? text[1..] : text;
        return digits.Length > 0 && digits.All(char.IsAsciiDigit);
    }

    /// <summary>The valid interval of a float option, with float32's limits where the option has none of its own.</summary>
    private static string Range(double min, bool minExclusive, double max, bool maxExclusive)
    {
        double hi = Math.Min(max, float.MaxValue);
        double lo = Math.Max(min, -float.MaxValue);
        bool hiOpen = maxExclusive && hi == max;
        bool loOpen = minExclusive && lo == min;
        return string.Create(CultureInfo.InvariantCulture, $"{(loOpen ? "(" : "[")}{lo:G3}, {hi:G3}{(hiOpen ? ")" : "]")}");
    }
}
