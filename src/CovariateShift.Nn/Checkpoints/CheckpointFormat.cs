namespace CovariateShift.Nn.Checkpoints;

/// <summary>On-disk format of a model checkpoint, chosen from the file extension by <see cref="Checkpoint.FormatOf"/>.</summary>
public enum CheckpointFormat
{
    /// <summary><c>.bin</c>, <c>.dat</c>: TorchSharp's own format (<c>Module.save</c> / <c>Module.load</c>).</summary>
    TorchSharp,

    /// <summary><c>.pt</c>, <c>.pth</c>: a PyTorch state_dict pickle (zip), loadable with <c>torch.load</c> (via TorchSharp.PyBridge).</summary>
    PyTorch,

    /// <summary><c>.safetensors</c>: Hugging Face safetensors (via TorchSharp.PyBridge).</summary>
    SafeTensors,
}
