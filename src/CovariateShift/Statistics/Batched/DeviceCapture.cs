using System.Runtime.InteropServices;
using CovariateShift.Capture;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// One recorded step's pack on its way to the host. The pack is a float32 vector: per chunk of the activation buffer
/// the pivot, mean and variance about it (in units of the scale), the scale (largest |x - pivot|), NaN / Inf / near-zero counts, finite min and max (and the saturated count when
/// a layer is bounded); then the sampled values; then per chunk of the parameter buffer the squared gradient, weight and
/// update sums; then the loss. On a CUDA device it is copied asynchronously into pinned host memory followed by a
/// one-element flag copy on the same stream; the pack has arrived when the host sees the flag (the copies complete in
/// stream order), so waiting for it never waits for work queued after it. On the CPU the pack is already host memory.
/// Owns its host tensor and returns it to the engine's pool when completed or disposed.
/// </summary>
internal sealed class DeviceCapture : IDisposable
{
    private readonly Action<Tensor>? _release;
    private Tensor? _host;
    private readonly int _length;

    /// <param name="host">The pack in host memory (pinned on CUDA, where the arrival flag follows it).</param>
    /// <param name="length">Values of the pack.</param>
    /// <param name="release">Where the host tensor goes when done (the engine's pinned pool): an asynchronous copy; null:
    /// the pack is already host memory (CPU) and is disposed.</param>
    /// <param name="activations">The activation part (first in the pack), or null.</param>
    /// <param name="gradients">The gradient part (after it), or null.</param>
    /// <param name="hasLoss">Whether the loss is the pack's last value.</param>
    public DeviceCapture(Tensor host, int length, Action<Tensor>? release, ActivationPart? activations, GradientPart? gradients, bool hasLoss)
    {
        _host = host;
        _length = length;
        _release = release;
        Activations = activations;
        Gradients = gradients;
        HasLoss = hasLoss;
    }

    /// <summary>Whether the pack is copied asynchronously (CUDA) rather than already in host memory.</summary>
    public bool Asynchronous => _release is not null;

    public ActivationPart? Activations { get; }
    public GradientPart? Gradients { get; }
    public bool HasLoss { get; }

    /// <summary>Whether the pack has arrived in host memory (never blocks).</summary>
    public bool IsReady
    {
        get
        {
            if (!Asynchronous || _host is null) return true;
            var flag = MemoryMarshal.Cast<byte, float>(_host.bytes)[_length..];
            bool ready = Volatile.Read(ref flag[0]) != 0f;
            if (ready) Interlocked.MemoryBarrier();
            return ready;
        }
    }

    /// <summary>Waits until the pack has arrived: spins on the flag (only the copy is waited for, not the queue behind it).</summary>
    public void Wait()
    {
        var spin = new SpinWait();
        var started = Environment.TickCount64;
        while (!IsReady)
        {
            spin.SpinOnce();
            if (Environment.TickCount64 - started > 5_000)
            {
                // A pack that has not arrived after 5 s: let the device finish everything, then it must be there.
                if (cuda.is_available()) cuda.synchronize();
                if (!IsReady) throw new InvalidOperationException("The monitor's statistics pack did not arrive from the device after a full synchronization.");
            }
        }
    }

    /// <summary>
    /// Turns the arrived pack into per-layer summaries (indexed by layer index) and adds the gradient parts to their
    /// captures; returns the loss when the pack carries it.
    /// </summary>
    public double? Complete(LayerSummary?[] summaries)
    {
        Wait();
        var host = MemoryMarshal.Cast<byte, float>(_host!.bytes)[.._length];
        int offset = 0;
        if (Activations is { } a)
        {
            a.Read(host[offset..], summaries);
            offset += a.Length;
        }
        if (Gradients is { } g)
        {
            g.Read(host[offset..]);
            offset += g.Length;
        }
        double? loss = HasLoss ? host[offset] : null;
        Dispose();
        return loss;
    }

    public void Dispose()
    {
        if (_host is null) return;
        var host = _host;
        _host = null;
        if (_release is not null) _release(host);
        else host.Dispose();
    }
}
