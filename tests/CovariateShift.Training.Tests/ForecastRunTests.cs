using CovariateShift.Forecast;
using CovariateShift.Nn.Models;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CovariateShift.Training.Tests;

/// <summary>The forecaster (shipped defaults) on real short runs: one that diverges late is warned before it fails, a stable one is not.</summary>
/// <remarks>Seeds TorchSharp's global generator before building the model, so it runs alone.</remarks>
[CollectionDefinition(nameof(ForecastRunTests), DisableParallelization = true)]
[Collection(nameof(ForecastRunTests))]
public sealed class ForecastRunTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Lazy<ImageDataset> Train2000 = new(() => MnistFormat.LoadFashionMnist(train: true, limit: 2000));

    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-forecast-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>8x64 ReLU MLP without normalization (He init), SGD momentum 0.9, batch 128, recorded every 5 steps,
    /// linear warm-up over 150 steps to <paramref name="lr"/>: as in the forecast grid (models/grids/forecast-grid.json).</summary>
    private TrainResult Train(string name, double lr, int warmup, int steps, bool stop = false)
    {
        torch.manual_seed(2);
        using var model = ModelZoo.Create(new ModelSpec { Architecture = "mlp", InputShape = [1, 28, 28], Depth = 8, Width = 64, Init = WeightInit.He });
        var result = new Trainer(new TrainerOptions
        {
            Steps = steps, BatchSize = 128, LearningRate = lr, Momentum = 0.9, Seed = 2, RecordEvery = 5, LogEvery = 1,
            Schedule = new LearningRateSchedule { WarmupSteps = warmup },
            Monitor = new MonitorOptions { Forecast = new ForecastOptions() },
            OutputDirectory = Path.Combine(_dir, name), WriteCheckpoints = stop, StopOnForecast = stop,
        }).Train(model, Train2000.Value);
        output.WriteLine($"{name}: {result.Steps} steps, failure step {result.FailureStep}, diverged {result.DivergedAtStep}, first warning {result.FirstForecastStep}, final loss {result.FinalTrainLoss:F3}");
        return result;
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void A_run_that_diverges_late_is_warned_before_its_failure_step_and_forecast_jsonl_holds_the_warning()
    {
        var r = Train("diverging", lr: 0.3, warmup: 150, steps: 200);
        Assert.NotNull(r.FailureStep);
        Assert.True(r.FailureStep >= 50, $"the run should fail late (step >= 50); it failed at {r.FailureStep}");
        Assert.NotNull(r.FirstForecastStep);
        Assert.True(r.FirstForecastStep < r.FailureStep, $"warned at {r.FirstForecastStep}, failed at {r.FailureStep}");

        // The failure step follows the definition from the run's own losses.
        Assert.Equal(FailureLabel.FailureStep(r.Losses, Train2000.Value.Classes), r.FailureStep);

        // forecast.jsonl (written by the trainer, read by the contract's reader) holds the first warning.
        var lines = ForecastFile.Read(Path.Combine(_dir, "diverging", ForecastFile.FileName));
        Assert.NotEmpty(lines);
        Assert.Equal(r.FirstForecastStep, lines[0].Step);
        Assert.True(lines[0].Score >= 1);
        Assert.Equal(new ForecastOptions().Horizon, lines[0].Horizon);
        Assert.NotEmpty(lines[0].Signals);
        Assert.All(lines[0].Signals, s => Assert.Contains(s.Statistic, new[] { ForecastSignal.ActivationRms, ForecastSignal.GradientNorm, ForecastSignal.Loss, ForecastSignal.NonFinite }));
        Assert.Equal(0, lines[0].Step % 5);   // a recorded step
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void A_stable_run_is_not_warned()
    {
        var r = Train("stable", lr: 0.05, warmup: 0, steps: 200);
        Assert.Null(r.FailureStep);
        Assert.Null(r.FirstForecastStep);
        Assert.Empty(ForecastFile.Read(Path.Combine(_dir, "stable", ForecastFile.FileName)));
        Assert.True(File.Exists(Path.Combine(_dir, "stable", ForecastFile.FileName)), "--forecast writes the file even without warnings");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Stop_on_forecast_stops_at_the_warning_and_saves_the_checkpoint()
    {
        var r = Train("stop", lr: 0.3, warmup: 150, steps: 200, stop: true);
        Assert.True(r.StoppedOnForecast);
        Assert.NotNull(r.FirstForecastStep);
        Assert.Equal(r.FirstForecastStep + 1, r.Steps);   // stopped at the end of the warned step
        Assert.False(r.Diverged);
        Assert.True(File.Exists(Path.Combine(_dir, "stop", TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName)));
    }
}
