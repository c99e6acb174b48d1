namespace CovariateShift.Capture;

/// <summary>
/// A <see cref="StepCapture"/> that may still be on its way to the host (an engine that copies asynchronously, e.g. on
/// a CUDA stream). The monitor finishes pending captures in order: at the next <c>Step()</c> when they are
/// complete, or on demand (<c>Flush()</c>, <c>Dispose()</c>), where <see cref="Wait"/> blocks until the data is there.
/// Synchronous engines return completed ones (<see cref="Completed"/>).
/// </summary>
internal sealed class PendingCapture
{
    private readonly Func<bool> _isCompleted;
    private readonly Func<StepCapture> _wait;
    private StepCapture? _result;

    /// <summary>A capture that completes later: <paramref name="isCompleted"/> polls without blocking,
    /// <paramref name="wait"/> blocks until the capture is on the host and returns it (called once).</summary>
    public PendingCapture(long step, Func<bool> isCompleted, Func<StepCapture> wait)
    {
        Step = step;
        _isCompleted = isCompleted;
        _wait = wait;
    }

    private PendingCapture(StepCapture result)
        : this(result.Step, static () => true, () => result) => _result = result;

    /// <summary>The recorded step this capture belongs to.</summary>
    public long Step { get; }

    /// <summary>Whether <see cref="Wait"/> would return at once.</summary>
    public bool IsCompleted => _result is not null || _isCompleted();

    /// <summary>A capture that is already complete.</summary>
    public static PendingCapture Completed(StepCapture capture) => new(capture);

    /// <summary>Blocks until the capture is on the host and returns it.</summary>
    public StepCapture Wait() => _result ??= _wait();
}
