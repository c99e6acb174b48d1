using System.Text.Json;
using System.Text;
using CovariateShift.Cli.Commands;
using CovariateShift.Experiments.Forecasting;
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
    public void A_grid_file_that_is_not_a_grid_is_a_user_mistake_naming_the_file()
    {
        var bad = Path.Combine(_dir, "grid.json");
        File.WriteAllText(bad, """{"steps": 10, "points": []}""");
        var (code, error) = Run("experiment", "forecast", "--grid", bad, "--out", Path.Combine(_dir, "exp"));
        Assert.Equal(2, code);
        Assert.Contains($"'{bad}' is not a forecast grid: expected points, tuning_seeds and held_out_seeds, with no seed in both", error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_dir, "exp", "adam-w0.05-s0")));
    }

    [Fact]
    public void A_grid_reads_back_from_a_stream_as_written()
    {
        var grid = new ForecastGrid
        {
            Steps = 40, RecordEvery = 1, TuningSeeds = [4], HeldOutSeeds = [5, 6],
            Points = [new ForecastGridPoint("p", 2, 16, "none", "adam", 0.05, 10, "he")],
        };
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(grid.ToJson()));
        var back = ForecastGrid.Read(stream, "memory");
        Assert.Equal(grid.ToJson(), back.ToJson());
        Assert.Equal(["p-s4", "p-s5", "p-s6"], back.Runs().Select(r => r.Run));
        using var unknown = new MemoryStream(Encoding.UTF8.GetBytes("""{"stepz": 3}"""));
        var e = Assert.Throws<InvalidDataException>(() => ForecastGrid.Read(unknown, "the test grid"));
        Assert.StartsWith("the test grid is not a forecast grid: ", e.Message, StringComparison.Ordinal);
    }

    private static JsonElement Property(JsonElement root, string camel, string snake) => root.TryGetProperty(camel, out var v) ? v : root.GetProperty(snake);

    [Fact]
    [Trait("Category", "Slow")]
    public void On_forecast_stop_saves_the_checkpoint_and_exits_with_its_own_code_and_resume_goes_on_forecasting()
    {
        // A grid point that learns and then fails late (the forecast grid's adam-w0.1, seed 2): 4x128 MLP without
        // normalization, Adam warmed up over 150 steps to lr 0.1. Straight through, seeds 0-5 of it were first warned at
        // steps 28-52 and failed at steps 99-109 (2-core CPU, 2026-12-04), well inside the 180 steps.
        var run = Path.Combine(_dir, "stop");
        var (code, error) = Run("train", "--depth", "4", "--width", "128", "--optimizer", "adam", "--lr", "0.1", "--warmup-steps", "150", "--steps", "180",
            "--train-limit", "2000", "--test-limit", "200", "--record-every", "2", "--seed", "2", "--allow-divergence", "--on-forecast", "stop", "--out", run);
        Assert.True(code == 4, // the documented exit code of --on-forecast stop
            $"exit {code}: {error}");
        Assert.Contains("Stopped: the forecaster predicted divergence at step", error, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(run, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName)));
        var warnings = ForecastFile.Read(Path.Combine(run, ForecastFile.FileName));
        var first = Assert.Single(warnings);
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json"))))
        {
            var root = summary.RootElement;
            Assert.Equal(first.Step, Property(root, "firstForecastStep", "first_forecast_step").GetInt64());
            Assert.True(Property(root, "stoppedOnForecast", "stopped_on_forecast").GetBoolean());
            Assert.Equal(first.Step + 1, Property(root, "steps", "steps").GetInt32());
        }

        // --resume: config.json has no forecast setting, but the run's forecast.jsonl says it was forecasting. It goes on
        // forecasting with warnings only: it trains to the end (no second stop), keeps the first warning, and the summary
        // has the first warning step (it is null for a run without the forecaster).
        (code, error) = Run("train", "--resume", run);
        Assert.True(code == 0, $"exit {code}: {error}");
        var after = ForecastFile.Read(Path.Combine(run, ForecastFile.FileName));
        Assert.NotEmpty(after);
        Assert.Equal(first, after[0] with { Signals = first.Signals }, EqualityComparer<DivergenceForecast>.Default);
        Assert.Equal(first.Signals, after[0].Signals);
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json"))))
        {
            var root = summary.RootElement;
            Assert.Equal(180, Property(root, "steps", "steps").GetInt32());
            Assert.Equal(first.Step, Property(root, "firstForecastStep", "first_forecast_step").GetInt64());
            Assert.False(Property(root, "stoppedOnForecast", "stopped_on_forecast").GetBoolean());
            Assert.Equal(JsonValueKind.Number, Property(root, "failureStep", "failure_step").ValueKind);   // the doomed run failed after all
        }
    }
}
