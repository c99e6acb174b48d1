namespace CovariateShift.Capture;

/// <summary>
/// Reusable buffers for the sampled values of the CPU kernel: buffers of the monitor's sample size (<see cref="Length"/>)
/// for outputs at least that large, and of an output's own length for smaller ones (every element is then the sample; e.g.
/// a classifier head of [128, 10] takes 1,280). A recorded step would otherwise allocate one buffer per layer (8 KB each
/// at the default 2048), which is most of what the monitor allocates and makes the collector run several times as often
/// as training alone. A buffer is lent to one <see cref="LayerSummary"/> (<see cref="SampleLease"/>) and comes back when
/// that summary's capture has been built into a record (<see cref="StepCapture.ReleaseSamples"/>) or discarded; a lease
/// that never comes back is collected as garbage like any array. Thread-safe (captures are made on the training thread,
/// but a monitor may be flushed from another).
/// </summary>
internal sealed class SamplePool
{
    /// <summary>The most buffers kept free at once, over all lengths (the pool never holds more than were lent at one time
    /// anyway, per length: layers times the captures in flight).</summary>
    public const int MaxFree = 4096;

    private readonly Dictionary<int, Stack<float[]>> _free = [];
    private readonly Lock _lock = new();
    private int _freeCount;

    public SamplePool(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
    }

    /// <summary>The length of a full-size buffer (the sample size); smaller outputs borrow shorter ones.</summary>
    public int Length { get; }

    /// <summary>Buffers free to lend, over all lengths (tests).</summary>
    public int FreeCount
    {
        get
        {
            lock (_lock) return _freeCount;
        }
    }

    /// <summary>Lends a buffer of <see cref="Length"/> values (contents undefined).</summary>
    public SampleLease Rent() => Rent(Length);

    /// <summary>Lends a buffer of <paramref name="length"/> values, 1..<see cref="Length"/> (contents undefined).</summary>
    public SampleLease Rent(int length)
    {
        if (length < 1 || length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"A sample buffer holds 1 to {Length} values (the sample size).");
        float[]? buffer = null;
        lock (_lock)
        {
            if (_free.TryGetValue(length, out var stack) && stack.TryPop(out buffer)) _freeCount--;
        }
        return new SampleLease(this, buffer ?? GC.AllocateUninitializedArray<float>(length));
    }

    internal void Give(float[] buffer)
    {
        lock (_lock)
        {
            if (_freeCount >= MaxFree) return;
            if (!_free.TryGetValue(buffer.Length, out var stack)) _free.Add(buffer.Length, stack = new Stack<float[]>());
            stack.Push(buffer);
            _freeCount++;
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
