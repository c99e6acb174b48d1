namespace CovariateShift.Statistics.Batched;

/// <summary>
/// The counting seam of the batched device engine: every TorchSharp call the engine makes goes through one of its
/// helpers, so tests (and the cost model in the README) can see how many operations a recorded step costs.
/// <para><see cref="Launches"/>: operations that queue device work (a kernel or a copy): each costs ~10 us of the training
/// thread on a GPU (cost model in shared/gpu/README.md). <see cref="Handles"/>: calls that only create a tensor handle
/// or a view (detach, view, unsqueeze, narrow): no device work, a dispatcher round trip each.</para>
/// </summary>
internal sealed class DeviceOpCounter
{
    /// <summary>Operations that queue device work, since construction.</summary>
    public long Launches { get; private set; }

    /// <summary>Handle/view operations without device work, since construction.</summary>
    public long Handles { get; private set; }

    /// <summary>Launches made inside forward hooks (per-layer work), since construction.</summary>
    public long HookLaunches { get; private set; }

    /// <summary>Whether the engine is inside a forward hook (so launches count as per-layer hook work).</summary>
    public bool InHook { get; set; }

    /// <summary>Counts one launching operation and passes its result through.</summary>
    public T Launch<T>(T result)
    {
        Launches++;
        if (InHook) HookLaunches++;
        return result;
    }

    /// <summary>Counts <paramref name="count"/> launching operations made by one statement and passes its result through.</summary>
    public T Launch<T>(int count, T result)
    {
        Launches += count;
        if (InHook) HookLaunches += count;
        return result;
    }

    /// <summary>Counts one handle/view operation and passes its result through.</summary>
    public T Handle<T>(T result)
    {
        Handles++;
        return result;
    }
}
