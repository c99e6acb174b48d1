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

    /// <summary>The largest false-alarm rate a tuned rule may have on the tuning runs.</summary>
    public const double MaxFalseAlarmRate = 0.1;

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

    /// <summary>The better of two scores under the tuning criterion: false-alarm rate at most <see cref="MaxFalseAlarmRate"/>,
    /// then the higher recall, the longer median lead, the longer 10th-percentile lead, the fewer false alarms.</summary>
    public static bool Better(RuleScore a, RuleScore b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        bool aOk = !(a.FalseAlarmRate > MaxFalseAlarmRate), bOk = !(b.FalseAlarmRate > MaxFalseAlarmRate);
        if (aOk != bOk) return aOk;
        if (!aOk) return a.FalseAlarms < b.FalseAlarms || (a.FalseAlarms == b.FalseAlarms && a.Warned > b.Warned);
        if (a.Warned != b.Warned) return a.Warned > b.Warned;
        if (a.MedianLead != b.MedianLead) return a.MedianLead > b.MedianLead;
        if (a.P10Lead != b.P10Lead) return a.P10Lead > b.P10Lead;
        return a.FalseAlarms < b.FalseAlarms;
    }

    /// <summary>The loss-spike rule with the factor from <see cref="SpikeFactors"/> that scores best on <paramref name="tuning"/>.</summary>
    public static LossSpikeRule TuneLossSpike(IReadOnlyList<RunTrace> tuning) =>
        Best(SpikeFactors.Select(k => new LossSpikeRule(k)), tuning);

    /// <summary>The weights tried for each of the forecaster's six weights.</summary>
    public static IReadOnlyList<double> ForecasterWeights { get; } = [0, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1, 1.5];

    private static readonly int[] Patiences = [1, 2, 3, 5];
    private static readonly double[] Smoothings = [2, 4, 8];
    private static readonly double[] TrendSpans = [10, 20, 40];

    /// <summary>
    /// The forecaster options that score best on <paramref name="tuning"/>: a coordinate search from each of
    /// <see cref="TuningStarts"/> (<paramref name="start"/>, then each statistic alone at weight 0.5, then all six at 0.25), the
    /// best result of all kept. A coordinate search tries every value of one parameter at a time (the six weights from
    /// <see cref="ForecasterWeights"/>, patience 1, 2, 3, 5, smoothing 2, 4, 8, trend span 10, 20, 40), keeps the best, and
    /// repeats until a pass changes nothing (at most 4 passes). Deterministic: the same runs give the same options.
    /// </summary>
    public static ForecastOptions TuneForecaster(IReadOnlyList<RunTrace> tuning, ForecastOptions? start = null)
    {
        ArgumentNullException.ThrowIfNull(tuning);
        ForecastOptions? best = null;
        RuleScore? bestScore = null;
        foreach (var s in TuningStarts(start ?? new ForecastOptions()))
        {
            var (options, score) = CoordinateSearch(tuning, s);
            if (bestScore is null || Better(score, bestScore))
            {
                best = options;
                bestScore = score;
            }
        }
        return best!;
    }

    /// <summary>The starting points of <see cref="TuneForecaster"/>: <paramref name="start"/>, each of the six statistics
    /// alone (weight 0.5, the others 0), and all six at 0.25.</summary>
    public static IEnumerable<ForecastOptions> TuningStarts(ForecastOptions start)
    {
        ArgumentNullException.ThrowIfNull(start);
        yield return start;
        var zero = start with { ActivationWeight = 0, GradientWeight = 0, LossWeight = 0, ActivationTrendWeight = 0, GradientTrendWeight = 0, LossTrendWeight = 0 };
        yield return zero with { ActivationWeight = 0.5 };
        yield return zero with { GradientWeight = 0.5 };
        yield return zero with { LossWeight = 0.5 };
        yield return zero with { ActivationTrendWeight = 0.5 };
        yield return zero with { GradientTrendWeight = 0.5 };
        yield return zero with { LossTrendWeight = 0.5 };
        yield return zero with { ActivationWeight = 0.25, GradientWeight = 0.25, LossWeight = 0.25, ActivationTrendWeight = 0.25, GradientTrendWeight = 0.25, LossTrendWeight = 0.25 };
    }

    private static (ForecastOptions Options, RuleScore Score) CoordinateSearch(IReadOnlyList<RunTrace> tuning, ForecastOptions start)
    {
        var best = start;
        var bestScore = Score(new ForecasterRule(best), tuning);
        var moves = new List<Func<ForecastOptions, IEnumerable<ForecastOptions>>>
        {
            o => ForecasterWeights.Select(w => o with { ActivationWeight = w }),
            o => ForecasterWeights.Select(w => o with { GradientWeight = w }),
            o => ForecasterWeights.Select(w => o with { LossWeight = w }),
            o => ForecasterWeights.Select(w => o with { ActivationTrendWeight = w }),
            o => ForecasterWeights.Select(w => o with { GradientTrendWeight = w }),
            o => ForecasterWeights.Select(w => o with { LossTrendWeight = w }),
            o => Patiences.Select(p => o with { Patience = p }),
            o => Smoothings.Where(m => m < o.TrendSpan).Select(m => o with { Smoothing = m }),
            o => TrendSpans.Where(t => t > o.Smoothing).Select(t => o with { TrendSpan = t }),
        };
        for (int pass = 0; pass < 4; pass++)
        {
            bool changed = false;
            foreach (var move in moves)
            {
                foreach (var candidate in move(best))
                {
                    if (candidate.ActivationWeight + candidate.GradientWeight + candidate.LossWeight
                        + candidate.ActivationTrendWeight + candidate.GradientTrendWeight + candidate.LossTrendWeight <= 0)
                    {
                        continue;
                    }

                    var score = Score(new ForecasterRule(candidate), tuning);
                    if (Better(score, bestScore))
                    {
                        best = candidate;
                        bestScore = score;
                        changed = true;
                    }
                }
            }
            if (!changed) break;
        }
        return (best, bestScore);
    }

    private static T Best<T>(IEnumerable<T> rules, IReadOnlyList<RunTrace> runs) where T : IWarningRule
    {
        T? best = default;
        RuleScore? bestScore = null;
        foreach (var rule in rules)
        {
            var score = Score(rule, runs);
            if (bestScore is null || Better(score, bestScore))
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
