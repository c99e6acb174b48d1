using System.Globalization;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Probes;

/// <summary>Settings of the gradient-based internal covariate shift probe (<see cref="MonitorOptions.GradientIcs"/>).</summary>
public sealed record GradientIcsOptions
{
    /// <summary>Measure layers of these module types (case-insensitive) that have trainable parameters of their own. Default Linear, Conv2d.</summary>
    public IReadOnlyCollection<string> LayerTypes { get; init; } = ["Linear", "Conv2d"];

    /// <summary>Optional JSON Lines file receiving one <c>{step, layer, l2, cos, grad_norm}</c> object per measured layer. Null: none.</summary>
    public string? JsonLinesPath { get; init; }
}

/// <summary>
/// Santurkar et al. (2018)'s gradient ICS of one layer at one step: G = the gradient of the loss with respect to the
/// layer's parameters at the current weights, G' = the same gradient on the same batch after every earlier measured
/// layer has taken its update (this layer and later ones unchanged).
/// </summary>
/// <param name="Step">Training step.</param>
/// <param name="Layer">Dotted layer name.</param>
/// <param name="L2">||G - G'||₂.</param>
/// <param name="Cosine">cos(G, G') (NaN when either is zero).</param>
/// <param name="GradNorm">||G||₂, to put <paramref name="L2"/> in proportion.</param>
public sealed record GradientIcsMeasurement(long Step, string Layer, double L2, double Cosine, double GradNorm);

/// <summary>
/// Measures <see cref="GradientIcsMeasurement"/> for every measured layer. <see cref="Capture"/> after
/// <c>backward()</c> and before <c>optimizer.step()</c> keeps G and the weights; <see cref="Measure"/> after the step
/// recomputes the loss on the same batch once per measured layer, with every earlier layer that has parameters (norm
/// layers included) at its new weights and the rest at their old ones, then restores the new weights and every buffer (batch-norm running statistics).
/// </summary>
/// <remarks>Cost per measured step: one forward and backward pass per measured layer (L extra passes for L layers), and
/// two copies of the measured parameters plus one of the model's buffers. The extra passes draw fresh random numbers
/// (e.g. noisy batch norm's noise), so G' also differs by that noise.</remarks>
public sealed class GradientIcsProbe : IDisposable
{
    private readonly nn.Module _model;
    // Every module with trainable parameters of its own, in network order; Measured: of a selected type.
    private readonly List<(string Name, TorchSharp.Modules.Parameter[] Parameters, bool Measured)> _layers = [];
    private readonly StreamWriter? _writer;
    private Tensor[]? _gradients;
    private Tensor[][]? _before;
    private bool _disposed;

    /// <summary>A probe on the layers of <paramref name="model"/> selected by <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentException">No layer of the model matches <see cref="GradientIcsOptions.LayerTypes"/>.</exception>
    public GradientIcsProbe(nn.Module model, GradientIcsOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _model = model;
        var types = new HashSet<string>(options.LayerTypes, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, module) in model.named_modules())
        {
            var ps = module.named_parameters(recurse: false).Select(p => p.parameter).Where(p => p.requires_grad).ToArray();
            if (ps.Length > 0) _layers.Add((name, ps, types.Contains(module.GetType().Name)));
        }
        if (!_layers.Any(l => l.Measured))
            throw new ArgumentException($"The gradient ICS probe found no layer of type {string.Join("/", types)} with trainable parameters; expected at least one.", nameof(options));
        if (options.JsonLinesPath is { } path)
        {
            var full = Path.GetFullPath(path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            _writer = new StreamWriter(full, append: false, new UTF8Encoding(false));
        }
    }

    /// <summary>Names of the measured layers, in network order.</summary>
    public IReadOnlyList<string> Layers => _layers.Where(l => l.Measured).Select(l => l.Name).ToList();

