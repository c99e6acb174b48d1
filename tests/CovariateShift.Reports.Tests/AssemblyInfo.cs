// TorchSharp's default random generator is global state; tests that seed it must not interleave.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
