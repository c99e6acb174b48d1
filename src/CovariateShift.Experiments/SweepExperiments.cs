using System.Globalization;
using System.Text;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Reports.Figures;
using CovariateShift.Reports.Html;
using CovariateShift.Training.Training;

namespace CovariateShift.Experiments;

/// <summary>lr-sweep, depth-sweep and batch-sweep: one run per grid point, final test accuracy in a table.</summary>
internal static class SweepExperiments
{
    /// <summary>A run "trains" when its final test accuracy reaches this (chance is 0.1 on 10 classes).</summary>
    public const double TrainsThreshold = 0.5;

    public static (string, List<string>, ReportOptions, List<string>) LearningRate(ExperimentSettings s)
    {
        var lrs = s.LearningRates ?? [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0];
        var norms = ExperimentRunner.Norms(s, NormKind.None, NormKind.Batch, NormKind.Layer);
        int depth = s.Depth ?? 10, width = s.Width ?? 128, steps = s.Steps ?? 300;
        var (train, test) = ExperimentRunner.LoadData(s);
        using var trainData = train;
        using var testData = test;
        var options = new TrainerOptions { Steps = steps, BatchSize = s.BatchSize ?? 128, Momentum = 0.9, RecordEvery = Math.Max(1, steps / 30), LogEvery = steps };
        var results = new Dictionary<(NormKind, double), TrainResult>();
        var dirs = new List<string>();
        foreach (var norm in norms)
        {
            foreach (var lr in lrs)
            {
                var name = string.Create(CultureInfo.InvariantCulture, $"{norm.ToCliName()}-lr{lr}");
                var (dir, r) = ExperimentRunner.Train(s, name, ExperimentRunner.Mlp(depth, width, norm), options with { LearningRate = lr }, trainData, testData);
                results[(norm, lr)] = r;
                dirs.Add(dir);
            }
        }
        var sb = new StringBuilder();
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"Final test accuracy after {steps} steps ({depth}x{width} ReLU MLP, He init, batch {options.BatchSize}, SGD momentum 0.9, {s.Dataset}, {testData.Count} test images):\n\n"));
        sb.Append("| learning rate | ").Append(string.Join(" | ", norms.Select(n => n.ToCliName()))).Append(" |\n|---|").Append(string.Concat(norms.Select(_ => "---|"))).Append('\n');
        foreach (var lr in lrs)
        {
            sb.Append("| ").Append(lr.ToString(CultureInfo.InvariantCulture)).Append(" | ").Append(string.Join(" | ", norms.Select(n => ExperimentRunner.Cell(results[(n, lr)])))).Append(" |\n");
        }
        sb.Append("| best | ").Append(string.Join(" | ", norms.Select(n => BestLr(lrs, l => results[(n, l)])))).Append(" |\n");
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"| highest lr reaching {TrainsThreshold} | ")).Append(string.Join(" | ", norms.Select(n =>
            lrs.Where(l => !results[(n, l)].Diverged && results[(n, l)].TestAccuracy >= TrainsThreshold).Select(l => l.ToString(CultureInfo.InvariantCulture)).LastOrDefault() ?? "none"))).Append(" |\n");
        var fig = Path.Combine(s.OutputDirectory, "lr-sweep.png");
        PngFigures.Lines(norms.Select(n => (n.ToCliName(), lrs.ToArray(), lrs.Select(l => results[(n, l)].Diverged ? 0.1 : results[(n, l)].TestAccuracy ?? double.NaN).ToArray())).ToList(),
            fig, string.Create(CultureInfo.InvariantCulture, $"Final test accuracy vs learning rate ({depth}x{width} MLP, {steps} steps; diverged plotted at 0.1)"), "learning rate", "test accuracy", logX: true);
        var opts = ExperimentRunner.Options("lr-sweep: test accuracy vs learning rate, without and with normalization",
            string.Create(CultureInfo.InvariantCulture, $"{depth}x{width} ReLU MLP, He init, {steps} steps of batch {options.BatchSize}, SGD momentum 0.9, seed {s.Seed}."));
        return (sb.ToString(), [fig], opts, dirs);
    }

    private static string BestLr(IReadOnlyList<double> lrs, Func<double, TrainResult> result)
    {
        var best = lrs.Where(l => !result(l).Diverged).OrderByDescending(l => result(l).TestAccuracy ?? 0).FirstOrDefault(double.NaN);
        return double.IsNaN(best) ? "none" : string.Create(CultureInfo.InvariantCulture, $"{best} ({result(best).TestAccuracy:F4})");
    }

    public static (string, List<string>, ReportOptions, List<string>) Depth(ExperimentSettings s)
    {
        var depths = s.Depths ?? [2, 4, 8, 16, 32];
        var norms = ExperimentRunner.Norms(s, NormKind.None, NormKind.Batch, NormKind.Layer);
        int width = s.Width ?? 128, steps = s.Steps ?? 300;
        double lr = s.LearningRate ?? 0.01;
        var (train, test) = ExperimentRunner.LoadData(s);
        using var trainData = train;
        using var testData = test;
        var options = new TrainerOptions { Steps = steps, BatchSize = s.BatchSize ?? 128, LearningRate = lr, Momentum = 0.9, RecordEvery = Math.Max(1, steps / 30), LogEvery = steps };
        var results = new Dictionary<(NormKind, int), TrainResult>();
        var dirs = new List<string>();
        foreach (var norm in norms)
        {
            foreach (var d in depths)
            {
                var (dir, r) = ExperimentRunner.Train(s, $"{norm.ToCliName()}-depth{d}", ExperimentRunner.Mlp(d, width, norm, WeightInit.Default), options, trainData, testData);
                results[(norm, d)] = r;
                dirs.Add(dir);
            }
        }
        var sb = new StringBuilder();
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"Final test accuracy after {steps} steps (ReLU MLP of width {width}, TorchSharp's default init (kaiming-uniform, a = sqrt 5: Var[w] = 1/(3n)), batch {options.BatchSize}, SGD lr {lr} momentum 0.9, {s.Dataset}, {testData.Count} test images):\n\n"));
        sb.Append("| hidden layers | ").Append(string.Join(" | ", norms.Select(n => n.ToCliName()))).Append(" |\n|---|").Append(string.Concat(norms.Select(_ => "---|"))).Append('\n');
        foreach (var d in depths)
        {
            sb.Append("| ").Append(d.ToString(CultureInfo.InvariantCulture)).Append(" | ").Append(string.Join(" | ", norms.Select(n => ExperimentRunner.Cell(results[(n, d)])))).Append(" |\n");
        }
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"| deepest reaching {TrainsThreshold} | ")).Append(string.Join(" | ", norms.Select(n =>
            depths.Where(d => !results[(n, d)].Diverged && results[(n, d)].TestAccuracy >= TrainsThreshold).Select(d => d.ToString(CultureInfo.InvariantCulture)).LastOrDefault() ?? "none"))).Append(" |\n");
        var fig = Path.Combine(s.OutputDirectory, "depth-sweep.png");
        PngFigures.Lines(norms.Select(n => (n.ToCliName(), depths.Select(d => (double)d).ToArray(), depths.Select(d => results[(n, d)].Diverged ? 0.1 : results[(n, d)].TestAccuracy ?? double.NaN).ToArray())).ToList(),
            fig, string.Create(CultureInfo.InvariantCulture, $"Final test accuracy vs depth (width {width}, {steps} steps, lr {lr})"), "hidden layers", "test accuracy", logX: true);
        var opts = ExperimentRunner.Options("depth-sweep: the deepest MLP that still trains, without and with normalization",
            string.Create(CultureInfo.InvariantCulture, $"ReLU MLPs of width {width}, TorchSharp default init, {steps} steps of batch {options.BatchSize}, SGD lr {lr} momentum 0.9, seed {s.Seed}."));
        return (sb.ToString(), [fig], opts, dirs);
    }

    public static (string, List<string>, ReportOptions, List<string>) BatchSize(ExperimentSettings s)
    {
        var sizes = s.BatchSizes ?? [2, 4, 8, 16, 32, 64, 128];
        var norms = ExperimentRunner.Norms(s, NormKind.Batch, NormKind.Group);
        int width = s.Width ?? 8;
        int examples = (s.Steps ?? 50) * 128;   // the same number of examples for every batch size: --steps counts batches of 128
        double lr = s.LearningRate ?? 0.01;
        var (train, test) = ExperimentRunner.LoadData(s with { TestLimit = s.TestLimit ?? 2000 });
        using var trainData = train;
        using var testData = test;
        var results = new Dictionary<(NormKind, int), TrainResult>();
        var dirs = new List<string>();
        foreach (var norm in norms)
        {
            foreach (var b in sizes)
            {
                int steps = Math.Max(1, examples / b);
                var spec = ModelSpecResolver.ZooDefault("cnn", [1, 28, 28], 10) with { Depth = 4, Width = width, Norm = norm, Groups = norm == NormKind.Group ? 4 : null };
                var options = new TrainerOptions { Steps = steps, BatchSize = b, LearningRate = lr, Momentum = 0.9, RecordEvery = Math.Max(1, steps / 40), LogEvery = steps };
                var (dir, r) = ExperimentRunner.Train(s, $"{norm.ToCliName()}-batch{b}", spec, options, trainData, testData);
                results[(norm, b)] = r;
                dirs.Add(dir);
            }
        }
        var sb = new StringBuilder();
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"Final test accuracy after {examples} training examples at every batch size (4-layer CNN of base width {width}, group norm with 4 groups, SGD lr {lr} momentum 0.9, {s.Dataset}, {testData.Count} test images; batch norm evaluates with its running statistics):\n\n"));
        sb.Append("| batch size | ").Append(string.Join(" | ", norms.Select(n => n.ToCliName()))).Append(" |\n|---|").Append(string.Concat(norms.Select(_ => "---|"))).Append('\n');
        foreach (var b in sizes)
        {
            sb.Append("| ").Append(b.ToString(CultureInfo.InvariantCulture)).Append(" | ").Append(string.Join(" | ", norms.Select(n => ExperimentRunner.Cell(results[(n, b)])))).Append(" |\n");
        }
        var fig = Path.Combine(s.OutputDirectory, "batch-sweep.png");
        PngFigures.Lines(norms.Select(n => (n.ToCliName(), sizes.Select(b => (double)b).ToArray(), sizes.Select(b => results[(n, b)].Diverged ? 0.1 : results[(n, b)].TestAccuracy ?? double.NaN).ToArray())).ToList(),
            fig, string.Create(CultureInfo.InvariantCulture, $"Final test accuracy vs batch size ({examples} examples each)"), "batch size", "test accuracy", logX: true);
        var opts = ExperimentRunner.Options("batch-sweep: batch norm vs group norm at small batches (Wu & He)",
            string.Create(CultureInfo.InvariantCulture, $"4-layer CNN, base width {width}, {examples} examples per run, SGD lr {lr} momentum 0.9, seed {s.Seed}."));
        return (sb.ToString(), [fig], opts, dirs);
    }
}
