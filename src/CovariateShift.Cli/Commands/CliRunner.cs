using System.CommandLine;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// Runs a command body and turns user mistakes (bad arguments, missing or unreadable files) into a one-line
/// "error: ..." on stderr with exit code 2 instead of a stack trace. Unexpected exceptions still propagate.
/// </summary>
public static class CliRunner
{
    /// <summary>Exit code of a user mistake.</summary>
    public const int UserError = 2;

    /// <summary>Runs <paramref name="body"/>; a user mistake becomes one "error: ..." line on stderr and <see cref="UserError"/>.</summary>
    public static int Run(Func<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        try
        {
            return body();
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or UnauthorizedAccessException or FormatException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {OneLine(e)}");
            return UserError;
        }
    }

    /// <summary>
    /// The message of <paramref name="e"/> as one line for a person: without the .NET additions of argument exceptions
    /// ("(Parameter 'x')", "Actual value was ..."), its lines joined with "; ".
    /// </summary>
    public static string OneLine(Exception e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var message = e.Message;
        if (e is ArgumentOutOfRangeException { ActualValue: { } actual })
            message = message.Replace($"Actual value was {actual}.", "", StringComparison.Ordinal);
        if (e is ArgumentException { ParamName: { } param })
            message = message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal);
        var lines = message.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        return lines.Count == 0 ? e.GetType().Name : string.Join("; ", lines).Replace(":; ", ": ", StringComparison.Ordinal);
    }

    /// <summary>Adds a validator that rejects values below <paramref name="min"/>, naming the option and the value.</summary>
    public static Option<int> AtLeast(this Option<int> option, int min)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<int>();
            if (v < min) r.AddError($"{option.Name} must be at least {min}; got {v}.");
        });
        return option;
    }

    /// <summary>Adds a validator that rejects non-positive or non-finite values.</summary>
    public static Option<double> Positive(this Option<double> option)
    {
        ArgumentNullException.ThrowIfNull(option);
        option.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<double>();
            if (!(v > 0) || double.IsInfinity(v)) r.AddError($"{option.Name} must be a positive number; got {v}.");
        });
        return option;
    }
}
