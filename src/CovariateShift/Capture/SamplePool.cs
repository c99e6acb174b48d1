namespace CovariateShift.Capture;

/// <summary>
/// Reusable buffers for the sampled values of the CPU kernel, all of one length (the monitor's sample size). A recorded
/// step would otherwise allocate one buffer per layer (8 KB each at the default 2048), which is most of what the monitor
/// allocates and makes the collector run several times as often as training alone. A buffer is lent to one
/// <see cref="LayerSummary"/> (<see cref="SampleLease"/>) and comes back when that summary's capture has been built into a
/// record (<see cref="StepCapture.ReleaseSamples"/>) or discarded; a lease that never comes back is collected as
/// garbage like any array. Thread-safe (captures are made on the training thread, but a monitor may be flushed from
/// another).
/// </summary>
internal sealed class SamplePool
{
    /// <summary>The most buffers kept free at once (the pool never holds more than were lent at one time anyway: layers
    /// times the captures in flight).</summary>
    public const int MaxFree = 4096;

    private readonly Stack<float[]> _free = new();
    private readonly Lock _lock = new();

    public SamplePool(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
    }

    /// <summary>The length of every buffer.</summary>
    public int Length { get; }

    /// <summary>Buffers free to lend (tests).</summary>
    public int FreeCount
    {
        get
        {
            lock (_lock) return _free.Count;
        }
    }

    /// <summary>Lends a buffer of <see cref="Length"/> values (contents undefined).</summary>
    public SampleLease Rent()
    {
        float[]? buffer;
        lock (_lock) _free.TryPop(out buffer);
        return new SampleLease(this, buffer ?? GC.AllocateUninitializedArray<float>(Length));
    }

    internal void Give(float[] buffer)
    {
        lock (_lock)
        {
            if (_free.Count < MaxFree) _free.Push(buffer);
        }
    }
}

/// <summary>One buffer lent by a <see cref="SamplePool"/>; <see cref="Return"/> gives it back once (later calls do nothing).</summary>
internal sealed class SampleLease(SamplePool pool, float[] buffer)
{
    private int _returned;

    /// <summary>The lent buffer; not to be read or written after <see cref="Return"/>.</summary>
    public float[] Buffer { get; } = buffer;

    /// <summary>Whether the buffer has gone back to the pool.</summary>
    public bool Returned => Volatile.Read(ref _returned) != 0;

    /// <summary>Gives the buffer back to its pool; only the first call does.</summary>
    public void Return()
    {
        if (Interlocked.Exchange(ref _returned, 1) == 0) pool.Give(Buffer);
    }
}
