namespace CovariateShift.Nn.Normalization;

/// <summary>
/// The normalization placed after each hidden linear/conv layer of a model. Command-line names are given by
/// <see cref="NormKinds.ToCliName"/> and parsed by <see cref="NormKinds.Parse"/>. <see cref="Norms.Create"/> builds the
/// layer. In the formulas, x̂ = (x − μ)/sqrt(σ² + ε) with μ and σ² the mean and biased variance over the stated
/// elements, and γ, β ∈ ℝ^C are per-channel (per-feature) affine parameters initialised to 1 and 0.
/// </summary>
public enum NormKind
{
    /// <summary><c>none</c>: no normalization layer at all (the layer is omitted, not replaced by an identity).</summary>
    None,

    /// <summary>
    /// <c>batch</c>: Batch Normalization (Ioffe &amp; Szegedy 2015), TorchSharp's BatchNorm1d / BatchNorm2d.
    /// Training: y = γ·x̂ + β with statistics per channel over the batch (and the positions); evaluation uses running
    /// statistics, running ← (1 − α)·running + α·batch (running variance with the unbiased batch variance).
    /// </summary>
    Batch,

    /// <summary>
    /// <c>layer</c>: Layer Normalization (Ba et al. 2016): statistics per sample over all its features (LayerNorm(F)),
    /// or over all its channels and positions (GroupNorm(1, C), per-channel γ, β). Same in training and evaluation.
    /// </summary>
    Layer,

    /// <summary>
    /// <c>group</c>: Group Normalization (Wu &amp; He 2018): statistics per sample and per group of C/G consecutive
    /// channels (and the positions); G from <see cref="NormOptions.Groups"/> or <see cref="Norms.DefaultGroups"/>.
    /// </summary>
    Group,

    /// <summary>
    /// <c>instance</c>: Instance Normalization (Ulyanov et al. 2016): statistics per sample and channel over the
    /// positions, in training and evaluation (no running statistics), with γ, β. Conv channels only.
    /// </summary>
    Instance,

    /// <summary>
    /// <c>weight-std</c>: Weight Standardization (Qiao et al. 2019) of every hidden linear/conv weight
    /// (<see cref="WsLinear"/>, <see cref="WsConv2d"/>), each followed by Group Normalization as for <c>group</c>.
    /// </summary>
    WeightStd,

    /// <summary><c>rms</c>: RMS normalization (Zhang &amp; Sennrich 2019) over the feature/channel dimension, see <see cref="RmsNorm"/>.</summary>
    Rms,

    /// <summary><c>batch-renorm</c>: Batch Renormalization (Ioffe 2017), see <see cref="BatchRenorm"/>.</summary>
    BatchRenorm,

    /// <summary><c>noisy-batch</c>: Batch Normalization followed by the time-varying noise of Santurkar et al. (2018), see <see cref="NoisyBatchNorm"/>.</summary>
    NoisyBatch,
}
