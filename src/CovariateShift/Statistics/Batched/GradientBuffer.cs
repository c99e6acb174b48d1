using CovariateShift.Capture;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// The gradient side of the batched device engine; it owns every tensor it keeps. At <see cref="Capture"/> (after
/// backward, before the optimizer step): one concatenation of the gradients and one of the parameters (the snapshot) into
/// the zero-padded flat layout of <see cref="GradientLayout"/>, with their per-chunk sums of squares. At the end of the
/// step (<see cref="AddParts"/>): one more concatenation for the update and its sums. The flat views of the parameters
/// and the zero padding are kept across steps (rebuilt when the parameters change); the step's sums and snapshot until
/// <see cref="Reset"/>.
/// </summary>
internal sealed class GradientBuffer(DeviceOpCounter ops) : IDisposable
{
    private GradientLayout? _layout;
    private Tensor? _pad;
    private Tensor[] _padViews = [];
    private Tensor[][] _parameterViews = [];
    private Tensor? _gradientSquares;
    private Tensor? _weightSquares;
    private Tensor? _snapshot;
    private GradientCapture?[] _captures = [];

    /// <summary>Whether gradients were captured this step.</summary>
    public bool HasWork => _captures.Length > 0;

    /// <summary>Gradient and weight sums of squares per chunk and the parameter snapshot, for all layers together.</summary>
    public void Capture(IReadOnlyList<(MonitoredLayer Layer, Parameter[] Parameters, GradientCapture Capture)> layers)
    {
        Reset();
        if (layers.Count == 0) return;
        var entries = layers.Select(l => (l.Layer, l.Parameters)).ToList();
        var target = layers[0].Parameters[0].device;
        if (_layout is null || !_layout.Matches(entries)) Rebuild(entries, target);
        var layout = _layout!;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = new List<Tensor>();
        var weights = new List<Tensor>();
        for (int i = 0; i < layout.Segments.Count; i++)
        {
            var seg = layout.Segments[i];
            foreach (var p in seg.Parameters) grads.Add(ops.Handle(ops.Handle(p.grad!).reshape(-1)));
            weights.AddRange(_parameterViews[i]);
            if (seg.Pad > 0)
            {
                grads.Add(_padViews[i]);
                weights.Add(_padViews[i]);
            }
        }
        int m = layout.Chunks, c = layout.ChunkLength;
        var g = ops.Launch(cat(grads));
        _gradientSquares = ops.Launch(2, ops.Handle(g.view(m, c)).square().sum(1)).DetachFromDisposeScope();
        _snapshot = ops.Launch(cat(weights)).DetachFromDisposeScope();
        _weightSquares = ops.Launch(2, ops.Handle(_snapshot.view(m, c)).square().sum(1)).DetachFromDisposeScope();
        _captures = [.. layers.Select(l => (GradientCapture?)l.Capture)];
    }

    private void Rebuild(List<(MonitoredLayer Layer, Parameter[] Parameters)> entries, torch.Device device)
    {
        DisposeLayout();
        var layout = GradientLayout.Build(entries);
        _layout = layout;
        _pad = ops.Launch(zeros(Math.Max(1, layout.MaxPad), ScalarType.Float32, device)).DetachFromDisposeScope();
        _padViews = [.. layout.Segments.Select(s => ops.Handle(_pad.narrow(0, 0, Math.Max(1, s.Pad))).DetachFromDisposeScope())];
        // Flat views of the parameters themselves: the optimizer updates them in place, so the views stay current.
        _parameterViews = [.. layout.Segments.Select(s => s.Parameters.Select(p => ops.Handle(p.detach().reshape(-1)).DetachFromDisposeScope()).ToArray())];
    }

    /// <summary>
    /// Adds the gradient, weight and update sums of squares per chunk to the pack's <paramref name="parts"/> (inside the
    /// caller's dispose scope) and returns how to read them back, or null when no gradients were captured.
    /// </summary>
    public GradientPart? AddParts(List<Tensor> parts)
    {
        if (_layout is not { } layout || _captures.Length == 0) return null;
        parts.Add(_gradientSquares!);
        parts.Add(_weightSquares!);
        bool comparable = layout.Segments.All(s => s.Parameters.All(p => !p.IsInvalid));
        if (comparable)
        {
            var now = new List<Tensor>();
            for (int i = 0; i < layout.Segments.Count; i++)
            {
                now.AddRange(_parameterViews[i]);
                if (layout.Segments[i].Pad > 0) now.Add(_padViews[i]);
            }
            var current = ops.Launch(cat(now));
            var update = ops.Launch(current.sub_(_snapshot!));
            parts.Add(ops.Launch(2, ops.Handle(update.view(layout.Chunks, layout.ChunkLength)).square().sum(1)));
        }
        else
        {
            parts.Add(ops.Launch(zeros_like(_gradientSquares!)));
        }
        return new GradientPart(layout, _captures, comparable);
    }

    /// <summary>Drops the step's sums and snapshot (the layout and the parameter views stay).</summary>
    public void Reset()
    {
        _gradientSquares?.Dispose();
        _weightSquares?.Dispose();
        _snapshot?.Dispose();
        _gradientSquares = _weightSquares = _snapshot = null;
        _captures = [];
    }

    private void DisposeLayout()
    {
        foreach (var v in _padViews) v.Dispose();
        foreach (var views in _parameterViews)
        {
            foreach (var v in views) v.Dispose();
        }
        _pad?.Dispose();
        _pad = null;
        _padViews = [];
        _parameterViews = [];
        _layout = null;
    }

    public void Dispose()
    {
        Reset();
        DisposeLayout();
    }
}

/// <summary>
/// The gradient part of a step's pack, on the host: per chunk of the parameter buffer the squared gradient, weight and
/// update sums (three runs of <see cref="GradientLayout.Chunks"/> values). <see cref="Read"/> adds each layer's sums to
/// its <see cref="GradientCapture"/>.
/// </summary>
/// <param name="Layout">The parameter buffer's layout.</param>
/// <param name="Captures">Per segment, the capture its sums go to.</param>
/// <param name="HasUpdate">Whether the update could be measured (every parameter still the one snapshotted).</param>
internal sealed record GradientPart(GradientLayout Layout, IReadOnlyList<GradientCapture?> Captures, bool HasUpdate)
{
    /// <summary>Values of this part in the pack.</summary>
    public int Length => 3 * Layout.Chunks;

    /// <summary>Adds the sums in <paramref name="pack"/> (this part's values first) to the captures.</summary>
    public void Read(ReadOnlySpan<float> pack)
    {
        int m = Layout.Chunks;
        var grad = pack[..m];
        var weight = pack.Slice(m, m);
        var update = pack.Slice(2 * m, m);
        for (int i = 0; i < Layout.Segments.Count; i++)
        {
            var seg = Layout.Segments[i];
            if (Captures[i] is not { } capture) continue;
            double gs = 0, ws = 0, us = 0;
            for (int k = seg.FirstChunk; k < seg.FirstChunk + seg.ChunkCount; k++)
            {
                gs += grad[k];
                ws += weight[k];
                us += update[k];
            }
            capture.AddDevice(gs, ws, us, HasUpdate);
        }
    }
}
