using System.CommandLine;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// Runs a command body and turns user mistakes (bad arguments, missing or unreadable files) into a one-line
/// "error: ..." on stderr with exit code 2 instead of a stack trace. Unexpected exceptions still propagate.
/// </summary>
internal static class CliRunner
{
    public const int UserError = 2;

    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or UnauthorizedAccessException or FormatException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return UserError;
        }
    }

    /// <summary>Adds a validator that rejects values below <paramref name="min"/>, naming the option and the value.</summary>
    public static Option<int> AtLeast(this Option<int> option, int min)
    {
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
        option.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<double>();
            if (!(v > 0) || double.IsInfinity(v)) r.AddError($"{option.Name} must be a positive number; got {v}.");
        });
        return option;
    }
}
