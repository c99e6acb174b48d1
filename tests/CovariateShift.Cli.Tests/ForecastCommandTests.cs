using System.Text.Json;
using CovariateShift.Cli.Commands;
using CovariateShift.Forecast;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Tests;

/// <summary><c>covshift train --forecast / --on-forecast</c>, in-process (redirects Console.Error, so with the train command tests).</summary>
[Collection(nameof(TrainCommandTests))]
public sealed class ForecastCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-forecastcmd-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Error) Run(params string[] args)
    {
        var error = new StringWriter();
        var previous = Console.Error;
        Console.SetError(error);
        try
        {
            return (CliApp.Run(args), error.ToString());
        }
        finally
        {
            Console.SetError(previous);
        }
    }

    [Fact]
    public void An_unknown_on_forecast_value_is_a_user_mistake()
    {
        var (code, error) = Run("train", "--on-forecast", "panic", "--steps", "1", "--out", Path.Combine(_dir, "bad"));
        Assert.Equal(2, code);
        Assert.Contains("--on-forecast must be warn or stop; got 'panic'", error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_dir, "bad")));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void On_forecast_stop_saves_the_checkpoint_and_exits_with_its_own_code()
    {
        // The forecast grid's late-diverging setting: 8x64 MLP without normalization, warm-up over 150 steps to lr 0.3.
        var run = Path.Combine(_dir, "stop");
        var (code, error) = Run("train", "--depth", "8", "--width", "64", "--lr", "0.3", "--warmup-steps", "150", "--steps", "200", "--train-limit", "2000",
            "--test-limit", "200", "--record-every", "5", "--seed", "2", "--on-forecast", "stop", "--out", run);
        Assert.True(code == 4, // the documented exit code of --on-forecast stop
            $"exit {code}: {error}");
        Assert.Contains("Stopped: the forecaster predicted divergence at step", error, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(run, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName)));
        var warnings = ForecastFile.Read(Path.Combine(run, ForecastFile.FileName));
        var first = Assert.Single(warnings);
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json")));
        var root = summary.RootElement;
        Assert.Equal(first.Step, (root.TryGetProperty("firstForecastStep", out var s) ? s : root.GetProperty("first_forecast_step")).GetInt64());
        Assert.True((root.TryGetProperty("stoppedOnForecast", out var b) ? b : root.GetProperty("stopped_on_forecast")).GetBoolean());
        Assert.Equal(first.Step + 1, (root.TryGetProperty("steps", out var n) ? n : root.GetProperty("steps")).GetInt32());
    }
}
