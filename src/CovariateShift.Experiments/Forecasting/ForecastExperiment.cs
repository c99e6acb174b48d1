using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using CovariateShift.Forecast;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Reports.Html;
using CovariateShift.Reports.Data;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;
using ScottPlot;

namespace CovariateShift.Experiments.Forecasting;

/// <summary>
/// <c>covshift experiment forecast</c>: trains the grid (<c>models/grids/forecast-grid.json</c>; a run directory that already
/// holds a summary.json is read, not trained again), labels every run with <see cref="FailureLabel"/>, chooses the
/// loss-spike factor and trains the forecaster's model on the tuning seeds, and scores every rule on the held-out seeds.
/// Writes results.md (the tables), forecast-model.json (the forecaster's model trained on the tuning runs: the shipped
/// models/forecast/forecast-model.json is a copy), forecast-runs.png and report.html.
/// </summary>
internal static class ForecastExperiment
{
    /// <summary>Classes of Fashion-MNIST / MNIST.</summary>
    private const int Classes = 10;

    /// <summary>File name of the model trained on the tuning runs, in the output directory (models/forecast/forecast-model.json is a copy of it).</summary>
    public const string TunedFileName = "forecast-model.json";

    /// <summary>The grid shipped with the assembly (models/grids/forecast-grid.json).</summary>
    public static ForecastGrid DefaultGrid()
    {
        using var stream = typeof(ForecastExperiment).Assembly.GetManifestResourceStream("CovariateShift.Experiments.forecast-grid.json")
            ?? throw new InvalidOperationException("The forecast grid resource is missing from the assembly.");
        return ForecastGrid.Read(stream, "the built-in forecast grid");
    }

