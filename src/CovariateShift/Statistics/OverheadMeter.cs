using System.Diagnostics;

namespace CovariateShift.Statistics;

/// <summary>
/// The monitor's own clock: the wall time the monitor spends in its own code on the training thread (hooks and wrappers,
/// RecordGradients, Step with its records and sinks), and the wall time of the training steps around it, both with the
/// monotonic <see cref="Stopwatch"/> timestamp and no device synchronization. Time is counted in windows: a window closes
/// when a recorded step's statistics are collected (inside <c>Step</c>); what the monitor does after that point (building
/// and writing the record) is counted in the next window.
/// <para>Every tick of the monitor's time is also charged to exactly one <see cref="MonitorPart"/>: the part named by
/// the innermost <see cref="Enter"/> still open, so that a part entered inside another (records built inside Step)
/// takes its own time out of the outer one.</para>
/// </summary>
internal sealed class OverheadMeter
{
    private const int MaxDepth = 8;

    private readonly Func<long> _now;
    private readonly long[] _partTicks = new long[MonitorTimeBreakdown.PartCount];
    private readonly MonitorPart[] _stack = new MonitorPart[MaxDepth];
    private long _windowStart;
    private long _windowMonitor;
    private long _enteredAt;
    private long _partMark;   // when the innermost open part last started counting
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

    /// <summary>The monitor's own time since construction, in ticks (windows closed so far and the open one). Exact on the
    /// training thread; another thread gets a snapshot that may miss or double the part in progress, never an exception.</summary>
    public long TotalMonitorTicks
    {
        get
        {
            long total = Volatile.Read(ref _totalMonitor);
            return Volatile.Read(ref _depth) > 0 ? total + Math.Max(0, _now() - Volatile.Read(ref _enteredAt)) : total;
        }
    }

    /// <summary>Starts counting the monitor's time, charged to <paramref name="part"/> until a nested Enter or this
    /// Enter's <see cref="Exit"/> (nested calls count once in the total).</summary>
    public void Enter(MonitorPart part)
    {
        long now = _now();
        if (_depth == 0) _enteredAt = now;
        else _partTicks[(int)Top] += now - _partMark;
        if (_depth < MaxDepth) _stack[_depth] = part;   // deeper than that (never in practice): the deepest kept part counts
        _depth++;
        _partMark = now;
    }

    /// <summary>Stops counting the monitor's time in the innermost open part.</summary>
    public void Exit()
    {
        long now = _now();
        _partTicks[(int)Top] += now - _partMark;
        _partMark = now;
        if (--_depth != 0) return;
        long d = now - _enteredAt;
        _windowMonitor += d;
        _totalMonitor += d;
    }

    /// <summary>The monitor's time so far per part, in ticks (the open part counted up to now); read between two parts
    /// on the training thread they add up to <see cref="TotalMonitorTicks"/>. Another thread gets a snapshot that may
    /// miss or double the part in progress (the training thread does not lock), never an exception.</summary>
    public long[] PartTicks()
    {
        var ticks = (long[])_partTicks.Clone();
        int depth = Volatile.Read(ref _depth);   // read once: the training thread may close its last part meanwhile
        if (depth > 0)
            ticks[(int)_stack[Math.Min(depth, MaxDepth) - 1]] += Math.Max(0, _now() - Volatile.Read(ref _partMark));
        return ticks;
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

    /// <summary>The innermost open part (only while one is open).</summary>
    private MonitorPart Top => _stack[Math.Min(_depth, MaxDepth) - 1];

    /// <summary>Ticks to milliseconds.</summary>
    public double Milliseconds(long ticks) => ticks * 1000.0 / Frequency;
}
