using System.Globalization;
using System.Text;
using CovariateShift.Nn.Normalization;
using CovariateShift.Probes;
using CovariateShift.Reports.Figures;
using CovariateShift.Reports.Html;
using CovariateShift.Training.Training;
using static TorchSharp.torch;

namespace CovariateShift.Experiments;

/// <summary>
/// Santurkar et al. (2018), "does batch norm reduce internal covariate shift?": standard, batch-norm and noisy-batch-norm
/// networks trained the same way, the gradient ICS of every Linear layer (||G - G'||, cos(G, G'); see
/// <see cref="GradientIcsProbe"/>) measured on recorded steps, next to their accuracy curves.
/// </summary>
/// <remarks>
/// Trained by <see cref="Trainer"/> like every experiment; its <see cref="TrainerOptions.AfterOptimizerStep"/> hands the
/// step's batch to <see cref="ActivationMonitor.MeasureGradientIcs"/> after the update.
/// </remarks>
internal static class IcsExperiment
{
    public static (string, List<string>, ReportOptions, List<string>) Run(ExperimentSettings s)
    {
        int steps = s.Steps ?? 600, depth = s.Depth ?? 6, width = s.Width ?? 128, batch = s.BatchSize ?? 128;
        double lr = s.LearningRate ?? 0.05;
        int recordEvery = Math.Max(1, steps / 30), evalEvery = Math.Max(1, steps / 10);
        var (train, test) = ExperimentRunner.LoadData(s);
        using var trainData = train;
        using var testData = test;
        var norms = ExperimentRunner.Norms(s, NormKind.None, NormKind.Batch, NormKind.NoisyBatch);
        var rows = new List<(string Name, double Accuracy, double MeanL2Rel, double MeanCos, string Dir)>();
        var dirs = new List<string>();
        foreach (var norm in norms)
        {
            var name = norm.ToCliName();
            var dir = Path.Combine(s.OutputDirectory, name);
            var measurements = new List<GradientIcsMeasurement>();
            // The trainer's loop; the probe recomputes the loss on the step's batch after the update, before the monitor's Step.
            var options = new TrainerOptions
            {
                Steps = steps, BatchSize = batch, LearningRate = lr, Momentum = 0.9, RecordEvery = recordEvery, EvaluateEvery = evalEvery, LogEvery = 1,
                Monitor = new MonitorOptions { GradientIcs = new GradientIcsOptions { JsonLinesPath = Path.Combine(dir, "ics.jsonl") } },
                AfterOptimizerStep = t => measurements.AddRange(t.Monitor.MeasureGradientIcs(() => nn.functional.cross_entropy(t.Model.call(t.Images), t.Labels))),
            };
            var (_, result) = ExperimentRunner.Train(s, name, ExperimentRunner.Mlp(depth, width, norm), options, trainData, testData);
            var final = result.Evaluations[^1];
            // The first measured layer has no earlier layer to update: G' = G up to the noise of the extra pass; left out of the means.
            var deeper = measurements.Where(m => m.Layer != measurements[0].Layer).ToList();
            double rel = deeper.Where(m => m.GradNorm > 0).Select(m => m.L2 / m.GradNorm).DefaultIfEmpty(double.NaN).Average();
            double cos = deeper.Select(m => m.Cosine).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
            rows.Add((name, final.Accuracy, rel, cos, dir));
            dirs.Add(dir);
            s.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}: mean ||G-G'||/||G|| {rel:F4}, mean cos(G, G') {cos:F4}"));
        }
        var sb = new StringBuilder();
        sb.Append(string.Create(CultureInfo.InvariantCulture,
            $"{depth}x{width} ReLU MLP, He init, batch {batch}, SGD lr {lr} momentum 0.9, {steps} steps, {s.Dataset}; gradient ICS measured every {recordEvery} steps on the Linear layers after the first (means over layers and measured steps):\n\n"));
        sb.Append("| network | final test accuracy | mean ‖G − G′‖ / ‖G‖ | mean cos(G, G′) |\n|---|---|---|---|\n");
        foreach (var r in rows) sb.Append(string.Create(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Accuracy:F4} | {r.MeanL2Rel:F4} | {r.MeanCos:F4} |\n"));
        var fig = Path.Combine(s.OutputDirectory, "ics-cosine.png");
        var data = dirs.Select(d => Reports.Data.RunLoader.Load(d, Path.GetFileName(d))).ToList();
        PngFigures.Lines(data.Where(d => d.Metrics is not null).Select(d =>
        {
            var m = d.Metrics!;
            var cosM = m.Values["ics_cos"];
            var idx = Enumerable.Range(0, m.Steps.Count).Where(i => Enumerable.Range(1, m.Layers.Count - 1).Any(l => double.IsFinite(cosM[l][i]))).ToArray();
            var ys = idx.Select(i => Enumerable.Range(0, m.Layers.Count).Select(l => cosM[l][i]).Where(double.IsFinite).Skip(1).DefaultIfEmpty(double.NaN).Average()).ToArray();
            return (d.Name, idx.Select(i => (double)m.Steps[i]).ToArray(), ys);
        }).ToList(), fig, "Gradient ICS: mean cos(G, G') over the Linear layers after the first", "training step", "cos(G, G')");
        var opts = ExperimentRunner.Options("ics: gradient-based internal covariate shift (Santurkar et al. 2018)",
            "Pick 'gradient ICS' statistics in the heatmap; accuracy curves below. Cost: one extra forward and backward pass per Linear layer on every measured step.");
        return (sb.ToString(), [fig], opts, dirs);
    }
}
