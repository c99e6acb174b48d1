#!/usr/bin/env bash
# Micro-benchmark of the managed CPU reduction pass (CpuKernel.Summarize) over fixed float32 buffers, in ns per value:
# the kernel of a git revision ("before") against the kernel of the working tree ("after"), both compiled into one
# process and timed in alternating rounds, so the machine's load hits both alike. Times are the calling thread's CPU time
# (CLOCK_THREAD_CPUTIME_ID), which leaves out the time the thread waited for a core on a loaded machine; the median
# over the rounds is reported. No TorchSharp involved.
#
#   scripts/kernel-bench.sh main            # main's kernel vs this checkout's
#   scripts/kernel-bench.sh main 31         # 31 rounds per layout (default 21)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/torch-harness.sh"
rev="${1:?usage: scripts/kernel-bench.sh <git revision of the baseline kernel> [rounds]}"
rounds="${2:-21}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The kernel and the types it builds (the LayerSummary API, since the commit that removed ActivationSummary), from
# src/CovariateShift/. Both namespaces become one per side.
files=(Statistics/CpuKernel.cs Statistics/SaturationBounds.cs Statistics/Moments.cs Capture/LayerSummary.cs)
rename() { sed -e "s/^namespace CovariateShift\.\(Statistics\|Capture\);/namespace $1;/" -e '/^using CovariateShift\./d'; }
for f in "${files[@]}"; do
  b="$(basename "$f")"
  git -C "$root" cat-file -e "$rev:src/CovariateShift/$f" 2>/dev/null \
    || { echo "revision $rev has no src/CovariateShift/$f: its kernel predates the LayerSummary API this benchmark calls; give a later revision" >&2; exit 2; }
  git -C "$root" show "$rev:src/CovariateShift/$f" | rename KernelBefore > "$work/Before$b"
  [ -f "$root/src/CovariateShift/$f" ] || { echo "missing src/CovariateShift/$f in the working tree" >&2; exit 2; }
  rename KernelAfter < "$root/src/CovariateShift/$f" > "$work/After$b"
done
# Types the kernel and the summary refer to in later revisions (the sample pool, the sample positions), on each side
# that has them.
for f in Capture/SamplePool.cs Statistics/StratifiedSample.cs; do
  b="$(basename "$f")"
  if git -C "$root" cat-file -e "$rev:src/CovariateShift/$f" 2>/dev/null; then
    git -C "$root" show "$rev:src/CovariateShift/$f" | rename KernelBefore > "$work/Before$b"
  fi
  if [ -f "$root/src/CovariateShift/$f" ]; then rename KernelAfter < "$root/src/CovariateShift/$f" > "$work/After$b"; fi
done
# Helper files next to the kernel in the working tree (new files of this change) go to the "after" side.
for f in "$root"/src/CovariateShift/Statistics/CpuKernel*.cs; do
  b="$(basename "$f")"
  [ "$b" = CpuKernel.cs ] && continue
  rename KernelAfter < "$f" > "$work/After$b"
done
standalone_project "$work" KernelBench '<NoWarn>$(NoWarn);CS1574;CS1584;CS1658;CS8981;CS0649</NoWarn>'
cat > "$work/Program.cs" <<'EOF'
using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;