    public static (string, List<string>, ReportOptions, List<string>) Run(ExperimentSettings s)
    {
        var grid = s.ForecastGrid is { } g ? ForecastGrid.Load(g) : DefaultGrid();
        var dirs = TrainGrid(s, grid);
        var traces = grid.Runs().Select(r => RunTrace.Load(dirs[r.Run], r.Seed, Classes)).ToList();
        var tuning = traces.Where(t => grid.TuningSeeds.Contains(t.Seed)).ToList();
        var heldOut = traces.Where(t => grid.HeldOutSeeds.Contains(t.Seed)).ToList();

        var spike = ForecastEvaluation.TuneLossSpike(tuning);
        var shipped = new ForecastOptions();
        var candidates = ForecastEvaluation.Fit(tuning, shipped, string.Create(CultureInfo.InvariantCulture,
            $"Logistic regression over ForecastFeatures, trained by covshift experiment forecast on the tuning runs of the forecast grid (seeds {string.Join(", ", grid.TuningSeeds)}: {tuning.Count} runs); threshold and patience chosen on the same runs (false alarms at most {ForecastEvaluation.TuningFalseAlarmCap:G2})."));
        var model = ForecastEvaluation.Choose(candidates);
        var tuned = shipped with { Model = model };
        File.WriteAllText(Path.Combine(s.OutputDirectory, TunedFileName), model.ToJson());
        var shippedRule = new ForecasterRule(shipped, "forecaster (shipped model)");
        var baselines = new List<IWarningRule> { new NanCheckRule(), new ExplodingGradientRule(), spike };
        var rules = new List<IWarningRule>(baselines) { shippedRule, new ForecasterRule(tuned, "forecaster (trained now)") };
        if (traces.Any(t => File.Exists(Path.Combine(dirs[t.Name], ForecastFile.FileName)))) rules.Add(new RecordedForecastRule());
        var held = rules.Select(r => ForecastEvaluation.Score(r, heldOut)).ToList();
        var tune = rules.Select(r => ForecastEvaluation.Score(r, tuning)).ToList();

        // Operating points: the same candidates with the threshold and patience chosen for other false-alarm caps, among them
        // each baseline's own false-alarm rate on the tuning runs (the comparison "at equal or fewer false alarms").
        var caps = new SortedSet<double>([0, 0.025, ForecastEvaluation.TuningFalseAlarmCap, 0.1, .. tune.Take(baselines.Count).Select(b => b.FalseAlarmRate).Where(double.IsFinite)]);
        var operating = caps.Select(c => (Cap: c, Rule: (IWarningRule)new ForecasterRule(shipped with { Model = ForecastEvaluation.Choose(candidates, c) },
            string.Create(CultureInfo.InvariantCulture, $"forecaster, tuned to false alarms <= {c:0.###}")))).ToList();
        var operatingTune = operating.Select(o => ForecastEvaluation.Score(o.Rule, tuning)).ToList();
        var operatingHeld = operating.Select(o => ForecastEvaluation.Score(o.Rule, heldOut)).ToList();

        // Leave one grid point out: each point's held-out runs scored by a forecaster fitted (and its threshold chosen) on the
        // tuning runs of the other points only, so the configuration itself is new to it.
        var byPoint = new Dictionary<string, IWarningRule>();
        foreach (var point in heldOut.Select(PointName).Distinct())
        {
            var others = tuning.Where(t => PointName(t) != point).ToList();
            byPoint[point] = new ForecasterRule(shipped with { Model = ForecastEvaluation.TrainModel(others, shipped) });
        }
        var leaveOut = ForecastEvaluation.Score(new DelegateRule("forecaster, fitted without the run's grid point", t => byPoint[PointName(t)].FirstWarning(t)), heldOut);
        var leaveOutByPoint = heldOut.GroupBy(PointName).Select(g => (Point: g.Key, Score: ForecastEvaluation.Score(byPoint[g.Key], g.ToList()))).ToList();

        var sb = new StringBuilder();
        sb.Append(string.Create(CultureInfo.InvariantCulture,
            $"{grid.Points.Count} grid points x {grid.TuningSeeds.Count + grid.HeldOutSeeds.Count} seeds, {grid.Steps} steps of batch {grid.BatchSize} on the first {grid.TrainLimit} Fashion-MNIST images, recorded every {grid.RecordEvery} steps (losses logged every step). "));
        sb.Append(string.Create(CultureInfo.InvariantCulture,
            $"Tuning runs: seeds {string.Join(", ", grid.TuningSeeds)} ({tuning.Count} runs); held-out runs: seeds {string.Join(", ", grid.HeldOutSeeds)} ({heldOut.Count} runs). "));
        sb.Append(string.Create(CultureInfo.InvariantCulture,
            $"A run fails at the first step whose loss is not finite or whose 5-step mean loss is back above ln {Classes} after it was below 0.5 ln {Classes}; recall counts runs failing at step >= {ForecastEvaluation.MinFailureStep} warned >= {ForecastEvaluation.MinLead} steps before; a lead is 0 for a run not warned by its failure step.\n\n"));
        sb.Append("**Held-out runs**\n\n").Append(ForecastEvaluation.Table(held)).Append('\n');
        sb.Append("**Tuning runs**\n\n").Append(ForecastEvaluation.Table(tune)).Append('\n');
        sb.Append("**Operating points** (threshold and patience chosen on the tuning runs for each false-alarm cap; the caps include each baseline's false-alarm rate on the tuning runs)\n\n");
        sb.Append("| cap | threshold | patience | tuning: recall | median lead | false alarms | held-out: recall | median lead | p10 lead | false alarms |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for (int i = 0; i < operating.Count; i++)
        {
            var m = ((ForecasterRule)operating[i].Rule).Options.Model!;
            var (t, h) = (operatingTune[i], operatingHeld[i]);
            sb.Append(string.Create(CultureInfo.InvariantCulture,
                $"| {operating[i].Cap:0.###} | {m.Threshold:G4} | {m.Patience} | {t.Recall:F2} ({t.Warned}/{t.Failing}) | {t.MedianLead:F0} | {t.FalseAlarmRate:F2} ({t.FalseAlarms}/{t.Converging}) | {h.Recall:F2} ({h.Warned}/{h.Failing}) | {h.MedianLead:F0} | {h.P10Lead:F0} | {h.FalseAlarmRate:F2} ({h.FalseAlarms}/{h.Converging}) |\n"));
        }
        sb.Append('\n');
        sb.Append("**Leave one grid point out** (held-out runs; each point's runs are scored by a forecaster fitted, threshold included, on the tuning runs of the other points)\n\n");
        sb.Append(ForecastEvaluation.Table([leaveOut])).Append('\n');
        sb.Append("| point | failing (>= step 50) | warned | median lead | converging | false alarms |\n|---|---|---|---|---|---|\n");
        foreach (var (point, score) in leaveOutByPoint)
        {
            sb.Append(string.Create(CultureInfo.InvariantCulture, $"| {point} | {score.Failing} | {score.Warned} | {(score.Failing > 0 ? score.MedianLead.ToString("F0", CultureInfo.InvariantCulture) : "-")} | {score.Converging} | {score.FalseAlarms} |\n"));
        }
        sb.Append('\n');
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"Loss-spike factor chosen on the tuning runs: k = {spike.K:G3}. "));
        sb.Append("Forecaster: shipped model ").Append(Describe(shipped.Model)).Append("; trained now ").Append(Describe(model))
          .Append(model.Equals(shipped.Model) ? " (equal to the shipped model)" : " (differs from the shipped model)").Append(".\n\n");
        sb.Append(Targets(held[baselines.Count], held.Take(baselines.Count).ToList(),
            held.Take(baselines.Count).Select((b, i) => operatingHeld[operating.FindIndex(o => o.Cap == (double.IsFinite(tune[i].FalseAlarmRate) ? tune[i].FalseAlarmRate : -1))]).ToList())).Append('\n');
        sb.Append("| run | seed | failure step | ").Append(string.Join(" | ", rules.Select(r => r.Name))).Append(" |\n|---|---|---|").Append(string.Concat(rules.Select(_ => "---|"))).Append('\n');
        foreach (var t in traces)
        {
            sb.Append(string.Create(CultureInfo.InvariantCulture, $"| {t.Name} | {t.Seed} | {(t.FailureStep is { } f ? f.ToString(CultureInfo.InvariantCulture) : "-")} | "))
              .Append(string.Join(" | ", rules.Select(r => r.FirstWarning(t) is { } w ? w.ToString(CultureInfo.InvariantCulture) : "-"))).Append(" |\n");
        }

