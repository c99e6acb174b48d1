using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CovariateShift.Nn.Backends;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift conv-check</c>: measures how often libtorch's float32 CPU convolution gradients are wrong on this machine,
/// with oneDNN on and off, for a few channel counts (<see cref="CpuConvolutions"/>), and restores the process's setting.
/// Exit code 0 when every configuration is right with oneDNN off (the trainer's guard can then make training exact), 1
/// otherwise, 2 on a usage error.
/// </summary>
internal static class ConvCheckCommand
{
    /// <summary>The configurations measured: few channels (where the fault was seen) to many, on [batch, in, size, size].</summary>
    private static readonly (ConvolutionLayer Layer, int Batch, long Size)[] Shapes =
    [
        (CpuConvolutions.Probe, 8, 12),
        (new ConvolutionLayer("1->4", 1, 4, 3, 3, 1, 0, 1, 1), 2, 7),
        (new ConvolutionLayer("4->8", 4, 8, 3, 3, 1, 0, 1, 1), 2, 7),
        (new ConvolutionLayer("8->8", 8, 8, 3, 3, 1, 0, 1, 1), 2, 7),
        (new ConvolutionLayer("16->16", 16, 16, 3, 3, 1, 1, 1, 1), 2, 7),
        (new ConvolutionLayer("32->64", 32, 64, 3, 3, 1, 1, 1, 1), 2, 7),
    ];

    public static Command Create()
    {
        var trials = new Option<int>("--trials") { Description = "Convolutions per configuration and setting.", DefaultValueFactory = _ => 100 }.AtLeast(1);
        var json = new Option<bool>("--json") { Description = "Also print the results as one JSON object on the last line." };
        var cmd = new Command("conv-check", "Measure how often libtorch's float32 CPU convolution gradients are wrong here (against float64), with oneDNN on and off; exit code 1 when they are wrong even with oneDNN off.")
        {
            trials, json,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            if (!CpuConvolutions.CanSwitchOneDnn)
                throw new PlatformNotSupportedException("The loaded libtorch does not export its oneDNN switch; conv-check needs it.");
            int n = parse.GetValue(trials);
            bool before = CpuConvolutions.OneDnnEnabled;
            var rows = new List<(string Shape, ConvolutionCheck On, ConvolutionCheck Off)>();
            try
            {
                foreach (var (layer, batch, size) in Shapes)
                {
                    CpuConvolutions.OneDnnEnabled = true;
                    var on = CpuConvolutions.Check(layer, n, 0, batch, size);
                    CpuConvolutions.OneDnnEnabled = false;
                    var off = CpuConvolutions.Check(layer, n, 0, batch, size);
                    rows.Add(($"[{batch},{layer.InChannels},{size},{size}] -> {layer.OutChannels}, 3x3, padding {layer.Padding}", on, off));
                }
            }
            finally
            {
                CpuConvolutions.OneDnnEnabled = before;
            }
            Console.WriteLine($"CPU conv2d gradients (input and weight) against float64, {n} calls per row, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
            Console.WriteLine("| convolution | wrong, oneDNN on | largest error | wrong, oneDNN off | largest error |");
            Console.WriteLine("|---|---|---|---|---|");
            foreach (var (shape, on, off) in rows)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {shape} | {on.Wrong} of {on.Trials} | {on.LargestError:G3} | {off.Wrong} of {off.Trials} | {off.LargestError:G3} |"));
            }
            bool exactOff = rows.All(r => r.Off.Exact);
            Console.WriteLine(exactOff ? "conv-check: right with oneDNN off" : "conv-check: WRONG even with oneDNN off");
            if (parse.GetValue(json))
            {
                static double? Finite(double v) => double.IsFinite(v) ? v : null;
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    trials = n,
                    rows = rows.Select(r => new
                    {
                        convolution = r.Shape,
                        wrong_onednn_on = r.On.Wrong,
                        largest_error_onednn_on = Finite(r.On.LargestError),
                        wrong_onednn_off = r.Off.Wrong,
                        largest_error_onednn_off = Finite(r.Off.LargestError),
                    }),
                }));
            }
            return exactOff ? 0 : 1;
        }));
        return cmd;
    }
}
