using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Backends;

/// <summary>A 2-D convolution's configuration, as <see cref="CpuConvolutions"/> checks it (the first is the layer's name
/// in the model, or "probe").</summary>
public sealed record ConvolutionLayer(string Name, long InChannels, long OutChannels, long KernelHeight, long KernelWidth,
    long Stride, long Padding, long Dilation, long Groups)
{
    /// <summary>The configuration without the name (layers that differ only in name are checked once).</summary>
    public (long, long, long, long, long, long, long, long) Key => (InChannels, OutChannels, KernelHeight, KernelWidth, Stride, Padding, Dilation, Groups);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name} ({InChannels}->{OutChannels}, {KernelHeight}x{KernelWidth}, stride {Stride}, padding {Padding}{(Dilation != 1 ? $", dilation {Dilation}" : "")}{(Groups != 1 ? $", groups {Groups}" : "")})";
}

/// <summary>What <see cref="CpuConvolutions.Check(ConvolutionLayer, int, ulong)"/> found.</summary>
/// <param name="Trials">Convolutions checked.</param>
/// <param name="Wrong">Trials whose float32 gradients (input or weight) were NaN or off the float64 reference by more
/// than <see cref="CpuConvolutions.Tolerance"/> of the reference's largest magnitude.</param>
/// <param name="LargestError">The largest such relative error over the trials (NaN when a gradient was NaN).</param>
/// <param name="OneDnn">Whether libtorch's oneDNN (mkldnn) backend was enabled during the check.</param>
public sealed record ConvolutionCheck(int Trials, int Wrong, double LargestError, bool OneDnn)
{
    /// <summary>No trial was wrong.</summary>
    public bool Exact => Wrong == 0;

    /// <summary>The checks of several layers as one.</summary>
    public static ConvolutionCheck Combine(IReadOnlyCollection<ConvolutionCheck> checks) => new(
        checks.Sum(c => c.Trials), checks.Sum(c => c.Wrong),
        checks.Any(c => double.IsNaN(c.LargestError)) ? double.NaN : checks.Select(c => c.LargestError).DefaultIfEmpty(0).Max(),
        checks.All(c => c.OneDnn) && checks.Count > 0);
}

/// <summary>What <see cref="CpuConvolutions.EnsureExact(nn.Module)"/> did: the first check of the layers and, when it
/// switched oneDNN off, the check after that.</summary>
/// <param name="First">The layers' checks as they were found.</param>
/// <param name="AfterSwitchingOff">The same layers' checks with oneDNN off, when it was switched off.</param>
/// <param name="Faulty">The layers whose gradients were wrong at first (one name per configuration).</param>
public sealed record ConvolutionGuard(ConvolutionCheck First, ConvolutionCheck? AfterSwitchingOff, IReadOnlyList<ConvolutionLayer> Faulty)
{
    /// <summary>oneDNN was switched off for this process.</summary>
    public bool SwitchedOff => AfterSwitchingOff is not null;

    /// <summary>The convolutions the process now uses passed the check.</summary>
    public bool Exact => (AfterSwitchingOff ?? First).Exact;
}

