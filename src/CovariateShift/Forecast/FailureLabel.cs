namespace CovariateShift.Forecast;

/// <summary>
/// What counts as a failed run, from its training losses: the first step whose loss is NaN or infinite, or the first
/// step at which the mean loss of the last <see cref="Window"/> steps is above chance level, ln(classes), after that
/// mean had once been below <see cref="LearnedFraction"/> x ln(classes) (the run had learned, then lost it; the loss
/// of such a run may stay finite). The trainer records it in the run's summary; the forecast experiment labels with it.
/// </summary>
public static class FailureLabel
{
    /// <summary>Steps in the moving mean of the loss. 5.</summary>
    public const int Window = 5;

    /// <summary>The run has learned once the moving mean is below this fraction of ln(classes) (half the chance loss). 0.5.</summary>
    public const double LearnedFraction = 0.5;

    /// <summary>
    /// The failure step of a run whose losses, in step order, are <paramref name="losses"/> (step, loss), or null when
    /// it did not fail.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="classes"/> is less than 2.</exception>
    public static long? FailureStep(IEnumerable<(long Step, double Loss)> losses, int classes)
    {
        ArgumentNullException.ThrowIfNull(losses);
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), classes, $"A classifier has at least 2 classes; got {classes}.");
        double chance = Math.Log(classes);
        var window = new Queue<double>(Window);
        double sum = 0;
        bool learned = false;
        foreach (var (step, loss) in losses)
        {
            if (!double.IsFinite(loss)) return step;
            if (window.Count == Window) sum -= window.Dequeue();
            window.Enqueue(loss);
            sum += loss;
            double mean = sum / window.Count;
            if (mean < LearnedFraction * chance) learned = true;
            else if (learned && mean > chance) return step;
        }
        return null;
    }

    /// <summary><see cref="FailureStep(IEnumerable{ValueTuple{long, double}}, int)"/> for losses of steps 0, 1, 2, ...</summary>
    public static long? FailureStep(IReadOnlyList<double> losses, int classes)
    {
        ArgumentNullException.ThrowIfNull(losses);
        return FailureStep(losses.Select((l, i) => ((long)i, l)), classes);
    }
}
