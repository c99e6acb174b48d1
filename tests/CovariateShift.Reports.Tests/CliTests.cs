using CovariateShift.TestSupport;

namespace CovariateShift.Reports.Tests;

public sealed class CliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliConsole.Run(args);

    [Fact]
    public void Report_of_a_path_that_does_not_exist_is_a_one_line_error_and_writes_nothing()
    {
        using var tmp = new TempDirectory();
        var outFile = Path.Combine(tmp.Path, "r.html");
        var (code, _, err) = Run("report", Path.Combine(tmp.Path, "missing"), "--out", outFile);
        Assert.Equal(2, code);
        Assert.StartsWith("error: run directory", err, StringComparison.Ordinal);
        Assert.Contains("does not exist", err, StringComparison.Ordinal);
        Assert.Single(err.Trim().Split('\n'));
        Assert.False(File.Exists(outFile));
    }

    [Fact]
    public void Report_renders_an_empty_directory_next_to_a_real_run_and_writes_figures()
    {
        using var tmp = new TempDirectory();
        var real = tmp.Sub("real");
        var empty = tmp.Sub("empty");
        Runs.Train(real, batchNorm: true);
        var outFile = Path.Combine(tmp.Path, "out", "r.html");
        var (code, stdout, err) = Run("report", real, empty, "--out", outFile);
        Assert.True(code == 0, err);
        Assert.True(File.Exists(outFile));
        Assert.Contains("note: empty: no metrics.jsonl", stdout, StringComparison.Ordinal);
        var heat = Path.Combine(tmp.Path, "out", "r-heatmap-std-real.png");
        var pct = Path.Combine(tmp.Path, "out", "r-percentiles.png");
        foreach (var png in new[] { heat, pct })
        {
            var b = File.ReadAllBytes(png);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], b[..4]);
            Assert.True(b.Length > 5000, $"{png} is only {b.Length} bytes");
        }
        var data = HtmlReportTests.Payload(File.ReadAllText(outFile));
        Assert.Equal(0, data.GetProperty("runs")[1].GetProperty("layers").GetArrayLength());
    }

    [Fact]
    public void Unknown_experiment_is_a_one_line_error()
    {
        var (code, _, err) = Run("experiment", "bn-fig2");
        Assert.Equal(2, code);
        Assert.Contains("unknown experiment 'bn-fig2'", err, StringComparison.Ordinal);
    }
}