/// <summary>
/// Checks libtorch's float32 CPU convolution gradients against the float64 path, and switches libtorch's oneDNN
/// (mkldnn) backend off when they are wrong. Measured on the project's 2-core AMD EPYC (Zen 4, AVX-512) virtual machines
/// on 2026-12-04 with libtorch 2.10 (TorchSharp 0.107): oneDNN's float32 <c>conv2d</c> backward returned wrong or NaN
/// input gradients in 7-70 % of calls, depending on the shape (e.g. 81 of 200 calls for [8, 4, 12, 12] inputs and 8
/// filters of 3x3), intermittently and in no fixed element; the forward pass was right, and so was every call with
/// oneDNN off (libtorch's native kernels) or limited to SSE4.1 (<c>DNNL_MAX_CPU_ISA=SSE41</c>). Only convolutions with few
/// channels were hit: of ten shapes measured (20 calls each), 4->8 and 8->8 channels were wrong in 8-16 calls, while 1->16,
/// 1->32, 16->16, 16->32, 32->32, 32->64 and 64->64 were all right. A CNN with such a layer trained on such a machine gets
/// NaN weights within a few steps, or silently wrong ones. Switching oneDNN off costs much on the large convolutions
/// (measured on the same machines: the benchmark CNN's training step 2.5x and ResNet-20's 12x slower), so
/// <see cref="EnsureExact(nn.Module)"/> checks a model's own convolution configurations and switches only when one of
/// them is wrong. The float64 path never uses oneDNN, so it is the
/// reference here; TorchSharp has no switch for the backend, so <see cref="OneDnnEnabled"/> calls libtorch's own
/// (<c>at::globalContext().setUserEnabledMkldnn</c>).
/// </summary>
public static class CpuConvolutions
{
    /// <summary>Largest error, relative to the reference gradient's largest magnitude, that counts as right (float32
    /// sums of a few hundred terms are off by about 1e-6).</summary>
    public const double Tolerance = 1e-3;

    /// <summary>Trials per configuration: at the smallest failure rate measured on a wrong shape (11 %, 1 -> 4 channels on
    /// [32, 1, 28, 28]), 40 trials all pass by chance with probability 0.01; at <see cref="Probe"/>'s (40 %) with
    /// probability 1e-9.</summary>
    public const int DefaultTrials = 40;

    private static readonly Lock Gate = new();
    private static readonly Lazy<Switch?> SwitchOnce = new(LoadSwitch);

    private delegate IntPtr GlobalContextFn();

    private delegate void SetEnabledFn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [return: MarshalAs(UnmanagedType.U1)]
    private delegate bool GetEnabledFn(IntPtr context);

    private sealed record Switch(IntPtr Context, SetEnabledFn SetOneDnn, GetEnabledFn GetOneDnn, SetEnabledFn SetNnpack, GetEnabledFn GetNnpack);

    /// <summary>Whether libtorch's backend switches were found in the loaded libtorch (Itanium or MSVC symbol names).</summary>
    public static bool CanSwitchOneDnn => FindSwitch() is not null;

    /// <summary>libtorch's oneDNN switch for this process (<c>torch.backends.mkldnn.enabled</c> in PyTorch).</summary>
    /// <exception cref="PlatformNotSupportedException">The loaded libtorch does not export the switch.</exception>
    public static bool OneDnnEnabled
    {
        get => Found().GetOneDnn(Found().Context);
        set => Found().SetOneDnn(Found().Context, value);
    }

    /// <summary>libtorch's NNPACK switch for this process (<c>torch.backends.nnpack.enabled</c> in PyTorch). A convolution
    /// that oneDNN does not take (float64, or any with oneDNN off) is offered to NNPACK first, and where NNPACK cannot run
    /// (as on the Zen 4 machines) libtorch 2.10 writes "Could not initialize NNPACK! Reason: Unsupported hardware." to the
    /// standard error each time, unless this switch is off.</summary>
    /// <exception cref="PlatformNotSupportedException">The loaded libtorch does not export the switch.</exception>
    public static bool NnpackEnabled
    {
        get => Found().GetNnpack(Found().Context);
        set => Found().SetNnpack(Found().Context, value);
    }

    private static Switch Found() => FindSwitch() ?? throw Unsupported();

    private static PlatformNotSupportedException Unsupported() =>
        new("The loaded libtorch does not export at::globalContext() and Context::setUserEnabledMkldnn; oneDNN cannot be switched from here.");

    private static Switch? FindSwitch() => SwitchOnce.Value;

