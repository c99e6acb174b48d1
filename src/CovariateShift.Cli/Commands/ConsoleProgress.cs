using System.Globalization;
using CovariateShift.Training.Training;
using Serilog.Core;
using Serilog.Events;
using Spectre.Console;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// The console side of a training run: a live Spectre.Console progress bar (epoch, step, loss, best accuracy, steps/s,
/// time left) when the console is a terminal, plain log lines when it is not (CI, pipes). Warnings and errors are
/// printed above the bar.
/// </summary>
internal static class ConsoleProgress
{
    /// <summary>Whether a live bar can be drawn: an interactive terminal on stdout.</summary>
    public static bool Live => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    /// <summary>Runs <paramref name="body"/> with a bar titled <paramref name="title"/> that it feeds through the given <see cref="IProgress{T}"/>.</summary>
    public static T Run<T>(string title, Func<IProgress<TrainProgress>, T> body)
    {
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), autoStart: true, maxValue: 1);
                result = body(new Bar(task, title));
                task.Value = task.MaxValue;
                ctx.Refresh();
            });
        return result;
    }

    private sealed class Bar(ProgressTask task, string title) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value)
        {
            task.MaxValue = value.Steps;
            task.Value = value.Step;
            var text = string.Create(CultureInfo.InvariantCulture,
                $"{title} epoch {value.Epoch:F2} step {value.Step}/{value.Steps} loss {value.MeanLoss:F4}{(value.BestAccuracy is { } a ? $" best acc {a:F4}" : "")} {value.StepsPerSecond:F1} steps/s");
            task.Description = Markup.Escape(text);
        }
    }

    /// <summary>A Serilog sink that prints through Spectre.Console (above a live bar).</summary>
    public sealed class Sink : ILogEventSink
    {
        /// <inheritdoc />
        public void Emit(LogEvent logEvent)
        {
            ArgumentNullException.ThrowIfNull(logEvent);
            var level = logEvent.Level switch
            {
                LogEventLevel.Warning => "[yellow]WRN[/]",
                LogEventLevel.Error or LogEventLevel.Fatal => "[red]ERR[/]",
                _ => "INF",
            };
            AnsiConsole.MarkupLine($"{level} {Markup.Escape(logEvent.RenderMessage(CultureInfo.InvariantCulture))}");
        }
    }
}