    /// <summary>Keeps G and the weights of every measured layer. Call after <c>backward()</c>, before <c>optimizer.step()</c>.</summary>
    public void Capture()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Release();
        using var noGrad = no_grad();
        _gradients = new Tensor[_layers.Count];
        _before = new Tensor[_layers.Count][];
        for (int i = 0; i < _layers.Count; i++)
        {
            _gradients[i] = _layers[i].Measured ? Flat(_layers[i].Parameters).DetachFromDisposeScope() : empty(0).DetachFromDisposeScope();
            _before[i] = _layers[i].Parameters.Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray();
        }
    }

    /// <summary>
    /// After <c>optimizer.step()</c>: recomputes <paramref name="loss"/> (the loss of the same batch, through the model)
    /// once per measured layer and returns the measurements; empty when <see cref="Capture"/> was not called for this step.
    /// The model's parameters and buffers are as the optimizer left them afterwards; parameter gradients are zeroed.
    /// </summary>
    public IReadOnlyList<GradientIcsMeasurement> Measure(long step, Func<Tensor> loss)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(loss);
        if (_gradients is null || _before is null) return [];
        var after = new Tensor[_layers.Count][];
        var buffers = _model.buffers().ToArray();
        Tensor[] savedBuffers;
        using (var noGrad = no_grad())
        {
            savedBuffers = buffers.Select(b => b.clone().DetachFromDisposeScope()).ToArray();
            for (int i = 0; i < _layers.Count; i++)
            {
                after[i] = _layers[i].Parameters.Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray();
                Set(_layers[i].Parameters, _before[i]);
            }
        }
        var results = new List<GradientIcsMeasurement>(_layers.Count);
        try
        {
            for (int i = 0; i < _layers.Count; i++)
            {
                // Layers before i (measured or not: a norm's affine parameters count too) at their new weights, i and later at the old ones.
                if (i > 0)
                {
                    using var noGrad = no_grad();
                    Set(_layers[i - 1].Parameters, after[i - 1]);
                }
                if (!_layers[i].Measured) continue;
                using var scope = NewDisposeScope();
                ZeroGrad();
                loss().backward();
                using var noGrad2 = no_grad();
                var g = _gradients[i].to_type(ScalarType.Float64);
                var gp = Flat(_layers[i].Parameters).to_type(ScalarType.Float64);
                double l2 = (g - gp).norm().item<double>();
                double ng = g.norm().item<double>(), ngp = gp.norm().item<double>();
                double cos = ng > 0 && ngp > 0 ? g.dot(gp).item<double>() / (ng * ngp) : double.NaN;
                results.Add(new GradientIcsMeasurement(step, _layers[i].Name, l2, cos, ng));
            }
        }
        finally
        {
            using var noGrad = no_grad();
            for (int i = 0; i < _layers.Count; i++)
            {
                Set(_layers[i].Parameters, after[i]);
                foreach (var t in after[i]) t.Dispose();
            }
            for (int b = 0; b < buffers.Length; b++)
            {
                buffers[b].copy_(savedBuffers[b]);
                savedBuffers[b].Dispose();
            }
            ZeroGrad();
            Release();
        }
        if (_writer is not null)
        {
            foreach (var r in results) _writer.Write(Line(r));
            _writer.Flush();
        }
        return results;
    }

    /// <summary>Version of the ics.jsonl lines (the <c>version</c> field of each).</summary>
    public const int IcsLineVersion = 1;

    /// <summary>One ics.jsonl line: <c>{"version":1,"step":..,"layer":..,"l2":..,"cos":..,"grad_norm":..}</c> (non-finite numbers as "NaN", "Infinity", "-Infinity").</summary>
    internal static string Line(GradientIcsMeasurement r)
    {
        using var buffer = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("version", IcsLineVersion);
            w.WriteNumber("step", r.Step);
            w.WriteString("layer", r.Layer);
            Number(w, "l2", r.L2);
            Number(w, "cos", r.Cosine);
            Number(w, "grad_norm", r.GradNorm);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    private static void Number(System.Text.Json.Utf8JsonWriter w, string name, double v)
    {
        if (double.IsFinite(v)) w.WriteNumber(name, v);
        else w.WriteString(name, v.ToString(CultureInfo.InvariantCulture));
    }

    private static Tensor Flat(TorchSharp.Modules.Parameter[] ps) =>
        cat(ps.Select(p => p.grad is { } g ? g.detach().flatten() : zeros(p.numel(), dtype: p.dtype, device: p.device)).ToList(), 0).clone();

    private static void Set(TorchSharp.Modules.Parameter[] ps, Tensor[] values)
    {
        for (int k = 0; k < ps.Length; k++) ps[k].copy_(values[k]);
    }

    private void ZeroGrad()
    {
        foreach (var p in _model.parameters())
        {
            p.grad?.zero_();
        }
    }

    private void Release()
    {
        if (_gradients is not null)
        {
            foreach (var t in _gradients) t.Dispose();
        }
        if (_before is not null)
        {
            foreach (var t in _before.SelectMany(x => x)) t.Dispose();
        }
        _gradients = null;
        _before = null;
    }

    /// <summary>Releases the kept tensors and closes the JSON Lines file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Release();
        _writer?.Dispose();
    }
}