    /// <summary>Looks the switches up in the loaded libtorch (once: <see cref="SwitchOnce"/>).</summary>
    private static Switch? LoadSwitch()
    {
        using (torch.zeros(1)) { }   // TorchSharp loads libtorch on first use
        foreach (var name in new[] { "libtorch_cpu", "torch_cpu" })
        {
            if (!NativeLibrary.TryLoad(name, typeof(torch).Assembly, null, out var library)) continue;
            // Itanium (Linux, macOS) and MSVC (Windows x64) names of the functions.
            if (Export(library, "_ZN2at13globalContextEv", "?globalContext@at@@YAAEAVContext@1@XZ") is not { } context
                || Export(library, "_ZN2at7Context20setUserEnabledMkldnnEb", "?setUserEnabledMkldnn@Context@at@@QEAAX_N@Z") is not { } setOneDnn
                || Export(library, "_ZNK2at7Context17userEnabledMkldnnEv", "?userEnabledMkldnn@Context@at@@QEBA_NXZ") is not { } getOneDnn
                || Export(library, "_ZN2at7Context20setUserEnabledNNPACKEb", "?setUserEnabledNNPACK@Context@at@@QEAAX_N@Z") is not { } setNnpack
                || Export(library, "_ZNK2at7Context17userEnabledNNPACKEv", "?userEnabledNNPACK@Context@at@@QEBA_NXZ") is not { } getNnpack)
            {
                continue;
            }
            var contextPointer = Marshal.GetDelegateForFunctionPointer<GlobalContextFn>(context)();
            return new Switch(contextPointer,
                Marshal.GetDelegateForFunctionPointer<SetEnabledFn>(setOneDnn), Marshal.GetDelegateForFunctionPointer<GetEnabledFn>(getOneDnn),
                Marshal.GetDelegateForFunctionPointer<SetEnabledFn>(setNnpack), Marshal.GetDelegateForFunctionPointer<GetEnabledFn>(getNnpack));
        }
        return null;
    }

    private static IntPtr? Export(IntPtr library, params string[] names)
    {
        foreach (var name in names)
        {
            if (NativeLibrary.TryGetExport(library, name, out var address)) return address;
        }
        return null;
    }

    /// <summary>The configuration of <see cref="Check(int, ulong)"/>: 4 -> 8 channels, 3x3, the smallest of the shapes
    /// measured wrong (in 81 of 200 calls on [8, 4, 12, 12] inputs).</summary>
    public static ConvolutionLayer Probe { get; } = new("probe", 4, 8, 3, 3, 1, 0, 1, 1);

    /// <summary>Checks <see cref="Probe"/> on [8, 4, 12, 12] inputs: whether this CPU's convolutions with few channels are right.</summary>
    public static ConvolutionCheck Check(int trials = DefaultTrials, ulong seed = 0) => Check(Probe, trials, seed, batch: 8, size: 12);

    /// <summary>
    /// Runs <paramref name="trials"/> float32 passes of <paramref name="layer"/>'s convolution on the CPU and compares
    /// their input and weight gradients with the float64 computation of the same values: random values from a generator
    /// of its own (the global generator is not touched), a batch of 2 inputs 4 pixels larger than the kernel's extent.
    /// Small inputs keep the float64 reference cheap for wide layers, and show the fault as well as large ones do
    /// (measured for 4 -> 8 channels: wrong in 16-25 of 100 calls on [2, 4, 7, 7] and [8, 4, 7, 7], 36-44 on [2, 4, 28, 28]
    /// and [8, 4, 12, 12]).
    /// </summary>
    public static ConvolutionCheck Check(ConvolutionLayer layer, int trials = DefaultTrials, ulong seed = 0) =>
        Check(layer, trials, seed, batch: 2, size: 0);

