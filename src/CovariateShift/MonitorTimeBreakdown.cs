namespace CovariateShift;

/// <summary>Where the monitor's own time on the training thread goes (see <see cref="MonitorTimeBreakdown"/>).</summary>
public enum MonitorPart
{
    /// <summary>The layers' outputs in their forward hooks and wrappers: the exact reductions over every value and the
    /// sample (CPU), or the queued device reductions (CUDA); also the copy before an in-place module overwrites one.</summary>
    Activations,

    /// <summary><see cref="ActivationMonitor.RecordGradients"/>: gradient and weight sums of squares and the parameter
    /// snapshot the update is measured against.</summary>
    Gradients,

    /// <summary>The step's collection inside <see cref="ActivationMonitor.Step"/>: the update measured against the
    /// snapshots (CPU) and the statistics' transfer to the host (CUDA: queued, or waited for when records are in flight).</summary>
    Collection,

    /// <summary>Building the record: percentiles and histograms of the samples, shift metrics, anomalies, the forecast.</summary>
    Records,

    /// <summary>Writing the record to the sinks and observers (JSON Lines, Serilog, TensorBoard, the user's own).</summary>
    Sinks,

    /// <summary><see cref="ActivationMonitor.MeasureGradientIcs"/>: the gradient-ICS probe's extra passes (what the
    /// monitored layers' hooks do during its forward passes counts as <see cref="Activations"/>).</summary>
    Probes,

    /// <summary>The rest of <see cref="ActivationMonitor.Step"/> and <see cref="ActivationMonitor.Flush"/>: the loss,
    /// arming the hooks and wrappers for the next step, the budget's bookkeeping.</summary>
    Other,
}

/// <summary>
/// The monitor's own wall time on the training thread since attach (<see cref="ActivationMonitor.MonitorTime"/>), split
/// by <see cref="MonitorPart"/>: every tick of it is charged to exactly one part, so the parts add up to
/// <see cref="Total"/>. Same clock and same blind spots as <see cref="Records.StepRecord.MonitorMs"/> (host time only;
/// on a GPU the device's own time for the queued reductions is not in it).
/// </summary>
public sealed record MonitorTimeBreakdown
{
    internal const int PartCount = (int)MonitorPart.Other + 1;

    private readonly TimeSpan[] _parts;

    internal MonitorTimeBreakdown(long[] ticks, long frequency)
    {
        if (ticks.Length != PartCount) throw new ArgumentException($"Expected {PartCount} parts, got {ticks.Length}.", nameof(ticks));
        // Exact when the ticks are already TimeSpan ticks (Since); else rounded to the nearest 100 ns.
        _parts = [.. ticks.Select(t => frequency == TimeSpan.TicksPerSecond
            ? TimeSpan.FromTicks(t)
            : TimeSpan.FromTicks((long)Math.Round(t * ((double)TimeSpan.TicksPerSecond / frequency))))];
        Total = _parts.Aggregate(TimeSpan.Zero, (sum, t) => sum + t);
    }

    /// <summary>The time charged to <paramref name="part"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="part"/> is not a defined <see cref="MonitorPart"/>.</exception>
    public TimeSpan this[MonitorPart part] => (uint)part < PartCount
        ? _parts[(int)part]
        : throw new ArgumentOutOfRangeException(nameof(part), part, $"Expected one of: {string.Join(", ", Enum.GetNames<MonitorPart>())}.");

    /// <summary>The sum of the parts: the monitor's own time since attach (<see cref="ActivationMonitor.MonitorTime"/>, to
    /// the 100 ns of a <see cref="TimeSpan"/> tick per part).</summary>
    public TimeSpan Total { get; }

    /// <summary>Every part with its time, in the order of <see cref="MonitorPart"/>.</summary>
    public IReadOnlyList<(MonitorPart Part, TimeSpan Time)> Parts => [.. Enum.GetValues<MonitorPart>().Select(p => (p, _parts[(int)p]))];

    /// <summary>The time of each part from <paramref name="earlier"/> (a breakdown of the same monitor) to this one.</summary>
    public MonitorTimeBreakdown Since(MonitorTimeBreakdown earlier)
    {
        ArgumentNullException.ThrowIfNull(earlier);
        return new MonitorTimeBreakdown([.. _parts.Zip(earlier._parts, (a, b) => (a - b).Ticks)], TimeSpan.TicksPerSecond);
    }

    /// <inheritdoc/>
    public bool Equals(MonitorTimeBreakdown? other) => other is not null && _parts.SequenceEqual(other._parts);

    /// <inheritdoc/>
    public override int GetHashCode() => _parts.Aggregate(0, (h, p) => HashCode.Combine(h, p));

    /// <summary>"activations 1.20 ms, gradients 0.40 ms, ..." (every part, milliseconds).</summary>
    public override string ToString() =>
        string.Join(", ", Parts.Select(p => $"{p.Part.ToString().ToLowerInvariant()} {p.Time.TotalMilliseconds.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)} ms"));
}
