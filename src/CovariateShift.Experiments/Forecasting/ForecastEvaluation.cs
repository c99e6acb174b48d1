using System.Globalization;
using System.Text;
using CovariateShift.Forecast;

namespace CovariateShift.Experiments.Forecasting;

/// <summary>How a warning rule did on a set of runs.</summary>
/// <param name="Rule">The rule's name.</param>
/// <param name="Failing">Runs that failed at step <see cref="ForecastEvaluation.MinFailureStep"/> or later.</param>
/// <param name="Warned">Of those, runs warned at least <see cref="ForecastEvaluation.MinLead"/> steps before the failure.</param>
/// <param name="MedianLead">Median lead time (failure step minus first warning step; 0 for a run not warned by its failure step) over the failing runs.</param>
/// <param name="P10Lead">10th percentile of the same lead times.</param>
/// <param name="Converging">Runs that did not fail.</param>
/// <param name="FalseAlarms">Of those, runs with any warning.</param>
/// <param name="Leads">The lead time of every failing run, in run order.</param>
public sealed record RuleScore(string Rule, int Failing, int Warned, double MedianLead, double P10Lead, int Converging, int FalseAlarms, IReadOnlyList<double> Leads)
{
    /// <summary>Warned / Failing (NaN without failing runs).</summary>
    public double Recall => Failing > 0 ? (double)Warned / Failing : double.NaN;

    /// <summary>FalseAlarms / Converging (NaN without converging runs).</summary>
    public double FalseAlarmRate => Converging > 0 ? (double)FalseAlarms / Converging : double.NaN;
}

/// <summary>
/// Scores warning rules on labelled runs and tunes the loss-spike rule and the forecaster on tuning runs. A run that
/// fails at step &gt;= <see cref="MinFailureStep"/> counts for recall and lead time, a run that does not fail for false
/// alarms; runs that fail earlier count for neither (nothing to forecast).
/// </summary>
public static class ForecastEvaluation
{
    /// <summary>Failures before this step are not scored.</summary>
    public const int MinFailureStep = 50;

    /// <summary>A failing run counts as warned when its first warning is at least this many steps before the failure.</summary>
    public const int MinLead = 10;

    /// <summary>
    /// The largest false-alarm rate a tuned rule may have on the tuning runs: half the target of 0.1, because a rate
    /// chosen right at the target on about 80 converging runs lands above it on other runs as often as not (one binomial
    /// standard error of a rate of 0.1 over 78 runs is 0.034).
    /// </summary>
    public const double TuningFalseAlarmCap = 0.05;

    /// <summary>The loss-spike factors tried.</summary>
    public static IReadOnlyList<double> SpikeFactors { get; } = [1.25, 1.5, 2, 2.5, 3, 4, 5, 7, 10];

    /// <summary>Scores <paramref name="rule"/> on <paramref name="runs"/>.</summary>
    public static RuleScore Score(IWarningRule rule, IReadOnlyList<RunTrace> runs)
    {
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(runs);
        int failing = 0, warned = 0, converging = 0, alarms = 0;
        var leads = new List<double>();
        foreach (var run in runs)
        {
            var first = rule.FirstWarning(run);
            if (run.FailureStep is { } f)
            {
                if (f < MinFailureStep) continue;
                failing++;
                double lead = first is { } w && w <= f ? f - w : 0;
                leads.Add(lead);
                if (lead >= MinLead) warned++;
            }
            else
            {
                converging++;
                if (first is not null) alarms++;
            }
        }
        var sorted = leads.Order().ToList();
        return new RuleScore(rule.Name, failing, warned, Quantile(sorted, 0.5), Quantile(sorted, 0.1), converging, alarms, leads);
    }

    /// <summary>Linear interpolation between order statistics (numpy's default); NaN for no values.</summary>
    public static double Quantile(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        if (sorted.Count == 0) return double.NaN;
        double x = p * (sorted.Count - 1);
        int i = (int)Math.Floor(x);
        return i + 1 < sorted.Count ? sorted[i] + (sorted[i + 1] - sorted[i]) * (x - i) : sorted[i];
    }

