using System.Diagnostics;

namespace CovariateShift.Statistics;

/// <summary>
/// The monitor's own clock: the wall time the monitor spends in its own code on the training thread (hooks and wrappers,
/// RecordGradients, Step with its records and sinks), and the wall time of the training steps around it, both with the
/// monotonic <see cref="Stopwatch"/> timestamp and no device synchronization. Time is counted in windows: a window closes
/// when a recorded step's statistics are collected (inside <c>Step</c>); what the monitor does after that point (building
/// and writing the record) is counted in the next window.
/// </summary>
internal sealed class OverheadMeter
{
    private readonly Func<long> _now;
    private long _windowStart;
    private long _windowMonitor;
    private long _enteredAt;
    private int _depth;
    private long _totalMonitor;

    /// <param name="now">The timestamp source (<see cref="Stopwatch.GetTimestamp"/> unless a test gives another).</param>
    /// <param name="frequency">Ticks per second of <paramref name="now"/>.</param>
    public OverheadMeter(Func<long>? now = null, long frequency = 0)
    {
        _now = now ?? Stopwatch.GetTimestamp;
        Frequency = frequency > 0 ? frequency : Stopwatch.Frequency;
        _windowStart = _now();
    }

    /// <summary>Ticks per second.</summary>
    public long Frequency { get; }

    /// <summary>The monitor's own time since construction, in ticks (windows closed so far and the open one).</summary>
    public long TotalMonitorTicks => _totalMonitor + (_depth > 0 ? _now() - _enteredAt : 0);

    /// <summary>Starts counting the monitor's time (nested calls count once).</summary>
    public void Enter()
    {
        if (_depth++ == 0) _enteredAt = _now();
    }

    /// <summary>Stops counting the monitor's time.</summary>
    public void Exit()
    {
        if (--_depth != 0) return;
        long d = _now() - _enteredAt;
        _windowMonitor += d;
        _totalMonitor += d;
    }

    /// <summary>Closes the current window (inside an <see cref="Enter"/>/<see cref="Exit"/> pair or outside one) and opens the next.</summary>
    public (long MonitorTicks, long WallTicks) CloseWindow()
    {
        long now = _now();
        long monitor = _windowMonitor;
        if (_depth > 0)
        {
            long d = now - _enteredAt;
            monitor += d;
            _totalMonitor += d;
            _enteredAt = now;
        }
        var result = (monitor, now - _windowStart);
        _windowStart = now;
        _windowMonitor = 0;
        return result;
    }

    /// <summary>Ticks to milliseconds.</summary>
    public double Milliseconds(long ticks) => ticks * 1000.0 / Frequency;
}
