using System.Numerics;

namespace CovariateShift.Statistics;

/// <summary>
/// Which steps the monitor records: every <see cref="Current"/>-th step (step % Current == 0). Without a budget Current is
/// always the options' RecordEvery. With an overhead budget b, Current is RecordEvery * 2^k (at most the maximum) and is
/// adapted from the measured share of the step time the monitor takes (monitor time / wall time) over a window of
/// records: when the share is above b it goes up to the smallest such interval whose predicted share is at most 0.8 b;
/// when the share is so low that a smaller interval is predicted to stay at or below b / 2, it goes down to the smallest
/// such one. The prediction assumes the monitor's cost is per recorded step (its time per unit of training time scales
/// by old / new interval), which holds once unrecorded steps cost nothing (no hooks, no wrappers in the fields). A window is at least two records and at least
/// <see cref="WindowSteps"/> steps since the last change; the first record (it carries attach and JIT warm-up) is not used.
/// </summary>
internal sealed class RecordingInterval
{
    /// <summary>The least number of steps a decision is based on.</summary>
    public const int WindowSteps = 50;

    private readonly double? _budget;
    private long _windowMonitor;
    private long _windowWall;
    private long _windowSteps;
    private int _windowRecords;
    private bool _first = true;

    public RecordingInterval(int recordEvery, int maxRecordEvery, double? budget)
    {
        Base = recordEvery;
        int max = recordEvery;
        while ((long)max * 2 <= maxRecordEvery) max *= 2;   // RecordEvery * 2^k, the largest not above the maximum
        Max = max;
        _budget = budget;
        Current = recordEvery;
    }

    /// <summary>The options' RecordEvery (the smallest interval).</summary>
    public int Base { get; }

    /// <summary>The largest interval the budget may choose.</summary>
    public int Max { get; }

    /// <summary>The interval in use.</summary>
    public int Current { get; private set; }

    /// <summary>Whether <paramref name="step"/> is recorded at the current interval.</summary>
    public bool IsRecorded(long step) => step % Current == 0;

    /// <summary>The share the last decision was based on (NaN before the first).</summary>
    public double LastShare { get; private set; } = double.NaN;

    /// <summary>The steps the last decision was based on.</summary>
    public long LastWindowSteps { get; private set; }

    /// <summary>
    /// Continues at <paramref name="interval"/>, the interval a saved monitor state was at (a resumed run goes on at the
    /// budget's choice instead of starting again from <see cref="Base"/>): with a budget, an interval of the form Base * 2^k
    /// is taken (at most <see cref="Max"/>) and the measurement starts afresh, its first record (the resumed process's
    /// warm-up) not used; otherwise, or without a budget, the interval stays. Returns whether <see cref="Current"/> changed.
    /// </summary>
    public bool Resume(int interval)
    {
        if (_budget is null || interval < Base || interval % Base != 0 || !BitOperations.IsPow2(interval / Base)) return false;
        int next = Math.Min(interval, Max);
        _windowMonitor = _windowWall = _windowSteps = 0;
        _windowRecords = 0;
        _first = true;
        if (next == Current) return false;
        Current = next;
        return true;
    }

    /// <summary>
    /// Takes one record's window (the monitor's time and the wall time since the previous record, and the steps in
    /// between) and returns the interval from now on when it changes, otherwise null.
    /// </summary>
    public int? Observe(long monitorTicks, long wallTicks, long steps)
    {
        if (_budget is not { } budget) return null;
        if (_first)
        {
            _first = false;
            return null;
        }
        _windowMonitor += monitorTicks;
        _windowWall += wallTicks;
        _windowSteps += steps;
        _windowRecords++;
        if (_windowRecords < 2 || _windowSteps < WindowSteps || _windowWall <= 0) return null;

        double share = (double)_windowMonitor / _windowWall;
        LastShare = share;
        LastWindowSteps = _windowSteps;
        _windowMonitor = _windowWall = _windowSteps = 0;
        _windowRecords = 0;
        // The monitor's time per unit of the training's own time (wall minus monitor), at the current interval.
        double perTraining = share < 1 ? share / (1 - share) : double.PositiveInfinity;
        int next = Current;
        if (share > budget)
        {
            while (next < Max && Predicted(perTraining, next) > 0.8 * budget) next *= 2;
        }
        else
        {
            while (next > Base && Predicted(perTraining, next / 2) <= 0.5 * budget) next /= 2;
        }
        if (next == Current) return null;
        Current = next;
        return next;
    }

    /// <summary>The share predicted at <paramref name="interval"/>: the monitor's time per recorded step stays, so its
    /// time per training time scales by Current / interval; share = x / (1 + x).</summary>
    private double Predicted(double perTraining, int interval)
    {
        double x = perTraining * Current / interval;
        return double.IsPositiveInfinity(x) ? 1 : x / (1 + x);
    }
}
