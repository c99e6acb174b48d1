using System.CommandLine;
using System.Text.Json;
using CovariateShift.Training.Benchmarks;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift verify</c>: runs the same activations through the device engine (on the chosen device) and the CPU kernel
/// and compares every statistic with a double-precision reference (see <see cref="EngineVerification"/>). Exit code 0
/// when everything matches, 1 on a mismatch, 2 on a usage error.
/// </summary>
internal static class VerifyCommand
{
    /// <summary>Exit code when a statistic does not match.</summary>
    public const int Mismatch = 1;

    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "Where the device engine runs: auto, cpu or cuda.", DefaultValueFactory = _ => "auto" };
        var json = new Option<bool>("--json") { Description = "Also print the results as one JSON object on the last line." };
        var cmd = new Command("verify", "Self-check: the device engine and the CPU kernel against a double-precision reference on the same activations, per statistic, with tolerances; exit code 1 on a mismatch.")
        {
            device, json,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var dev = DeviceSelector.Resolve(parse.GetValue(device)!);
            var report = EngineVerification.Run(dev);
            Console.WriteLine($"device engine on {report.Device}; CPU kernel on cpu; reference in double precision over every element");
            Console.WriteLine(EngineVerification.Format(report));
            int failed = report.Rows.Count(r => !r.Passed);
            Console.WriteLine(failed == 0
                ? $"verify: all {report.Rows.Count} checks passed"
                : $"verify: {failed} of {report.Rows.Count} checks FAILED");
            if (parse.GetValue(json))
            {
                var payload = new
                {
                    device = report.Device,
                    passed = report.Passed,
                    rows = report.Rows.Select(r => new
                    {
                        layer = r.Layer,
                        statistic = r.Statistic,
                        reference = double.IsFinite(r.Reference) ? r.Reference : (double?)null,
                        cpu = double.IsFinite(r.Cpu) ? r.Cpu : (double?)null,
                        device = double.IsFinite(r.Device) ? r.Device : (double?)null,
                        tolerance = r.Tolerance,
                        passed = r.Passed,
                    }),
                };
                Console.WriteLine(JsonSerializer.Serialize(payload));
            }
            return report.Passed ? 0 : Mismatch;
        }));
        return cmd;
    }
}