        var figure = Path.Combine(s.OutputDirectory, "forecast-runs.png");
        Figure(heldOut.Where(t => t.FailureStep >= ForecastEvaluation.MinFailureStep).ToList(), shippedRule, figure);
        var reportRuns = heldOut.Where(t => t.Failed).Take(4).Concat(heldOut.Where(t => !t.Failed).Take(2)).Select(t => dirs[t.Name]).ToList();
        var options = ExperimentRunner.Options("forecast: warning before divergence, forecaster vs baselines",
            "Held-out runs; the forecaster's warnings are the DivergenceAhead anomalies recorded while training.");
        return (sb.ToString(), [figure], options, reportRuns);
    }

    private static string Describe(ForecastModel m) => string.Create(CultureInfo.InvariantCulture,
        $"(threshold {m.Threshold:G4}, patience {m.Patience}, bias {m.Bias:G3}, weights {string.Join(", ", m.Features.Select((f, k) => $"{f} {m.Weights[k]:G3}"))})");

    /// <summary>The targets of the issue, met or missed by how much: the shipped forecaster <paramref name="f"/> against the
    /// targets, and against each baseline both as shipped and at the operating point tuned to that baseline's false-alarm rate
    /// (<paramref name="matched"/>, in the order of <paramref name="baselines"/>).</summary>
    private static string Targets(RuleScore f, List<RuleScore> baselines, List<RuleScore> matched)
    {
        var sb = new StringBuilder("Targets on the held-out runs (forecaster as shipped): ");
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"recall {f.Recall:F2} (target >= 0.8: {(f.Recall >= 0.8 ? "met" : $"missed by {0.8 - f.Recall:F2}")}), "));
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"median lead {f.MedianLead:F0} (target >= 20: {(f.MedianLead >= 20 ? "met" : $"missed by {20 - f.MedianLead:F0}")}), "));
        sb.Append(string.Create(CultureInfo.InvariantCulture, $"false alarms {f.FalseAlarmRate:F2} (target <= 0.1: {(f.FalseAlarmRate <= 0.1 ? "met" : $"missed by {f.FalseAlarmRate - 0.1:F2}")}); "));
        for (int i = 0; i < baselines.Count; i++)
        {
            var b = baselines[i];
            sb.Append(string.Create(CultureInfo.InvariantCulture, $"vs {b.Rule}: median lead {f.MedianLead:F0} vs {b.MedianLead:F0}, false alarms {f.FalseAlarmRate:F2} vs {b.FalseAlarmRate:F2} ({(StrictlyBetter(f, b) ? "better" : "not strictly better")}"));
            var m = matched[i];
            sb.Append(string.Create(CultureInfo.InvariantCulture, $"; tuned to its false alarms: recall {m.Recall:F2}, median lead {m.MedianLead:F0}, false alarms {m.FalseAlarmRate:F2}: {(StrictlyBetter(m, b) ? "better" : "not strictly better")}); "));
        }
        return sb.Append('\n').ToString();
    }

    /// <summary>A longer median lead at equal or fewer false alarms.</summary>
    private static bool StrictlyBetter(RuleScore f, RuleScore b) => f.MedianLead > b.MedianLead && !(f.FalseAlarmRate > b.FalseAlarmRate);

    /// <summary>Trains every run of the grid that has no summary.json yet; returns run name -> directory.</summary>
    private static Dictionary<string, string> TrainGrid(ExperimentSettings s, ForecastGrid grid)
    {
        var dirs = grid.Runs().ToDictionary(r => r.Run, r => Path.Combine(s.OutputDirectory, r.Run));
        var todo = grid.Runs().Where(r => !File.Exists(Path.Combine(dirs[r.Run], "summary.json"))).ToList();
        if (todo.Count == 0) return dirs;
        using var train = MnistFormat.Load(s.DataDirectory, s.Dataset, train: true, grid.TrainLimit);
        using var test = MnistFormat.Load(s.DataDirectory, s.Dataset, train: false, grid.TestLimit);
        foreach (var (p, seed, run) in todo)
        {
            var spec = ExperimentRunner.Mlp(p.Depth, p.Width, NormKinds.Parse(p.Norm), WeightInit.Parse(p.Init));
            var options = new TrainerOptions
            {
                Steps = grid.Steps,
                BatchSize = grid.BatchSize,
                Optimizer = OptimizationNames.ParseOptimizer(p.Optimizer),
                LearningRate = p.LearningRate,
                Momentum = grid.Momentum,
                Schedule = new LearningRateSchedule { WarmupSteps = p.WarmupSteps },
                RecordEvery = grid.RecordEvery,
                LogEvery = 1,
                Monitor = new MonitorOptions { Forecast = new ForecastOptions() },
            };
            try
            {
                ExperimentRunner.Train(s with { Seed = seed }, run, spec, options, train, test);
            }
            catch (ExternalException e)
            {
                // LibTorch errors that depend on the process, not the run (measured once in 450 runs: Adam's addcmul_ reading a
                // Scalar that was no longer valid; the same run trained again in another process finished): one more try,
                // from scratch (the trainer rewrites the run's files), then the error stops the experiment naming the run.
                s.Out.WriteLine($"{run}: LibTorch error ({FirstLine(e.Message)}); training the run again once.");
                try
                {
                    ExperimentRunner.Train(s with { Seed = seed }, run, spec, options, train, test);
                }
                catch (ExternalException again)
                {
                    throw new InvalidOperationException($"Run {run} failed twice with a LibTorch error: {FirstLine(again.Message)}. The runs trained so far are kept; run the command again to go on.", again);
                }
            }
        }
        return dirs;
    }

    /// <summary>
    /// Each failing run's loss (log10) against the steps to its failure (0 = the failure step), one colour per grid point,
    /// the last 100 steps before it, with the forecaster's first warning marked on its curve (a dot; left of -10 is a warning in time).
    /// </summary>
    private static void Figure(List<RunTrace> runs, ForecasterRule rule, string path)
    {
        var plt = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var points = runs.Select(PointName).Distinct().ToList();
        var named = new HashSet<string>();
        foreach (var t in runs)
        {
            if (t.FailureStep is not { } f) continue;
            string point = PointName(t);
            var color = palette.GetColor(points.IndexOf(point) % 10);
            var losses = t.Losses.Where(l => double.IsFinite(l.Loss) && l.Loss > 0 && l.Step >= f - 100 && l.Step <= f + 3).ToList();
            var line = plt.Add.Scatter(losses.Select(l => (double)(l.Step - f)).ToArray(), losses.Select(l => Math.Log10(l.Loss)).ToArray());
            line.Color = color.WithAlpha(0.6);
            line.MarkerSize = 0;
            line.LineWidth = 1;
            if (named.Add(point)) line.LegendText = point;
            if (rule.FirstWarning(t) is { } warned && losses.Count > 0)
            {
                var at = losses.MinBy(l => Math.Abs(l.Step - warned));
                var dot = plt.Add.Marker(warned - f, Math.Log10(at.Loss));
                dot.Color = color;
                dot.Shape = MarkerShape.FilledCircle;
                dot.Size = 7;
            }
        }
        var zero = plt.Add.VerticalLine(0);
        zero.Color = Colors.Black;
        zero.LinePattern = LinePattern.Dashed;
        var lead = plt.Add.VerticalLine(-ForecastEvaluation.MinLead);
        lead.Color = Colors.Gray;
        lead.LinePattern = LinePattern.Dotted;
        plt.Axes.SetLimits(-100, 5, -1.3, 1.5);
        plt.ShowLegend(Alignment.UpperLeft);
        plt.Title("Held-out failing runs: loss vs steps to failure (dashed: failure, dotted: 10 steps before), forecaster warning (dot)");
        plt.XLabel("steps relative to the failure step");
        plt.YLabel("log10 training loss");
        plt.SavePng(path, 1100, 550);
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    private static string PointName(RunTrace t) => t.Name[..t.Name.LastIndexOf("-s", StringComparison.Ordinal)];
}
