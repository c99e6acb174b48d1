using CovariateShift.Cli.Commands;

return CliApp.Run(args);
