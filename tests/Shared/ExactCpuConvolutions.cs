using System.Runtime.CompilerServices;
using CovariateShift.Nn.Backends;

namespace CovariateShift.TestSupport;

/// <summary>
/// Tests train small convolutional models on the CPU with their own loops (as users do), not only through the trainer,
/// which guards each model itself: before any test runs, libtorch's oneDNN backend is switched off when this CPU's
/// convolutions with few channels have wrong gradients (<see cref="CpuConvolutions.EnsureExact()"/>; on the project's
/// Zen 4 machines they have: see that class), so that every test trains with exact gradients.
/// </summary>
internal static class ExactCpuConvolutions
{
#pragma warning disable CA2255 // a test assembly's set-up, not a library's
    [ModuleInitializer]
    internal static void Guard() => CpuConvolutions.EnsureExact();
#pragma warning restore CA2255
}
