using System.Globalization;
using System.Text;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Reports.Data;
using CovariateShift.Reports.Figures;
using CovariateShift.Reports.Html;
using CovariateShift.Training.Training;

namespace CovariateShift.Experiments;

/// <summary>
/// Ioffe &amp; Szegedy (2015), Sec. 4.1 / Fig. 1: 3 hidden layers of 100 sigmoid units, Gaussian init (std 0.01), batch 60,
/// without and with batch norm before each sigmoid: test accuracy vs steps, and the 15/50/85th percentiles of the last
/// hidden layer's sigmoid input over training. The paper trains 50,000 steps; the default here is 5,000.
/// </summary>
internal static class BnFig1Experiment
{
    public const int DefaultSteps = 5000;

    public static (string Table, List<string> Figures, ReportOptions Options, List<string> RunDirs) Run(ExperimentSettings s)
    {
        int steps = s.Steps ?? DefaultSteps;
        var (train, test) = ExperimentRunner.LoadData(s);
        using var trainData = train;
        using var testData = test;
        var options = new TrainerOptions
        {
            Steps = steps,
            BatchSize = s.BatchSize ?? 60,
            LearningRate = s.LearningRate ?? 0.05,
            Momentum = 0.9,
            RecordEvery = Math.Max(1, steps / 500),
            EvaluateEvery = Math.Max(1, steps / 20),
            LogEvery = Math.Max(1, steps / 10),
        };
        var runs = new List<(string Dir, TrainResult Result, NormKind Norm)>();
        foreach (var norm in ExperimentRunner.Norms(s, NormKind.None, NormKind.Batch))
        {
            var spec = new ModelSpec
            {
                Architecture = "mlp",
                InputShape = [1, 28, 28],
                Classes = 10,
                Widths = [100, 100, 100],
                Activation = ActivationKind.Sigmoid,
                Init = WeightInit.Parse("gaussian:0.01"),
                Norm = norm,
            };
            var (dir, result) = ExperimentRunner.Train(s, norm.ToCliName(), spec, options, trainData, testData);
            runs.Add((dir, result, norm));
        }

        var data = runs.Select(r => RunLoader.Load(r.Dir, Path.GetFileName(r.Dir))).ToList();
        var sb = new StringBuilder();
        var evalSteps = runs[0].Result.Evaluations.Select(e => e.Step).ToList();
        var pick = HtmlReport.Thin(evalSteps.Count, 6).Select(i => evalSteps[i]).ToList();
        sb.Append("Test accuracy (").Append(s.Dataset).Append(", ").Append(testData.Count).Append(" test images) vs training step:\n\n| step | ")
          .Append(string.Join(" | ", runs.Select(r => r.Norm.ToCliName()))).Append(" |\n|---|").Append(string.Concat(runs.Select(_ => "---|"))).Append('\n');
        foreach (var step in pick)
        {
            sb.Append("| ").Append(step.ToString(CultureInfo.InvariantCulture)).Append(" | ");
            sb.Append(string.Join(" | ", runs.Select(r => r.Result.Evaluations.FirstOrDefault(e => e.Step == step) is { } e ? e.Accuracy.ToString("F4", CultureInfo.InvariantCulture) : "-"))).Append(" |\n");
        }
        sb.Append("\nLast hidden layer's sigmoid input (all 100 units x 60 examples of a batch, not one unit as in the paper): percentiles at the first and last record,\n")
          .Append("and how far the median moved over training.\n\n| run | layer | P15 / P50 / P85 first | P15 / P50 / P85 last | median range over training | mean abs change of the median between records |\n|---|---|---|---|---|---|\n");
        foreach (var d in data)
        {
            var layer = SigmoidInput(d);
            if (layer is null || d.Metrics is not { } m) continue;
            int li = m.LayerIndex(layer);
            var p15 = m.Values["p15"][li];
            var p50 = m.Values["p50"][li];
            var p85 = m.Values["p85"][li];
            int first = Array.FindIndex(p50, double.IsFinite), last = Array.FindLastIndex(p50, double.IsFinite);
            var fin = p50.Where(double.IsFinite).ToArray();
            double moves = 0;
            for (int i = 1; i < fin.Length; i++) moves += Math.Abs(fin[i] - fin[i - 1]);
            sb.Append(string.Create(CultureInfo.InvariantCulture,
                $"| {d.Name} | {layer} | {p15[first]:F3} / {p50[first]:F3} / {p85[first]:F3} | {p15[last]:F3} / {p50[last]:F3} / {p85[last]:F3} | {fin.Max() - fin.Min():F3} | {moves / Math.Max(1, fin.Length - 1):F4} |\n"));
        }
        var figures = new List<string>();
        var fig = Path.Combine(s.OutputDirectory, "bn-fig1-percentiles.png");
        if (PngFigures.Percentiles(data, SigmoidInput, fig, "Last hidden layer's sigmoid input: 15/50/85th percentiles")) figures.Add(fig);
        var acc = Path.Combine(s.OutputDirectory, "bn-fig1-accuracy.png");
        PngFigures.Lines(runs.Select(r => (r.Norm.ToCliName(), r.Result.Evaluations.Select(e => (double)e.Step).ToArray(), r.Result.Evaluations.Select(e => e.Accuracy).ToArray())).ToList(),
            acc, "Test accuracy vs training step (3x100 sigmoid MLP, batch 60)", "training step", "test accuracy");
        figures.Add(acc);
        var opts = ExperimentRunner.Options("bn-fig1: Ioffe & Szegedy Fig. 1 on " + s.Dataset,
            string.Create(CultureInfo.InvariantCulture, $"3 hidden layers of 100 sigmoid units, Gaussian init std 0.01, batch {options.BatchSize}, SGD lr {options.LearningRate} momentum 0.9, {steps} steps, seed {s.Seed}; the paper trains 50,000 steps."),
            "The sigmoid input of the last hidden layer is layers.2.linear without batch norm and layers.2.norm with it (pick it in 'layer for charts').");
        return (sb.ToString(), figures, opts with { DefaultLayer = "layers.2.act" }, runs.Select(r => r.Dir).ToList());
    }

    /// <summary>The layer whose output is the last hidden sigmoid's input: the layer just before layers.2.act.</summary>
    internal static string? SigmoidInput(RunData d)
    {
        if (d.Metrics is not { } m) return null;
        int act = m.Layers.ToList().FindLastIndex(l => l.Type.Equals("Sigmoid", StringComparison.OrdinalIgnoreCase));
        return act > 0 ? m.Layers[act - 1].Name : null;
    }
}
