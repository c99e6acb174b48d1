using System.Diagnostics;
using System.Text.Json;
using CovariateShift.Tests.Support;

namespace CovariateShift.Cli.Tests;

/// <summary>A real crash: the covshift process is killed while the monitor writes metrics.jsonl every step.</summary>
[Trait("Category", "Slow")]
public sealed class KilledRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-kill-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static int CompleteLines(string path)
    {
        if (!File.Exists(path)) return 0;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int count = 0, b;
        var buffer = new byte[1 << 16];
        while ((b = stream.Read(buffer)) > 0) count += buffer.AsSpan(0, b).Count((byte)'\n');
        return count;
    }

    [Fact]
    public void Metrics_of_a_killed_training_process_parse_line_by_line()
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "covshift.dll");
        Assert.True(File.Exists(cli), $"covshift.dll not found next to the tests: {cli}");
        var outDir = Path.Combine(_dir, "run");
        var metrics = Path.Combine(outDir, "metrics.jsonl");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { cli, "train", "--steps", "1000000", "--record-every", "1", "--model", "mlp", "--depth", "3", "--width", "64",
                     "--batch-size", "32", "--train-limit", "2000", "--test-limit", "100", "--log-every", "100000", "--out", outDir })
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        try
        {
            // Kill once at least 200 records (7 layers each) are on disk, mid-run.
            while (CompleteLines(metrics) < 200 * 7)
            {
                Assert.False(process.HasExited, $"covshift exited early with code {(process.HasExited ? process.ExitCode : 0)}");
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(120), "no metrics written within 120 s");
                Thread.Sleep(50);
            }
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }

        var text = File.ReadAllText(metrics);
        Assert.True(text.Length > 0);
        var pieces = text.Split('\n');
        int complete = pieces.Length - 1;               // the piece after the last newline is empty or a cut-off line
        Assert.True(complete >= 200 * 7, $"only {complete} complete lines");
        for (int i = 0; i < complete; i++)
        {
            using var doc = JsonDocument.Parse(pieces[i]);   // throws on a half-written line
            Assert.True(doc.RootElement.GetProperty("step").GetInt64() >= 0);
            Assert.False(string.IsNullOrEmpty(doc.RootElement.GetProperty("layer").GetString()));
        }
        Assert.Equal(complete, CovariateShift.Schema.MetricsReader.Read(metrics).Layers.Count);
        // Steps are recorded in order, whole steps first: every step before the last one has all 7 layers.
        var steps = pieces.Take(complete).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64()).ToList();
        var last = steps[^1];
        Assert.All(steps.Where(s => s < last).GroupBy(s => s), g => Assert.Equal(7, g.Count()));
    }
}
