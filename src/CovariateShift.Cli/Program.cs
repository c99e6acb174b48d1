using System.CommandLine;
using CovariateShift.Cli.Commands;

var root = new RootCommand("covshift: make internal covariate shift visible in TorchSharp training (activation statistics, shift metrics, gradient health).");
root.Subcommands.Add(BenchCommand.Create());
return root.Parse(args).Invoke();
