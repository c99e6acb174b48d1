#!/usr/bin/env bash
# The monitor's fixed cost per layer, where the layers are small: an MLP of 8 hidden ReLU layers (17 hooked layers) of
# WIDTH units on batches of BATCH random inputs, trained with SGD, alternating rounds without and with a monitor
# (RecordEvery 1, activations only) on the same model. Per training step, median over the rounds: the plain step, the
# monitored step, the monitor's own time (ActivationMonitor.MonitorTime, its self-timing) and what is left,
# monitored - plain - own time, per hooked layer: the cost outside the monitor's clock (TorchSharp's dispatch of the
# hooks and wrappers, the caches). One libtorch thread, so that the step itself is as steady as the machine allows.
#
#   scripts/small-layer-bench.sh                # width 16, batch 1, 15 rounds of 2000 steps
#   scripts/small-layer-bench.sh 64 8 21 1000   # width 64, batch 8 (512-value outputs), 21 rounds of 1000 steps
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
width="${1:-16}"
batch="${2:-1}"
rounds="${3:-15}"
steps="${4:-2000}"
for v in "$width" "$batch" "$rounds" "$steps"; do
  case "$v" in ''|*[!0-9]*|0) echo "small-layer-bench: arguments are positive integers (width batch rounds steps), got '$v'" >&2; exit 2 ;; esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
COVSHIFT_SKIP_DATA=1 COVSHIFT_QUIET=1 COVSHIFT_SKIP_BROWSER=1 "$root/scripts/bootstrap.sh"
# shellcheck source=scripts/torch-harness.sh
source "$root/scripts/torch-harness.sh"
work="$(harness_project "$root" small-layer-bench SmallLayerBench)"
cat > "$work/Program.cs" <<'EOF'
using System.Diagnostics;
using System.Globalization;
using CovariateShift;
using CovariateShift.Nn.Models;
using static TorchSharp.torch;

var a = args.Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
int width = a[0], batch = a[1], rounds = a[2], steps = a[3];
set_num_threads(1);
manual_seed(0);
var net = new Mlp(width, Enumerable.Repeat(width, 8).ToArray(), 10, new LayerSettings());
net.train();
var optimizer = optim.SGD(net.parameters(), 0.01);
var x = randn(batch, width);
var y = randint(0, 10, [batch]);

// One block of training steps; µs per step, and the monitor's own µs per step.
(double Step, double Own) Block(ActivationMonitor? monitor)
{
    var own = monitor?.MonitorTime ?? TimeSpan.Zero;
    long start = Stopwatch.GetTimestamp();
    for (int i = 0; i < steps; i++)
    {
        using var scope = NewDisposeScope();
        optimizer.zero_grad();
        nn.functional.cross_entropy(net.call(x), y).backward();
        optimizer.step();
        monitor?.Step();
    }
    double us = Stopwatch.GetElapsedTime(start).TotalMicroseconds / steps;
    return (us, ((monitor?.MonitorTime ?? TimeSpan.Zero) - own).TotalMicroseconds / steps);
}

int layers;
using (var probe = ActivationMonitor.Attach(net, new MonitorOptions())) layers = probe.Layers.Count;
Block(null);                       // warm-up of both loops (JIT, allocator)
var plain = new List<double>();
var monitored = new List<double>();
var own = new List<double>();
for (int r = 0; r < rounds; r++)
{
    // Alternating order, so that a slow stretch of the machine hits both alike.
    using var m = ActivationMonitor.Attach(net, new MonitorOptions());
    if (r == 0) Block(m);
    if (r % 2 == 0) plain.Add(Block(null).Step);
    var (step, self) = Block(m);
    monitored.Add(step);
    own.Add(self);
    m.Dispose();   // the model runs as without a monitor again
    if (r % 2 == 1) plain.Add(Block(null).Step);
    Console.Error.Write($"\rround {r + 1}/{rounds}");
}
Console.Error.WriteLine();
static double Median(List<double> v)
{
    var s = v.Order().ToArray();
    return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
}
double p = Median(plain), q = Median(monitored), o = Median(own);
var inv = CultureInfo.InvariantCulture;
Console.WriteLine(string.Create(inv, $"width {width}, batch {batch} ({width * batch} values per hidden output), {layers} hooked layers, {rounds} rounds x {steps} steps, one libtorch thread"));
Console.WriteLine(string.Create(inv, $"plain step {p:F1} us, monitored {q:F1} us (ratio {q / p:F3}), monitor's own time {o:F1} us per step = {o / layers:F2} us per layer"));
Console.WriteLine(string.Create(inv, $"outside the monitor's clock: {q - p - o:F1} us per step = {(q - p - o) / layers:F2} us per layer"));
EOF
harness_run "$work" SmallLayerBench "$width" "$batch" "$rounds" "$steps"
