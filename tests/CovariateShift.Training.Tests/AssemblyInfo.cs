// TorchSharp's default random generator (weight initialization, dropout, randn without a generator) is global
// state shared by every thread; tests that seed it and compare results must not interleave with other tests.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