    /// <summary>As <see cref="Check(ConvolutionLayer, int, ulong)"/> on inputs of <paramref name="batch"/> x
    /// <paramref name="size"/> x <paramref name="size"/> (0: 4 pixels larger than the kernel's extent).</summary>
    public static ConvolutionCheck Check(ConvolutionLayer layer, int trials, ulong seed, int batch, long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(trials);
        if (layer.Groups < 1 || layer.InChannels % layer.Groups != 0 || layer.OutChannels % layer.Groups != 0)
            throw new ArgumentException($"{layer}: the channels must be multiples of the groups.", nameof(layer));
        bool oneDnn = CanSwitchOneDnn && OneDnnEnabled;
        // NNPACK takes no float64 convolution, but offering the reference's to it writes a line per call where it cannot run.
        bool nnpack = CanSwitchOneDnn && NnpackEnabled;
        if (nnpack) NnpackEnabled = false;
        try
        {
            return CheckWith(layer, trials, seed, oneDnn, batch, size);
        }
        finally
        {
            if (nnpack) NnpackEnabled = true;
        }
    }

    private static ConvolutionCheck CheckWith(ConvolutionLayer layer, int trials, ulong seed, bool oneDnn, int batch, long size)
    {
        using var scope = NewDisposeScope();
        using var grad = torch.enable_grad();
        using var generator = new Generator(seed);
        long height = size > 0 ? size : layer.Dilation * (layer.KernelHeight - 1) + 1 + 4;
        long width = size > 0 ? size : layer.Dilation * (layer.KernelWidth - 1) + 1 + 4;
        long[] stride = [layer.Stride, layer.Stride], padding = [layer.Padding, layer.Padding], dilation = [layer.Dilation, layer.Dilation];
        double scale = 1 / Math.Sqrt(layer.InChannels / layer.Groups * layer.KernelHeight * layer.KernelWidth);
        int wrong = 0;
        double largest = 0;
        for (int t = 0; t < trials; t++)
        {
            using var trial = NewDisposeScope();
            var x = randn([batch, layer.InChannels, height, width], generator: generator).requires_grad_(true);
            var w = (randn([layer.OutChannels, layer.InChannels / layer.Groups, layer.KernelHeight, layer.KernelWidth], generator: generator) * scale).requires_grad_(true);
            var y = nn.functional.conv2d(x, w, strides: stride, padding: padding, dilation: dilation, groups: layer.Groups);
            var upstream = randn(y.shape, generator: generator);
            (y * upstream).sum().backward();

            var x64 = x.detach().to(ScalarType.Float64).requires_grad_(true);
            var w64 = w.detach().to(ScalarType.Float64).requires_grad_(true);
            var y64 = nn.functional.conv2d(x64, w64, strides: stride, padding: padding, dilation: dilation, groups: layer.Groups);
            (y64 * upstream.to(ScalarType.Float64)).sum().backward();

            double error = Math.Max(RelativeError(x.grad!, x64.grad!), RelativeError(w.grad!, w64.grad!));
            if (!(error <= Tolerance)) wrong++;
            largest = double.IsNaN(error) || double.IsNaN(largest) ? double.NaN : Math.Max(largest, error);
        }
        return new ConvolutionCheck(trials, wrong, largest, oneDnn);
    }

    private static double RelativeError(Tensor actual, Tensor reference)
    {
        double scale = reference.abs().max().item<double>();
        double error = (actual.to(ScalarType.Float64) - reference).abs().max().item<double>();
        return error / Math.Max(scale, double.Epsilon);
    }

    /// <summary>
    /// The 2-D convolutions of <paramref name="model"/> (TorchSharp's <c>Conv2d</c> and <see cref="WsConv2d"/>), one per
    /// configuration, in the model's order. Convolutions with 'same' padding are taken with the kernel's half as padding;
    /// other convolution modules (1-D, 3-D, transposed) are not listed.
    /// </summary>
    public static IReadOnlyList<ConvolutionLayer> ConvolutionsOf(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var layers = new List<ConvolutionLayer>();
        var seen = new HashSet<(long, long, long, long, long, long, long, long)>();
        foreach (var (name, module) in model.named_modules())
        {
            ConvolutionLayer? layer = module switch
            {
                TorchSharp.Modules.Conv2d c when c.stride.Length == 2 && c.stride[0] == c.stride[1] && c.dilation[0] == c.dilation[1] =>
                    new ConvolutionLayer(name, c.in_channels, c.out_channels, c.kernel_size[0], c.kernel_size[1], c.stride[0],
                        c.padding is { Length: > 0 } p ? p[0] : c.kernel_size[0] / 2, c.dilation[0], c.groups),
                WsConv2d ws => new ConvolutionLayer(name, ws.InChannels, ws.OutChannels, ws.KernelSize, ws.KernelSize, ws.Stride, ws.Padding, 1, 1),
                _ => null,
            };
            if (layer is not null && seen.Add(layer.Key)) layers.Add(layer);
        }
        return layers;
    }

