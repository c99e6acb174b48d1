using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Batch Renormalization (Ioffe 2017, Algorithm 1) over the channel dimension 1 of [N, C] or [N, C, H, W] input.
/// Statistics run over every dimension except 1 (the batch and, for conv input, the spatial positions).
/// <para>Training, with μ_B and σ²_B the batch mean and biased batch variance of channel c:</para>
/// <code>
///   σ_B   = sqrt(σ²_B + eps)
///   r     = stop_gradient( clip(σ_B / σ, 1/r_max, r_max) )
///   d     = stop_gradient( clip((μ_B − μ) / σ, −d_max, d_max) )
///   x̂     = (x − μ_B) / σ_B · r + d
///   y     = γ · x̂ + β
///   μ ← μ + α (μ_B − μ),   σ ← σ + α (σ_B − σ),   t ← t + 1      (r, d use μ, σ from before the update)
/// </code>
/// <para>Evaluation: y = γ · (x − μ) / σ + β.</para>
/// r_max and d_max follow <see cref="BatchRenormSchedule"/> as a function of the step counter t. With r_max = 1 and
/// d_max = 0 the training output is exactly batch normalization's. α is the momentum.
/// State: parameters <c>weight</c> (γ, init 1) and <c>bias</c> (β, init 0); buffers <c>running_mean</c> (μ, init 0),
/// <c>running_std</c> (σ, init 1; note σ already contains eps) and <c>num_batches_tracked</c> (t, int64, init 0),
/// so checkpoints carry the schedule position.
/// <para>Input: [N, C] or [N, C, H, W] (any [N, C, *]). Output: same shape.</para>
/// </summary>
public sealed class BatchRenorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;

    [ComponentName(Name = "running_mean")]
    private readonly Tensor runningMean;

    [ComponentName(Name = "running_std")]
    private readonly Tensor runningStd;

    [ComponentName(Name = "num_batches_tracked")]
    private readonly Tensor numBatchesTracked;

    /// <param name="numFeatures">C, the size of dimension 1.</param>
    /// <param name="eps">ε added to the batch variance; must be &gt; 0.</param>
    /// <param name="momentum">α in (0, 1].</param>
    /// <param name="schedule">Clipping-limit schedule; null uses the defaults of <see cref="BatchRenormSchedule"/>.</param>
    public BatchRenorm(long numFeatures, double eps = 1e-5, double momentum = 0.1, BatchRenormSchedule? schedule = null)
        : base(nameof(BatchRenorm))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(eps, 0.0);
        if (!(momentum > 0.0 && momentum <= 1.0))
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be in (0, 1].");
        }

        Schedule = schedule ?? new BatchRenormSchedule();
        Schedule.Validate();
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        weight = Owned.Parameter(ones(numFeatures));
        bias = Owned.Parameter(zeros(numFeatures));
        runningMean = Owned.Buffer(zeros(numFeatures));
        runningStd = Owned.Buffer(ones(numFeatures));
        numBatchesTracked = Owned.Buffer(tensor(0L));
        RegisterComponents();
    }

    /// <summary>C.</summary>
    public long NumFeatures { get; }

    /// <summary>ε added to the batch variance.</summary>
    public double Eps { get; }

    /// <summary>α, the running-statistics momentum.</summary>
    public double Momentum { get; }

    /// <summary>The r_max / d_max warm-up schedule.</summary>
    public BatchRenormSchedule Schedule { get; }

    /// <summary>γ, shape [C].</summary>
    public Parameter Weight => weight;

    /// <summary>β, shape [C].</summary>
    public Parameter Bias => bias;

    /// <summary>μ, shape [C].</summary>
    public Tensor RunningMean => runningMean;

    /// <summary>σ = running sqrt(σ²_B + eps), shape [C].</summary>
    public Tensor RunningStd => runningStd;

    /// <summary>t, the number of training forward passes done (int64 scalar).</summary>
    public Tensor NumBatchesTracked => numBatchesTracked;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        InputChecks.RequireChannels(input, NumFeatures, nameof(BatchRenorm));
        using var scope = NewDisposeScope();
        var channelShape = InputChecks.ChannelShape(input.dim(), NumFeatures);
        var mu = runningMean.view(channelShape);
        var sigma = runningStd.view(channelShape);
        Tensor normalized;
        if (training)
        {
            if (input.numel() / NumFeatures < 2)
            {
                throw new ArgumentException($"BatchRenorm needs more than one value per channel in training, got input {InputChecks.FormatShape(input.shape)}.", nameof(input));
            }

            var (batchVar, batchMean) = var_mean(input, InputChecks.AllButChannelDim(input.dim()), unbiased: false, keepdim: true);
            var batchStd = batchVar.add(Eps).sqrt();
            Tensor r, d;
            using (no_grad())
            {
                var (rMax, dMax) = Limits(input.dtype);
                r = batchStd.div(sigma).clamp(rMax.reciprocal(), rMax);
                d = batchMean.sub(mu).div(sigma).clamp(dMax.neg(), dMax);
                runningMean.add_(batchMean.view(NumFeatures).sub(runningMean).mul(Momentum));
                runningStd.add_(batchStd.view(NumFeatures).sub(runningStd).mul(Momentum));
                numBatchesTracked.add_(1);
            }

            normalized = input.sub(batchMean).div(batchStd).mul(r).add(d);
        }
        else
        {
            normalized = input.sub(mu).div(sigma);
        }

        var output = normalized.mul(weight.view(channelShape)).add(bias.view(channelShape));
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>r_max(t) and d_max(t) as scalar tensors on the buffers' device (no host synchronisation).</summary>
    private (Tensor RMax, Tensor DMax) Limits(ScalarType dtype)
    {
        var progress = Schedule.WarmupSteps == 0
            ? ones([], dtype, numBatchesTracked.device)
            : numBatchesTracked.to_type(dtype).div(Schedule.WarmupSteps).clamp_max(1.0);
        return (progress.mul(Schedule.RMax - 1.0).add(1.0), progress.mul(Schedule.DMax));
    }
}
