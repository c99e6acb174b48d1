using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>
/// The trainer's losses: every step's value (read at once on the CPU; kept on the device and read in batches
/// elsewhere), the ones since the last progress report, the last <c>window</c> of the whole run (a resumed run
/// continues the window it saved, so its final train loss is a straight run's) and where the loss first became
/// non-finite. Owns the device tensors it keeps.
/// </summary>
internal sealed class LossTracker : IDisposable
{
    private readonly bool _onCpu;
    private readonly int _window;
    private readonly List<Tensor> _onDevice = [];
    private readonly List<double> _recent;

    public LossTracker(bool onCpu, int window, IEnumerable<float>? pending, IEnumerable<double>? recent)
    {
        _onCpu = onCpu;
        _window = window;
        Pending.AddRange(pending ?? []);
        _recent = [.. recent ?? []];
    }

    /// <summary>The loss of every step this call took (including a non-finite one at the divergence step).</summary>
    public List<double> Losses { get; } = [];

    /// <summary>Losses since the last progress report.</summary>
    public List<float> Pending { get; } = [];

    /// <summary>
    /// Takes the step's loss. False when it is known now (on the CPU) to be NaN or infinite: the
    /// step must not be applied (unless divergence is tolerated: then <paramref name="tolerate"/> keeps it as any other).
    /// </summary>
    public bool Add(Tensor loss, bool tolerate)
    {
        if (!_onCpu)
        {
            _onDevice.Add(loss.detach().DetachFromDisposeScope());
            return true;
        }
        float value = loss.item<float>();
        Losses.Add(value);
        _recent.Add(value);
        if (!float.IsFinite(value) && !tolerate) return false;
        Pending.Add(value);
        return true;
    }

    /// <summary>Device losses waiting to be read.</summary>
    public int Unread => _onDevice.Count;

    /// <summary>Reads the losses kept on the device (one transfer); returns the 0-based step of the first non-finite
    /// one, or null. <paramref name="done"/>: steps completed (the last unread loss is step done - 1).</summary>
    public long? ReadDevice(long done)
    {
        if (_onDevice.Count == 0) return null;
        float[] values;
        using (var stacked = stack(_onDevice))
        using (var host = stacked.to(ScalarType.Float32).cpu())
            values = host.data<float>().ToArray();
        DisposeDevice();
        long first = done - values.Length;
        for (int i = 0; i < values.Length; i++)
        {
            Losses.Add(values[i]);
            Pending.Add(values[i]);
            _recent.Add(values[i]);
            if (!float.IsFinite(values[i])) return first + i;
        }
        return null;
    }

    /// <summary>The last <c>window</c> losses of completed steps (what a checkpoint keeps).</summary>
    public IReadOnlyList<double> Recent(int completedThisCall) => RecentOfCompleted(completedThisCall).TakeLast(_window).ToArray();

    /// <summary>Mean loss of the last <c>window</c> completed steps of the run (NaN when none).</summary>
    public double FinalLoss(int completedThisCall, out int count)
    {
        var window = RecentOfCompleted(completedThisCall).TakeLast(_window).ToList();
        count = window.Count;
        return window.Count > 0 ? window.Average() : double.NaN;
    }

    /// <summary>The recent losses without those of steps that were not completed (the divergence step's).</summary>
    private IEnumerable<double> RecentOfCompleted(int completedThisCall) =>
        _recent.Take(_recent.Count - Math.Max(0, Losses.Count - completedThisCall));

    private void DisposeDevice()
    {
        foreach (var t in _onDevice) t.Dispose();
        _onDevice.Clear();
    }

    public void Dispose() => DisposeDevice();
}
