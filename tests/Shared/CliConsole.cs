using CovariateShift.Cli.Commands;

namespace CovariateShift.TestSupport;

/// <summary>Runs the CLI in-process with the console captured (Console is process-wide: callers keep such tests out of
/// parallel collections). Linked into the test projects that reference the CLI.</summary>
internal static class CliConsole
{
    public static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var (previousOut, previousError) = (Console.Out, Console.Error);
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            return (CliApp.Run(args), output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
        }
    }
}
