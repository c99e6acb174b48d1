namespace CovariateShift.Tests;

/// <summary>
/// Test classes that seed TorchSharp's global random generator and compare results, count live tensors, or redirect
/// the console: that state is shared by every thread, so these classes run one at a time, after the parallel ones.
/// Every other test class runs in parallel.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TorchGlobalState
{
    public const string Name = "TorchSharp global state";
}
