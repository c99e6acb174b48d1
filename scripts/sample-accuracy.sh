#!/usr/bin/env bash
# What the sample size costs in accuracy: trains the bench's MLP (`covshift bench`'s "mlp": 8 hidden layers of 256
# ReLU units, SGD 0.01 with momentum 0.9, Fashion-MNIST batches of 128) with several monitors chained on the same
# model, one per sample size, next to one whose sample is every element (sample size 65,536 > the 32,768 values of
# the largest output), and compares their records step by step: the percentiles' error in units of the layer's std,
# and the Jensen-Shannon divergence and W1 between consecutive records against the same metrics from every element.
# The moments, extremes and histogram ranges are exact in every monitor, so only the sample differs.
#
#   scripts/sample-accuracy.sh                      # 1000 steps, sample sizes 512 1024 2048 4096
#   scripts/sample-accuracy.sh 300 1024 2048        # 300 steps, two sizes
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
steps="${1:-1000}"
shift || true
sizes="${*:-512 1024 2048 4096}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
COVSHIFT_QUIET=1 COVSHIFT_SKIP_BROWSER=1 "$root/scripts/bootstrap.sh"
# shellcheck source=scripts/torch-harness.sh
source "$root/scripts/torch-harness.sh"
work="$(harness_project "$root" sample-accuracy SampleAccuracy)"
cat > "$work/Program.cs" <<'EOF'
using System.Globalization;
using CovariateShift;
using CovariateShift.Nn.Models;
using CovariateShift.Training.Benchmarks;
using CovariateShift.Training.Data;
using static TorchSharp.torch;

int steps = int.Parse(args[0], CultureInfo.InvariantCulture);
int[] sizes = [.. args.Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture))];
const int Every = 1 << 16;   // more than any output of the model has: every element is the sample
using var data = MnistFormat.LoadFashionMnist(train: true);
manual_seed(0);
var net = ModelZoo.Create(OverheadBenchmark.SpecFor("mlp"));
net.train();
var optimizer = optim.SGD(net.parameters(), 0.01, momentum: 0.9);
using var exact = ActivationMonitor.Attach(net, new MonitorOptions { SampleSize = Every });
var monitors = sizes.Select(s => ActivationMonitor.Attach(net, new MonitorOptions { SampleSize = s })).ToArray();
var percentileError = sizes.Select(_ => new List<double>()).ToArray();
var js = sizes.Select(_ => new List<double>()).ToArray();
var w1Error = sizes.Select(_ => new List<double>()).ToArray();
var exactJs = new List<double>();
using var generator = new Generator(1);
int step = 0;
while (step < steps)
{
    foreach (var (x, y) in data.Batches(128, generator))
    {
        if (step >= steps) break;
        using var scope = NewDisposeScope();
        optimizer.zero_grad();
        var loss = nn.functional.cross_entropy(net.call(x), y);
        loss.backward();
        optimizer.step();
        var reference = exact.Step(loss)!;
        var records = monitors.Select(m => m.Step(loss)!).ToArray();
        step++;
        if (step <= 10) continue;   // the first records: ranges being fixed, no shift yet
        for (int l = 0; l < reference.Layers.Count; l++)
        {
            if (reference.Layers[l].Statistics is not { } e || e.Std <= 0 || reference.Layers[l].Shift is not { } es) continue;
            exactJs.Add(es.JensenShannon);
            for (int k = 0; k < sizes.Length; k++)
            {
                var s = records[k].Layers[l];
                var st = s.Statistics!;
                foreach (var (a, b) in new[] { (st.P15, e.P15), (st.P50, e.P50), (st.P85, e.P85) }) percentileError[k].Add((a - b) / e.Std);
                js[k].Add(s.Shift!.JensenShannon);
                w1Error[k].Add((s.Shift.Wasserstein1 - es.Wasserstein1) / e.Std);
            }
        }
    }
}
foreach (var m in monitors) m.Dispose();
static double Rms(List<double> v) => Math.Sqrt(v.Average(d => d * d));
static double Median(List<double> v) { var s = v.OrderBy(d => d).ToArray(); return s[s.Length / 2]; }
var inv = CultureInfo.InvariantCulture;
Console.WriteLine(string.Create(inv, $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {steps} steps of the bench MLP (17 layers, batch 128), records from step 11 on, {exactJs.Count} layer records per monitor"));
Console.WriteLine(string.Create(inv, $"every element: JS between consecutive records mean {exactJs.Average():E2} bits, median {Median(exactJs):E2}"));
Console.WriteLine("| sample size | percentile error, RMS (std) | JS between records, mean (bits) | JS, median | JS - every element's, mean | W1 error, RMS (std) |");
Console.WriteLine("|---|---|---|---|---|---|");
for (int k = 0; k < sizes.Length; k++)
{
    double bias = js[k].Average() - exactJs.Average();
    Console.WriteLine(string.Create(inv, $"| {sizes[k]} | {Rms(percentileError[k]):F4} | {js[k].Average():E2} | {Median(js[k]):E2} | {bias:E2} | {Rms(w1Error[k]):F4} |"));
}
EOF
# shellcheck disable=SC2086
harness_run "$work" SampleAccuracy "$steps" $sizes
