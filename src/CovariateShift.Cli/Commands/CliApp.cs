using System.CommandLine;
using System.CommandLine.Invocation;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// The <c>covshift</c> command line: builds the root command with its subcommands and runs it. Usage mistakes found
/// while parsing (unknown option, missing required option, a value a validator rejects) are reported as one
/// "error: ..." line on stderr with exit code 2, like the errors <see cref="CliRunner"/> reports while running.
/// </summary>
public static class CliApp
{
    /// <summary>The root command with every subcommand (bench, train, verify, finetune, report, experiment, sweep).</summary>
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("covshift: make internal covariate shift visible in TorchSharp training (activation statistics, shift metrics, gradient health).");
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(VerifyCommand.Create());
        root.Subcommands.Add(ConvCheckCommand.Create());
        root.Subcommands.Add(FinetuneCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        root.Subcommands.Add(ExperimentCommand.Create());
        root.Subcommands.Add(SweepCommand.Create());
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/>; returns the exit code (0 success, 2 usage or input error).</summary>
    public static int Run(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var parse = CreateRoot().Parse(args);
        if (parse.Action is ParseErrorAction && parse.Errors.Count > 0)
        {
            var command = parse.CommandResult.Command;
            var help = command is RootCommand ? "covshift --help" : $"covshift {command.Name} --help";
            Console.Error.WriteLine($"error: {string.Join(" ", parse.Errors.Select(e => e.Message))} (see {help})");
            return CliRunner.UserError;
        }

        return parse.Invoke();
    }
}