    /// <summary>The better of two scores under the tuning criterion: false-alarm rate at most <paramref name="cap"/>,
    /// then the higher recall, the longer median lead, the longer 10th-percentile lead, the fewer false alarms.</summary>
    public static bool Better(RuleScore a, RuleScore b, double cap = TuningFalseAlarmCap)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        bool aOk = !(a.FalseAlarmRate > cap), bOk = !(b.FalseAlarmRate > cap);
        if (aOk != bOk) return aOk;
        if (!aOk) return a.FalseAlarms < b.FalseAlarms || (a.FalseAlarms == b.FalseAlarms && a.Warned > b.Warned);
        if (a.Warned != b.Warned) return a.Warned > b.Warned;
        if (a.MedianLead != b.MedianLead) return a.MedianLead > b.MedianLead;
        if (a.P10Lead != b.P10Lead) return a.P10Lead > b.P10Lead;
        return a.FalseAlarms < b.FalseAlarms;
    }

    /// <summary>The loss-spike rule with the factor from <see cref="SpikeFactors"/> that scores best on <paramref name="tuning"/>.</summary>
    public static LossSpikeRule TuneLossSpike(IReadOnlyList<RunTrace> tuning, double cap = TuningFalseAlarmCap) =>
        Best(SpikeFactors.Select(k => new LossSpikeRule(k)), tuning, cap);

    /// <summary>Label horizons tried: a training record is positive when its run fails within this many steps.</summary>
    public static IReadOnlyList<int> LabelHorizons { get; } = [40, 80, 120];

    /// <summary>Records this close (in steps) to the failure are left out of training (the failure itself is not a forecast).</summary>
    public const int LabelCutoff = 4;

    /// <summary>Thresholds tried (scores; logits from -2 to 6 in steps of 0.25).</summary>
    public static IReadOnlyList<double> Thresholds { get; } = [.. Enumerable.Range(0, 33).Select(i => 1 / (1 + Math.Exp(-(-2 + 0.25 * i))))];

    /// <summary>Patiences tried (records).</summary>
    public static IReadOnlyList<int> Patiences { get; } = [1, 2, 3, 5, 8];

    /// <summary>L2 penalty of the logistic regression (on the standardized weights).</summary>
    public const double L2 = 1e-3;

    /// <summary>Full-batch gradient-descent iterations (step 1) of the logistic regression.</summary>
    public const int Iterations = 300;

    /// <summary>
    /// Trains the forecaster's model on <paramref name="tuning"/> and chooses its threshold and patience there:
    /// <see cref="Fit"/>, then <see cref="Choose"/> with <paramref name="cap"/>. Deterministic: the same runs give the same model.
    /// </summary>
    public static ForecastModel TrainModel(IReadOnlyList<RunTrace> tuning, ForecastOptions? options = null, string description = "", double cap = TuningFalseAlarmCap) =>
        Choose(Fit(tuning, options, description), cap);

    /// <summary>
    /// For each of <see cref="LabelHorizons"/>, a class-balanced logistic regression (<see cref="TrainLogistic"/>) on every
    /// record of <paramref name="tuning"/> after the warm-up and up to <see cref="LabelCutoff"/> steps before a failure
    /// (positive: the run fails within the horizon), with its logits on every record (for <see cref="Choose"/>).
    /// </summary>
    public static ModelCandidates Fit(IReadOnlyList<RunTrace> tuning, ForecastOptions? options = null, string description = "")
    {
        ArgumentNullException.ThrowIfNull(tuning);
        var o = options ?? new ForecastOptions();
        var features = tuning.Select(r => Features(r, o.WarmupRecords)).ToList();
        var models = new List<(ForecastModel, List<List<(long, double, bool)>>)>();
        foreach (int horizon in LabelHorizons)
        {
            var x = new List<double[]>();
            var y = new List<bool>();
            for (int i = 0; i < tuning.Count; i++)
            {
                long? f = tuning[i].FailureStep;
                foreach (var (step, values, nonFinite) in features[i])
                {
                    if (nonFinite || (f is { } ff && step >= ff - LabelCutoff)) break;
                    x.Add(values);
                    y.Add(f is { } fail && step >= fail - horizon);
                }
            }
            var model = TrainLogistic(x, y) with { Description = description };
            models.Add((model, features.Select(r => r.Select(p => (p.Step, model.Logit(p.Values), p.NonFinite)).ToList()).ToList()));
        }
        return new ModelCandidates(tuning, models);
    }

    /// <summary>
    /// The candidate model, threshold (<see cref="Thresholds"/>) and patience (<see cref="Patiences"/>) that score best on
    /// the tuning runs under <see cref="Better"/> with false-alarm cap <paramref name="cap"/>.
    /// </summary>
    public static ForecastModel Choose(ModelCandidates candidates, double cap = TuningFalseAlarmCap)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ForecastModel? best = null;
        RuleScore? bestScore = null;
        foreach (var (model, logits) in candidates.Models)
        {
            foreach (int patience in Patiences)
            {
                foreach (double threshold in Thresholds)
                {
                    double z = Math.Log(threshold / (1 - threshold));
                    var score = Score(candidates.Tuning, r => FirstWarning(logits[r], z, patience));
                    if (bestScore is null || Better(score, bestScore, cap))
                    {
                        best = model with { Threshold = threshold, Patience = patience };
                        bestScore = score;
                    }
                }
            }
        }
        return best!;
    }

    /// <summary>Every record's features after the warm-up, as the forecaster computes them (ForecastFeatures).</summary>
    private static List<(long Step, double[] Values, bool NonFinite)> Features(RunTrace run, int warmup)
    {
        var f = new ForecastFeatures(warmup);
        var rows = new List<(long, double[], bool)>();
        int n = 0;
        foreach (var r in run.Records)
        {
            bool nonFinite = ForecastFeatures.IsNonFinite(r);
            f.Observe(r);
            if (++n > warmup) rows.Add((r.Step, [.. f.Values], nonFinite));
        }
        return rows;
    }

    /// <summary>The logit of a model on feature values in the order of ForecastFeatures.Names.</summary>
    private static double Logit(this ForecastModel m, double[] values)
    {
        double z = m.Bias;
        var names = ForecastFeatures.Names;
        for (int k = 0; k < m.Features.Count; k++)
        {
            int i = names.ToList().IndexOf(m.Features[k]);
            z += m.Weights[k] * (values[i] - m.Means[k]) / m.Scales[k];
        }
        return z;
    }

    private static long? FirstWarning(List<(long Step, double Logit, bool NonFinite)> run, double z, int patience)
    {
        int above = 0;
        foreach (var (step, logit, nonFinite) in run)
        {
            if (nonFinite) return step;
            above = logit >= z ? above + 1 : 0;
            if (above >= patience) return step;
        }
        return null;
    }

    /// <summary>The score of first warnings given per run index (the same counting as <see cref="Score(IWarningRule, IReadOnlyList{RunTrace})"/>).</summary>
    private static RuleScore Score(IReadOnlyList<RunTrace> runs, Func<int, long?> firstWarning)
    {
        var rule = new IndexedRule(runs, firstWarning);
        return Score(rule, runs);
    }

    private sealed class IndexedRule(IReadOnlyList<RunTrace> runs, Func<int, long?> first) : IWarningRule
    {
        private readonly Dictionary<RunTrace, int> _index = runs.Select((r, i) => (r, i)).ToDictionary(p => p.r, p => p.i);

        public string Name => "candidate";

        public long? FirstWarning(RunTrace run) => first(_index[run]);
    }

    /// <summary>
    /// A class-balanced logistic regression of <paramref name="y"/> on <paramref name="x"/> (one row per record, features in the
    /// order of ForecastFeatures.Names): features standardized (mean 0, standard deviation 1; a constant feature gets scale 1),
    /// both classes weighted to half the total, <see cref="L2"/> penalty, <see cref="Iterations"/> full-batch gradient steps of
    /// size 1 from zero weights. Deterministic.
    /// </summary>
    public static ForecastModel TrainLogistic(IReadOnlyList<double[]> x, IReadOnlyList<bool> y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        int n = x.Count, d = ForecastFeatures.Names.Count;
        if (n == 0 || y.Count != n) throw new ArgumentException("Expected as many labels as rows, and at least one row.", nameof(y));
        var mean = new double[d];
        var scale = new double[d];
        for (int k = 0; k < d; k++)
        {
            double m = 0;
            for (int i = 0; i < n; i++) m += x[i][k];
            m /= n;
            double v = 0;
            for (int i = 0; i < n; i++) v += (x[i][k] - m) * (x[i][k] - m);
            double sd = Math.Sqrt(v / n);
            mean[k] = m;
            scale[k] = sd > 1e-12 ? sd : 1;
        }
        int positives = y.Count(b => b);
        double wPos = positives > 0 ? 0.5 * n / positives : 0, wNeg = positives < n ? 0.5 * n / (n - positives) : 0;
        var w = new double[d];
        double bias = 0;
        var z = new double[d];
        var grad = new double[d];
        for (int it = 0; it < Iterations; it++)
        {
            Array.Clear(grad);
            double gb = 0;
            for (int i = 0; i < n; i++)
            {
                double t = bias;
                for (int k = 0; k < d; k++)
                {
                    z[k] = (x[i][k] - mean[k]) / scale[k];
                    t += w[k] * z[k];
                }
                double p = 1 / (1 + Math.Exp(-Math.Clamp(t, -30, 30)));
                double e = (p - (y[i] ? 1 : 0)) * (y[i] ? wPos : wNeg);
                gb += e;
                for (int k = 0; k < d; k++) grad[k] += e * z[k];
            }
            for (int k = 0; k < d; k++) w[k] -= grad[k] / n + L2 * w[k];
            bias -= gb / n;
        }
        return new ForecastModel
        {
            Features = [.. ForecastFeatures.Names],
            Means = [.. mean.Select(Round)],
            Scales = [.. scale.Select(Round)],
            Weights = [.. w.Select(Round)],
            Bias = Round(bias),
        };
    }

    /// <summary>Model parameters are kept to 6 significant digits (the file stays readable; replay uses the rounded values).</summary>
    private static double Round(double v) => v == 0 ? 0 : double.Parse(v.ToString("G6", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    private static T Best<T>(IEnumerable<T> rules, IReadOnlyList<RunTrace> runs, double cap) where T : IWarningRule
    {
        T? best = default;
        RuleScore? bestScore = null;
        foreach (var rule in rules)
        {
            var score = Score(rule, runs);
            if (bestScore is null || Better(score, bestScore, cap))
            {
                best = rule;
                bestScore = score;
            }
        }
        return best ?? throw new ArgumentException("No rule to choose from.", nameof(rules));
    }

    /// <summary>A Markdown table of <paramref name="scores"/>.</summary>
    public static string Table(IEnumerable<RuleScore> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var sb = new StringBuilder("| rule | recall (lead >= 10) | median lead | p10 lead | false alarms |\n|---|---|---|---|---|\n");
        foreach (var s in scores)
        {
            sb.Append(string.Create(CultureInfo.InvariantCulture,
                $"| {s.Rule} | {s.Recall:F2} ({s.Warned}/{s.Failing}) | {s.MedianLead:F0} | {s.P10Lead:F0} | {s.FalseAlarmRate:F2} ({s.FalseAlarms}/{s.Converging}) |\n"));
        }
        return sb.ToString();
    }
}

/// <summary>The forecaster's candidate models fitted on tuning runs (<see cref="ForecastEvaluation.Fit"/>), with their logits on
/// every tuning record, from which <see cref="ForecastEvaluation.Choose"/> picks an operating point.</summary>
public sealed class ModelCandidates
{
    internal ModelCandidates(IReadOnlyList<RunTrace> tuning, List<(ForecastModel, List<List<(long, double, bool)>>)> models)
    {
        Tuning = tuning;
        Models = models;
    }

    /// <summary>The runs the candidates were fitted on.</summary>
    public IReadOnlyList<RunTrace> Tuning { get; }

    internal List<(ForecastModel Model, List<List<(long Step, double Logit, bool NonFinite)>> Logits)> Models { get; }
}
