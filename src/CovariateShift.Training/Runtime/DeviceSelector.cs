using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Runtime;

/// <summary>Turns the CLI's <c>--device auto|cpu|cuda[:N]</c> into a TorchSharp device.</summary>
public static class DeviceSelector
{
    /// <summary>auto = CUDA when <c>torch.cuda.is_available()</c>, else CPU.</summary>
    /// <exception cref="ArgumentException">Unknown name, or CUDA asked for where there is none.</exception>
    public static Device Resolve(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var n = name.Trim().ToLowerInvariant();
        if (n == "auto") return cuda.is_available() ? CUDA : CPU;
        if (n == "cpu") return CPU;
        if (n == "cuda" || n.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
            {
                throw new ArgumentException(
                    $"--device {name}: CUDA is not available here (torch.cuda.is_available() is false). This build's TorchSharp backend " +
                    "is the one chosen by -p:TorchBackend (cpu by default; build with -p:TorchBackend=cuda on a machine with an NVIDIA GPU), or use --device cpu.");
            }

            return new Device(n);
        }
        throw new ArgumentException($"--device '{name}' is not a device; expected auto, cpu, cuda or cuda:N.");
    }
}