    /// <summary>Checks already made in this process, by configuration and oneDNN setting.</summary>
    private static readonly ConcurrentDictionary<((long, long, long, long, long, long, long, long), bool), ConvolutionCheck> Checked = new();

    private static ConvolutionCheck CheckOnce(ConvolutionLayer layer) =>
        Checked.GetOrAdd((layer.Key, CanSwitchOneDnn && OneDnnEnabled), _ => Check(layer, TrialsFor(layer)));

    /// <summary>
    /// Trials of a model's layer in <see cref="EnsureExact(nn.Module)"/>: <see cref="DefaultTrials"/> up to the work per
    /// output value of a 64 -> 64 3x3 convolution, fewer in proportion beyond (at least 8), since the float64 reference
    /// of wide layers is slow (measured: 44 ms per trial for 128 -> 256, 2.5 ms for 64 -> 64) and every wrong shape
    /// measured had at most 8 channels.
    /// </summary>
    public static int TrialsFor(ConvolutionLayer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        double work = (double)layer.InChannels / layer.Groups * layer.OutChannels * layer.KernelHeight * layer.KernelWidth;
        double reference = 64.0 * 64 * 9;
        return work <= reference ? DefaultTrials : Math.Max(8, (int)Math.Round(DefaultTrials * reference / work));
    }

    /// <summary>
    /// Checks every 2-D convolution configuration of <paramref name="model"/> (<see cref="ConvolutionsOf"/>, each once per
    /// process, with <see cref="TrialsFor"/> trials) and, when one is wrong with oneDNN enabled, switches oneDNN off for the process (and NNPACK, so that
    /// libtorch's native kernels run) and checks them again. Nothing is switched when all are right, when oneDNN is
    /// already off, or when the switch cannot be found (then <see cref="ConvolutionGuard.Exact"/> says whether the
    /// convolutions can be trusted). Measured on the 2-core machine: 0.44 s for ResNet-20's 6 configurations, 0.64 s for
    /// the plain CNN's 4.
    /// </summary>
    public static ConvolutionGuard EnsureExact(nn.Module model) => EnsureExact(ConvolutionsOf(model));

    /// <summary>As <see cref="EnsureExact(nn.Module)"/>, for <see cref="Probe"/>: switches oneDNN off when this CPU's
    /// convolutions with few channels are wrong, whatever the model.</summary>
    public static ConvolutionGuard EnsureExact() => EnsureExact([Probe]);

    private static ConvolutionGuard EnsureExact(IReadOnlyList<ConvolutionLayer> layers)
    {
        var first = layers.Select(l => (Layer: l, Check: CheckOnce(l))).ToList();
        var faulty = first.Where(c => !c.Check.Exact).Select(c => c.Layer).ToList();
        ConvolutionCheck? after = null;
        if (faulty.Count > 0 && first.Any(c => c.Check.OneDnn))
        {
            lock (Gate)
            {
                OneDnnEnabled = false;
                NnpackEnabled = false;
            }
            after = ConvolutionCheck.Combine(layers.Select(CheckOnce).ToList());
        }
        return new ConvolutionGuard(ConvolutionCheck.Combine(first.Select(c => c.Check).ToList()), after, faulty);
    }
}