int rounds = int.Parse(args[0], CultureInfo.InvariantCulture);
// The hooked layers of `covshift bench`'s models (batch 128): how many layers of each shape per recorded step of the
// cnn (4 conv stages 32/64/128/256 with batch norm, ReLU, max-pooling, global average pool, linear head) and of the
// mlp (8 hidden layers of 256 with ReLU, linear head). Data: ReLU-like (about half exact zeros), fixed seed.
(string Name, int[] Shape, int Cnn, int Mlp)[] layouts =
[
    ("[128,256]", [128, 256], 0, 16),
    ("[128,10]", [128, 10], 1, 1),
    ("[128,32,28,28]", [128, 32, 28, 28], 3, 0),
    ("[128,32,14,14]", [128, 32, 14, 14], 1, 0),
    ("[128,64,14,14]", [128, 64, 14, 14], 3, 0),
    ("[128,64,7,7]", [128, 64, 7, 7], 1, 0),
    ("[128,128,7,7]", [128, 128, 7, 7], 3, 0),
    ("[128,128,3,3]", [128, 128, 3, 3], 1, 0),
    ("[128,256,3,3]", [128, 256, 3, 3], 3, 0),
    ("[128,256,1,1]", [128, 256, 1, 1], 1, 0),
];
double cnnBefore = 0, cnnAfter = 0, mlpBefore = 0, mlpAfter = 0;
Console.WriteLine($"Vector<float>.Count = {Vector<float>.Count}, rounds = {rounds}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Console.WriteLine("CPU time of the benchmark thread per value, median over rounds (wall-clock medians in brackets)");
Console.WriteLine($"{"layout",-16} {"values",9} {"before ns/value",22} {"after ns/value",22} {"after/before",13}");
var rng = new Random(7);
foreach (var (name, shape, cnnLayers, mlpLayers) in layouts)
{
    int n = shape.Aggregate(1, (a, b) => a * b);
    var data = new float[n];
    for (int i = 0; i < n; i++)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        data[i] = (float)Math.Max(0, 0.3 + Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
    int units = shape[1];
    int block = shape.Length >= 3 ? shape[2..].Aggregate(1, (a, b) => a * b) : 0;
    bool channels = shape.Length == 4;
    KernelBefore.LayerSummary before = KernelBefore.LayerSummary.Empty;
    KernelAfter.LayerSummary after = KernelAfter.LayerSummary.Empty;
    void RunBefore() => before = KernelBefore.CpuKernel.Summarize(data, units, block, channels, 1e-6f, null);
    void RunAfter() => after = KernelAfter.CpuKernel.Summarize(data, units, block, channels, 1e-6f, null);
    // Warm up past tiering, then size a timed block at ~20 ms.
    for (int i = 0; i < 30; i++) { RunBefore(); RunAfter(); }
    var sw = Stopwatch.StartNew();
    RunAfter();
    int reps = Math.Max(1, (int)(0.02 / Math.Max(1e-7, sw.Elapsed.TotalSeconds)));
    var tb = new List<double>();
    var ta = new List<double>();
    var wb = new List<double>();
    var wa = new List<double>();
    for (int r = 0; r < rounds; r++)
    {
        for (int k = 0; k < 2; k++)
        {
            bool afterFirst = (r + k) % 2 == 0;
            long cpu = ThreadCpu.Nanoseconds();
            sw.Restart();
            for (int i = 0; i < reps; i++) { if (afterFirst) RunAfter(); else RunBefore(); }
            (afterFirst ? wa : wb).Add(sw.Elapsed.TotalNanoseconds / reps / n);
            (afterFirst ? ta : tb).Add((double)(ThreadCpu.Nanoseconds() - cpu) / reps / n);
        }
    }
    double mb = Median(tb), ma = Median(ta);
    cnnBefore += cnnLayers * mb * n / 1e6;
    cnnAfter += cnnLayers * ma * n / 1e6;
    mlpBefore += mlpLayers * mb * n / 1e6;
    mlpAfter += mlpLayers * ma * n / 1e6;
    // The two kernels must agree (mean and variance to float-chunk rounding, counters exactly).
    string agree = Math.Abs(before.Mean - after.Mean) <= 1e-5 * Math.Max(1, Math.Abs(before.Mean))
        && Math.Abs(before.Variance - after.Variance) <= 1e-5 * Math.Max(1, before.Variance)
        && before.FiniteCount == after.FiniteCount && before.NearZero == after.NearZero && before.DeadUnits == after.DeadUnits
        && before.Min == after.Min && before.Max == after.Max ? "" : "  RESULTS DIFFER";
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{name,-16} {n,9} {mb,9:F3} [{Median(wb),9:F3}] {ma,9:F3} [{Median(wa),9:F3}] {ma / mb,13:F3}{agree}"));
}

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"per recorded step (sum over the hooked layers): cnn {cnnBefore:F2} ms before, {cnnAfter:F2} ms after ({cnnAfter / cnnBefore:F3}); mlp {mlpBefore:F3} ms before, {mlpAfter:F3} ms after ({mlpAfter / mlpBefore:F3})"));

static double Median(List<double> v)
{
    var s = v.OrderBy(x => x).ToArray();
    return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
}

static class ThreadCpu
{
    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec { public long Seconds; public long Nanos; }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    public static long Nanoseconds()
    {
        if (ClockGetTime(3, out var t) != 0) throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        return t.Seconds * 1_000_000_000 + t.Nanos;
    }
}
EOF
dotnet build "$work/KernelBench.csproj" -c Release -o "$work/out" -v quiet -nologo >&2
OMP_NUM_THREADS=1 dotnet "$work/out/KernelBench.dll" "$rounds"
