using System.Text.RegularExpressions;
using CovariateShift.Records;
using CovariateShift.Training.Data;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Training.FineTuning;

/// <summary>
/// The pieces of fine-tuning a trained classifier on a shifted domain: freezing layers, a new head, the batch-norm
/// modes, and the reference snapshot on source-domain data taken before the first step (see <c>covshift finetune</c>).
/// </summary>
public static class FineTuningSetup
{
    /// <summary>
    /// Freezes every parameter of the modules whose dotted name (<c>named_modules()</c>) matches <paramref name="pattern"/>
    /// (a .NET regular expression, searched anywhere in the name): <c>requires_grad = false</c>, so they get no gradient, and
    /// the trainer gives them no optimizer state. Returns the frozen parameter names.
    /// </summary>
    /// <exception cref="ArgumentException">The pattern is not a valid regular expression, or matches no module with parameters; the message lists the layer names.</exception>
    public static IReadOnlyList<string> Freeze(nn.Module model, string pattern)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pattern);
        Regex regex;
        try
        {
            regex = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"--freeze '{pattern}' is not a valid regular expression: {e.Message}", e);
        }

        var modules = model.named_modules().Where(m => m.module.named_parameters(recurse: false).Any()).ToList();
        var frozen = new List<string>();
        foreach (var (name, module) in modules.Where(m => regex.IsMatch(m.name)))
        {
            foreach (var (pname, p) in module.named_parameters(recurse: false))
            {
                p.requires_grad = false;
                frozen.Add($"{name}.{pname}");
            }
        }

        if (frozen.Count == 0)
            throw new ArgumentException($"--freeze '{pattern}' matches no layer with parameters; the layers with parameters are: {string.Join(", ", modules.Select(m => m.name))}.");
        if (model.parameters().All(p => !p.requires_grad))
        {
            foreach (var p in model.parameters()) p.requires_grad = true;
            throw new ArgumentException($"--freeze '{pattern}' matches every layer with parameters ({string.Join(", ", modules.Select(m => m.name))}), so nothing would be trained; expected a pattern that leaves at least one layer (e.g. head) trainable.");
        }
        return frozen;
    }

    /// <summary>
    /// Re-initializes the classifier head (the <c>Linear</c> layer named <c>head</c>, as in every zoo model, else the last
    /// <c>Linear</c> in <c>named_modules()</c> order) as TorchSharp
    /// initializes a new Linear of the same shape (after <c>torch.manual_seed(seed)</c>). Returns its name.
    /// </summary>
    /// <exception cref="ArgumentException">The model has no Linear layer.</exception>
    public static string ResetHead(nn.Module model, long seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        var linears = model.named_modules().Where(m => m.module is Linear).ToList();
        var (name, module) = linears.FirstOrDefault(m => m.name == "head" || m.name.EndsWith(".head", StringComparison.Ordinal)) is { module: not null } named ? named : linears.LastOrDefault();
        if (module is not Linear head) throw new ArgumentException("--reset-head: the model has no Linear layer to use as the classifier head.");
        torch.manual_seed(seed);
        using var fresh = nn.Linear(head.in_features, head.out_features, hasBias: head.bias is not null);
        using var noGrad = no_grad();
        head.weight!.copy_(fresh.weight!);
        if (head.bias is not null) head.bias.copy_(fresh.bias!);
        return name;
    }

    /// <summary>The batch-norm layers (TorchSharp BatchNorm1d/2d/3d, including those inside the project's noisy batch norm) by name.</summary>
    public static IReadOnlyList<(string Name, BatchNorm Layer)> BatchNormLayers(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.named_modules().Where(m => m.module is BatchNorm).Select(m => (m.name, (BatchNorm)m.module)).ToList();
    }

    /// <summary>Normalization layers that are not TorchSharp batch norm (layer, group, instance, RMS, batch renorm, ...): <c>--bn-mode</c> leaves them alone.</summary>
    public static IReadOnlyList<string> OtherNormLayers(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.named_modules()
            .Where(m => m.module is not BatchNorm && m.module.GetType().Name.Contains("Norm", StringComparison.Ordinal) && !m.module.named_modules().Any(c => c.module is BatchNorm))
            .Select(m => m.name).ToList();
    }

    /// <summary>
    /// <see cref="BatchNormMode.Frozen"/>: a forward pre-hook on every batch-norm layer puts it in evaluation mode right
    /// before it runs (so a later <c>model.train()</c> cannot undo it): it normalizes with its running statistics and never
    /// updates them. Dispose the result to remove the hooks.
    /// </summary>
    public static IDisposable FreezeBatchNorm(nn.Module model)
    {
        var removers = new List<Action>();
        foreach (var (_, layer) in BatchNormLayers(model))
        {
            var remover = layer.register_forward_pre_hook((m, x) =>
            {
                if (m.training) m.eval();
                return x;
            });
            removers.Add(remover.remove);
        }

        return new Removers(removers);
    }

    /// <summary>
    /// <see cref="BatchNormMode.Recalibrate"/> (AdaBN): resets the running statistics of every batch-norm layer and
    /// recomputes them as the cumulative average (momentum null) over one pass of <paramref name="data"/> in batches of
    /// <paramref name="batchSize"/> (forward only, no gradient, in data order); the momentum is restored afterwards.
    /// Parameters are not touched. Returns the number of batches.
    /// </summary>
    public static int Recalibrate(nn.Module<Tensor, Tensor> model, ImageDataset data, int batchSize, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        var layers = BatchNormLayers(model);
        if (layers.Count == 0) return 0;
        var momenta = layers.Select(l => l.Layer.momentum).ToList();
        bool wasTraining = model.training;
        int batches = 0;
        try
        {
            using (no_grad())
            {
                foreach (var (_, l) in layers)
                {
                    l.running_mean?.zero_();
                    l.running_var?.fill_(1);
                    l.num_batches_tracked?.zero_();
                    l.momentum = null;
                }
            }

            model.train();
            using var noGrad = no_grad();
            var target = device ?? CPU;
            foreach (var (x, _) in data.Batches(Math.Min(batchSize, (int)data.Count), generator: null, shuffle: false, dropLast: true))
            {
                using var scope = NewDisposeScope();
                scope.Attach(x);
                model.call(x.to(target));
                batches++;
            }
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Layer.momentum = momenta[i];
            model.train(wasTraining);
        }

        return batches;
    }

    /// <summary>The module's parameters and buffers as TorchSharp's own format.</summary>
    public static byte[] SaveState(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) model.save(w);
        return ms.ToArray();
    }

    /// <summary>
    /// Whether <paramref name="state"/> (TorchSharp's format, as <see cref="SaveState"/> and checkpoints hold it) fits
    /// <paramref name="model"/>: null when every name, shape and dtype matches, else one line naming the first
    /// difference and how many there are. Nothing is loaded into the model.
    /// </summary>
    public static string? StateMismatch(nn.Module model, byte[] state)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(state);
        using var scope = NewDisposeScope();
        var loaded = new Dictionary<string, (long[] Shape, ScalarType Type)>();
        try
        {
            using var reader = new BinaryReader(new MemoryStream(state));
            long count = reader.Read7BitEncodedInt64();
            for (long i = 0; i < count; i++)
            {
                var name = reader.ReadString();
                var t = TensorExtensionMethods.Load(reader);
                loaded[name] = (t.shape, t.dtype);
            }
        }
        catch (Exception e) when (e is IOException or FormatException or ArgumentException or InvalidOperationException)
        {
            return $"its weights cannot be read ({e.Message.Split('\n', 2)[0].Trim()})";
        }
        var problems = new List<string>();
        var expected = model.state_dict();
        foreach (var (name, target) in expected)
        {
            if (!loaded.TryGetValue(name, out var source)) problems.Add($"'{name}' {Shape(target.shape)} is missing from it");
            else if (!source.Shape.SequenceEqual(target.shape)) problems.Add($"'{name}' has shape {Shape(source.Shape)} there but the model expects {Shape(target.shape)}");
            else if (source.Type != target.dtype) problems.Add($"'{name}' has dtype {source.Type} there but the model expects {target.dtype}");
        }
        problems.AddRange(loaded.Keys.Where(n => !expected.ContainsKey(n)).Select(n => $"'{n}' there is not in the model"));
        return problems.Count switch
        {
            0 => null,
            1 => problems[0],
            _ => $"{problems[0]} ({problems.Count - 1} more difference(s))",
        };

        static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";
    }

    /// <summary>Loads what <see cref="SaveState"/> wrote.</summary>
    public static void LoadState(nn.Module model, byte[] state)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var r = new BinaryReader(new MemoryStream(state));
        model.load(r);
    }

    /// <summary>
    /// The <see cref="Training.TrainerOptions.BeforeFirstStep"/> of a fine-tuning run: with the model's weights and buffers
    /// temporarily set to <paramref name="referenceState"/> (the model before fine-tuning; the current weights are put
    /// back afterwards), one training-mode forward pass of a batch of <paramref name="batchSize"/> source images (drawn
    /// with <paramref name="seed"/>) becomes the monitor's reference snapshot (<see cref="ActivationMonitor.CaptureReference(Action)"/>;
    /// no step is taken or written). Every later record carries <c>ReferenceShift</c> against it (subscribe a
    /// <see cref="ReferenceShiftTracker"/> through <see cref="Training.TrainerOptions.MonitorObservers"/> to collect it). A
    /// resumed run gets the reference from its checkpoint.
    /// </summary>
    public static Action<ActivationMonitor, nn.Module<Tensor, Tensor>> ReferenceCapture(
        byte[] referenceState, ImageDataset source, int batchSize, long seed)
    {
        ArgumentNullException.ThrowIfNull(referenceState);
        ArgumentNullException.ThrowIfNull(source);
        return (monitor, model) =>
        {
            var current = SaveState(model);
            var device = model.parameters().FirstOrDefault()?.device ?? CPU;
            try
            {
                LoadState(model, referenceState);
                monitor.CaptureReference(() =>
                {
                    using var scope = NewDisposeScope();
                    using var noGrad = no_grad();
                    using var generator = new Generator(unchecked((ulong)seed ^ 0x5EEDUL));
                    var idx = randperm(source.Count, generator: generator)[..Math.Min(batchSize, (int)source.Count)];
                    model.call(source.Images.index_select(0, idx).to(device));
                });
            }
            finally
            {
                LoadState(model, current);   // the forward pass may have moved batch-norm running statistics
            }
        };
    }

    private sealed class Removers(List<Action> removers) : IDisposable
    {
        public void Dispose()
        {
            foreach (var remove in removers) remove();
        }
    }
}
