// Test classes that touch TorchSharp's global state (the default random generator, live-tensor counts, the console)
// are in the TorchGlobalState collection, which runs alone; everything else runs in parallel.
