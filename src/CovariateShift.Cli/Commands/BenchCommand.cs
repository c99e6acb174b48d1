using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CovariateShift.Training.Benchmarks;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Cli.Commands;

/// <summary><c>covshift bench</c>: the monitor's overhead in a real training step (see <see cref="OverheadBenchmark"/>).</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--models") { Description = "Models to measure: mlp (8x256 ReLU MLP), cnn (4-conv CNN with batch norm), resnet20 (CIFAR ResNet-20, images padded to 32x32). Default: mlp cnn on the CPU, mlp cnn resnet20 on CUDA.", AllowMultipleArgumentsPerToken = true };
        var every = new Option<int[]>("--record-every") { Description = "RecordEvery settings to measure.", DefaultValueFactory = _ => [1, 16], AllowMultipleArgumentsPerToken = true };
        var mlpPairs = new Option<int>("--mlp-pairs") { Description = "A/B pairs per MLP configuration (the median ratio is reported).", DefaultValueFactory = _ => 60 }.AtLeast(1);
        var cnnPairs = new Option<int>("--cnn-pairs") { Description = "A/B pairs per CNN configuration.", DefaultValueFactory = _ => 16 }.AtLeast(1);
        var mlpSteps = new Option<int>("--mlp-steps") { Description = "Timed MLP steps per block (rounded up to a multiple of record-every).", DefaultValueFactory = _ => 8 }.AtLeast(1);
        var cnnSteps = new Option<int>("--cnn-steps") { Description = "Timed CNN steps per block (rounded up to a multiple of record-every).", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var resnetPairs = new Option<int>("--resnet-pairs") { Description = "A/B pairs per ResNet-20 configuration.", DefaultValueFactory = _ => 16 }.AtLeast(1);
        var resnetSteps = new Option<int>("--resnet-steps") { Description = "Timed ResNet-20 steps per block (rounded up to a multiple of record-every).", DefaultValueFactory = _ => 4 }.AtLeast(1);
        var grads = new Option<bool[]>("--gradients") { Description = "Monitored loop without (false) and/or with (true) RecordGradients() every step.", DefaultValueFactory = _ => [false, true], AllowMultipleArgumentsPerToken = true };
        var engine = new Option<string>("--engine") { Description = "The monitor's statistics engine: auto (CPU kernel for CPU float32 tensors, device engine otherwise) or device (the device engine everywhere, e.g. to measure it on the CPU).", DefaultValueFactory = _ => "auto" };
        var batch = new Option<int>("--batch-size") { Description = "Mini-batch size.", DefaultValueFactory = _ => 128 }.AtLeast(1);
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda.", DefaultValueFactory = _ => "auto" };
        var budget = CliNumbers.OptionalFloat("--overhead-budget", "Also measure each model with the monitor's OverheadBudget set to this share (e.g. 0.02), record-every 1 as its base: the row shows the share the monitor achieved and the interval it chose.", 0, true, 1, true);
        var margin = CliNumbers.OptionalFloat("--margin", "Repeat a row's protocol while the median ratio's 95% notch (1.58 IQR / sqrt(pairs)) is wider than this. Default: the row's target margin (0.01 for record-every >= 16, 0.05 every step, 0.15 every step with gradients, the budget for a budget row).", 0, true, float.MaxValue);
        var maxFactor = new Option<int>("--max-pairs-factor") { Description = "At most this many times the row's pairs when repeating (1 = never repeat).", DefaultValueFactory = _ => 3 }.AtLeast(1);
        var sampleSize = new Option<int>("--sample-size") { Description = "The monitor's SampleSize: values per layer and recorded step for percentiles and histograms.", DefaultValueFactory = _ => new MonitorOptions().SampleSize }.AtLeast(16);
        var json = new Option<bool>("--json") { Description = "Print the results as one JSON object on the last line." };
        var cmd = new Command("bench", "Measure the monitor's overhead: step time with the monitor / without, A/B interleaved blocks, median over pairs.")
        {
            models, every, grads, mlpPairs, cnnPairs, mlpSteps, cnnSteps, resnetPairs, resnetSteps, engine, batch, device, budget, margin, maxFactor, sampleSize, json,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var dev = DeviceSelector.Resolve(parse.GetValue(device)!);
            var given = parse.GetValue(models);
            string[] defaults = dev.type == TorchSharp.DeviceType.CUDA ? ["mlp", "cnn", "resnet20"] : ["mlp", "cnn"];
            var modelList = (given is { Length: > 0 } ? given : defaults).SelectMany(m => m.Split(',', StringSplitOptions.RemoveEmptyEntries)).ToArray();
            foreach (var m in modelList)
            {
                if (!OverheadBenchmark.Models.Contains(m))
                    throw new ArgumentException($"--models: unknown model '{m}'; expected {string.Join(", ", OverheadBenchmark.Models)}.");
            }

            var engineKind = parse.GetValue(engine) switch
            {
                "auto" => StatisticsEngineKind.Auto,
                "device" => StatisticsEngineKind.Device,
                var other => throw new ArgumentException($"--engine: unknown engine '{other}'; expected auto or device."),
            };
            var everyList = parse.GetValue(every)!;
            foreach (var e in everyList)
                if (e < 1) throw new ArgumentException($"--record-every must be at least 1; got {e}.");
            var progress = new Action<string>(line => Console.Error.WriteLine(line));
            Console.Error.WriteLine($"Loading Fashion-MNIST from {MnistFormat.FashionMnistDirectory} ...");
            using var data = MnistFormat.LoadFashionMnist(train: true, limit: 8 * parse.GetValue(batch));
            var bench = new OverheadBenchmark(dev, data, parse.GetValue(batch), progress) { SampleSize = parse.GetValue(sampleSize) };
            var budgetValue = parse.GetValue(budget);   // both checked by their parsers, before anything is loaded
            var marginValue = parse.GetValue(margin);
            int factor = parse.GetValue(maxFactor);
            var results = new List<OverheadResult>();
            foreach (var m in modelList)
            {
                var (pairs, steps) = m switch
                {
                    "mlp" => (parse.GetValue(mlpPairs), parse.GetValue(mlpSteps)),
                    "cnn" => (parse.GetValue(cnnPairs), parse.GetValue(cnnSteps)),
                    _ => (parse.GetValue(resnetPairs), parse.GetValue(resnetSteps)),
                };
                foreach (var g in parse.GetValue(grads)!)
                {
                    foreach (var e in everyList)
                    {
                        double target = e >= 16 ? 0.01 : g ? 0.15 : 0.05;
                        results.Add(bench.Run(m, e, pairs, steps, warmupCycles: m == "mlp" ? 40 : 4, gradients: g, engine: engineKind,
                            margin: marginValue ?? target, maxPairs: pairs * factor));
                    }
                    if (budgetValue is { } b)
                    {
                        // The budget needs a few hundred steps to settle, and blocks long enough for the intervals it picks.
                        results.Add(bench.Run(m, 1, pairs, Math.Max(steps, m == "mlp" ? 64 : 16), warmupCycles: m == "mlp" ? 400 : 60, gradients: g,
                            engine: engineKind, overheadBudget: b, margin: marginValue ?? b, maxPairs: pairs * factor));
                    }
                }
            }

            Console.WriteLine($"device: {dev.type.ToString().ToLowerInvariant()}, engine {parse.GetValue(engine)}, batch {parse.GetValue(batch)}, threads {TorchSharp.torch.get_num_threads()}, sample size {parse.GetValue(sampleSize)}");
            Console.WriteLine("| model | record every | gradients | plain ms/step | monitored ms/step | ratio (median) | ratio IQR | notch +- | self-timed share (IQR) | self-timed ratio | pairs x steps |");
            Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
            foreach (var r in results)
            {
                string every = Every(r);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Model} | {every} | {(r.Gradients ? "yes" : "no")} | {r.PlainMs:F2} | {r.MonitoredMs:F2} | {r.Ratio:F3} | {r.RatioQ1:F3}-{r.RatioQ3:F3} | {(double.IsFinite(r.Notch) ? r.Notch.ToString("F3", CultureInfo.InvariantCulture) : "-")} | {r.SelfTimedShare:P2} ({r.SelfTimedShareQ1:P2}-{r.SelfTimedShareQ3:P2}) | {r.SelfTimedRatio:F3} | {r.Pairs} x {r.StepsPerBlock} |"));
            }

            // Where the monitor's own time went: per part, ms per step and the share of the plain step it alone adds.
            var partNames = Enum.GetValues<MonitorPart>();
            Console.WriteLine();
            Console.WriteLine("monitor's own time per step by part, ms (share of the plain step), median over monitored blocks:");
            Console.WriteLine($"| model | record every | gradients | {string.Join(" | ", partNames.Select(p => p.ToString().ToLowerInvariant()))} |");
            Console.WriteLine($"|---|---|---|{string.Concat(partNames.Select(_ => "---|"))}");
            foreach (var r in results)
            {
                string every = Every(r);
                var cells = partNames.Select(p => r.SelfTimedPartsMs.TryGetValue(p, out var ms)
                    ? string.Create(CultureInfo.InvariantCulture, $"{ms:F3} ({ms / r.PlainMs:P1})")
                    : "-");
                Console.WriteLine($"| {r.Model} | {every} | {(r.Gradients ? "yes" : "no")} | {string.Join(" | ", cells)} |");
            }
            Console.WriteLine();

            var outside = results.Where(r => !r.SelfTimedWithinIqr).ToList();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"self-timed ratio within the A/B ratio's IQR: {results.Count - outside.Count} of {results.Count} rows{(outside.Count == 0 ? "" : " (outside: " + string.Join(", ", outside.Select(r => $"{r.Model} every {r.RecordEvery}{(r.Gradients ? " +gradients" : "")}{(r.OverheadBudget is { } ob ? $" budget {ob}" : "")}")) + ")")}"));

            if (parse.GetValue(json))
            {
                var payload = new
                {
                    device = dev.type.ToString().ToLowerInvariant(),
                    engine = parse.GetValue(engine),
                    sample_size = parse.GetValue(sampleSize),
                    results = results.Select(r => new
                    {
                        model = r.Model,
                        record_every = r.RecordEvery,
                        gradients = r.Gradients,
                        ratio = Round(r.Ratio, 4),
                        plain_ms = Round(r.PlainMs, 3),
                        monitored_ms = Round(r.MonitoredMs, 3),
                        ratio_q1 = Round(r.RatioQ1, 4),
                        ratio_q3 = Round(r.RatioQ3, 4),
                        pairs = r.Pairs,
                        steps_per_block = r.StepsPerBlock,
                        notch = Round(r.Notch, 4),
                        self_timed_share = Round(r.SelfTimedShare, 5),
                        self_timed_share_q1 = Round(r.SelfTimedShareQ1, 5),
                        self_timed_share_q3 = Round(r.SelfTimedShareQ3, 5),
                        self_timed_ms = Round(r.SelfTimedMs, 4),
                        self_timed_ratio = Round(r.SelfTimedRatio, 4),
                        self_timed_parts_ms = r.SelfTimedPartsMs.ToDictionary(kv => kv.Key.ToString().ToLowerInvariant(), kv => Round(kv.Value, 4)),
                        self_timed_within_iqr = r.SelfTimedWithinIqr,
                        overhead_budget = r.OverheadBudget,
                        final_record_every = r.FinalRecordEvery,
                        record_every_min = r.MinRecordEvery,
                        record_every_max = r.MaxRecordEvery,
                    }),
                };
                Console.WriteLine(JsonSerializer.Serialize(payload));
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>A number for the JSON line: rounded, or null where it is not finite (the notch of a single pair is infinite).</summary>
    /// <summary>The row's interval column: RecordEvery, or for a budget row "budget 2.0 %: 1 -> 8", with the range in use
    /// while measured when it was not one interval ("1 -> 8 (8-16)").</summary>
    private static string Every(OverheadResult r)
    {
        if (r.OverheadBudget is not { } budget) return r.RecordEvery.ToString(CultureInfo.InvariantCulture);
        string range = r.MinRecordEvery == r.MaxRecordEvery ? "" : string.Create(CultureInfo.InvariantCulture, $" ({r.MinRecordEvery}-{r.MaxRecordEvery})");
        return string.Create(CultureInfo.InvariantCulture, $"budget {budget:P1}: 1 -> {r.FinalRecordEvery}{range}");
    }

    private static double? Round(double value, int digits) => double.IsFinite(value) ? Math.Round(value, digits) : null;
}
