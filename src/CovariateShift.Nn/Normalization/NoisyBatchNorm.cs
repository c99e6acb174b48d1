using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// "Noisy" Batch Normalization (Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?", Sec. 2.1):
/// batch normalization followed, in training only, by time-varying noise that deliberately injects distributional
/// instability (covariate shift) into the layer's output.
/// <code>
///   a = BN(x) = (x − μ_B) / sqrt(σ²_B + eps) · γ + β          (per channel c, statistics over all dims but 1)
///   per step and layer:   μ ~ U(−b, b),   σ ~ U(s_lo, s_hi)
///   per element of a:     m ~ U(μ − j, μ + j),   s ~ N(σ, τ²)
///   y = s ⊙ a + m
/// </code>
/// with b, s_lo, s_hi, j, τ from <see cref="NoisyBatchNormOptions"/> (paper: 0.5, 1, 1.25, 0.1, 0.1). "Per element"
/// means every entry of the activation tensor (each sample, channel and position), i.i.d. given (μ, σ).
/// In evaluation the noise is off and y = (x − running_mean) / sqrt(running_var + eps) · γ + β.
/// Running statistics are updated as in PyTorch's BatchNorm (running_var uses the unbiased batch variance), and the
/// state dict has BatchNorm's names (<c>weight</c>, <c>bias</c>, <c>running_mean</c>, <c>running_var</c>,
/// <c>num_batches_tracked</c>). Noise is drawn from TorchSharp's global generator (seed it with torch.manual_seed).
/// <para>Input: [N, C] or [N, C, H, W] (any [N, C, *]). Output: same shape.</para>
/// </summary>
public sealed class NoisyBatchNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;

    [ComponentName(Name = "running_mean")]
    private readonly Tensor runningMean;

    [ComponentName(Name = "running_var")]
    private readonly Tensor runningVar;

    [ComponentName(Name = "num_batches_tracked")]
    private readonly Tensor numBatchesTracked;

    /// <param name="numFeatures">C, the size of dimension 1.</param>
    /// <param name="eps">ε added to the variance; must be &gt; 0.</param>
    /// <param name="momentum">Running-statistics momentum in (0, 1].</param>
    /// <param name="noise">Noise distribution; null uses the paper's values.</param>
    public NoisyBatchNorm(long numFeatures, double eps = 1e-5, double momentum = 0.1, NoisyBatchNormOptions? noise = null)
        : base(nameof(NoisyBatchNorm))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(eps, 0.0);
        if (!(momentum > 0.0 && momentum <= 1.0))
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be in (0, 1].");
        }

        Noise = noise ?? new NoisyBatchNormOptions();
        Noise.Validate();
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        weight = Owned.Parameter(ones(numFeatures));
        bias = Owned.Parameter(zeros(numFeatures));
        runningMean = Owned.Buffer(zeros(numFeatures));
        runningVar = Owned.Buffer(ones(numFeatures));
        numBatchesTracked = Owned.Buffer(tensor(0L));
        RegisterComponents();
    }

    /// <summary>C.</summary>
    public long NumFeatures { get; }

    /// <summary>ε added to the variance.</summary>
    public double Eps { get; }

    /// <summary>Running-statistics momentum.</summary>
    public double Momentum { get; }

    /// <summary>The noise distribution.</summary>
    public NoisyBatchNormOptions Noise { get; }

    /// <summary>γ, shape [C].</summary>
    public Parameter Weight => weight;

    /// <summary>β, shape [C].</summary>
    public Parameter Bias => bias;

    /// <summary>Running mean, shape [C].</summary>
    public Tensor RunningMean => runningMean;

    /// <summary>Running (unbiased) variance, shape [C].</summary>
    public Tensor RunningVar => runningVar;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        InputChecks.RequireChannels(input, NumFeatures, nameof(NoisyBatchNorm));
        if (!training)
        {
            return F.batch_norm(input, runningMean, runningVar, weight, bias, training: false, Momentum, Eps);
        }

        if (input.numel() / NumFeatures < 2)
        {
            throw new ArgumentException($"NoisyBatchNorm needs more than one value per channel in training, got input {InputChecks.FormatShape(input.shape)}.", nameof(input));
        }

        using var scope = NewDisposeScope();
        var normalized = F.batch_norm(input, runningMean, runningVar, weight, bias, training: true, Momentum, Eps);
        using (no_grad())
        {
            numBatchesTracked.add_(1);
        }

        var stepMean = empty([], normalized.dtype, normalized.device).uniform_(-Noise.MeanBound, Noise.MeanBound);
        var stepScale = empty([], normalized.dtype, normalized.device).uniform_(Noise.ScaleLow, Noise.ScaleHigh);
        var shift = rand_like(normalized).mul(2.0 * Noise.MeanJitter).add(stepMean.sub(Noise.MeanJitter));
        var scale = randn_like(normalized).mul(Noise.ScaleStd).add(stepScale);
        var output = normalized.mul(scale).add(shift);
        return output.MoveToOuterDisposeScope();
    }
}
