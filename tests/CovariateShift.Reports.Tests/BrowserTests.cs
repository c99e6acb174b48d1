using System.Diagnostics;
using System.Text.RegularExpressions;

namespace CovariateShift.Reports.Tests;

/// <summary>Opens a generated report in headless Chromium (Debian's chromium; scripts/bootstrap.sh installs it).</summary>
public sealed partial class BrowserTests
{
    private static readonly string[] Flags =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
    ];

    private static readonly string[] Candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

    internal static string Chromium() =>
        Candidates.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("chromium is not installed; run scripts/bootstrap.sh (apt-get install -y chromium).");

    private static (string Stdout, string Stderr) RunChromium(string userData, params string[] args)
    {
        var psi = new ProcessStartInfo(Chromium()) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var f in Flags) psi.ArgumentList.Add(f);
        psi.ArgumentList.Add("--user-data-dir=" + userData);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("chromium did not finish within 120 s");
        }
        return (stdout.Result, stderr.Result);
    }

    [GeneratedRegex("<body([^>]*)>")]
    private static partial Regex Body();

    private static string Attr(string body, string name)
    {
        var m = Regex.Match(body, name + "=\"([^\"]*)\"");
        Assert.True(m.Success, $"body has no {name}: {body}");
        return m.Groups[1].Value;
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void The_report_draws_without_errors_and_redraws_when_another_statistic_is_chosen()
    {
        using var tmp = new TempDirectory();
        var none = tmp.Sub("none");
        var bn = tmp.Sub("batch");
        var diverging = tmp.Sub("diverging");
        Runs.Train(none, batchNorm: false);
        Runs.Train(bn, batchNorm: true);
        var warned = Runs.Diverging(diverging).SelectMany(r => r.Anomalies).Count(a => a.Forecast is not null);
        Assert.True(warned > 0, "the diverging run should carry forecast warnings");
        var html = Path.Combine(tmp.Path, "report.html");
        ReportWriter.Write([none, bn, diverging], html, figures: false);
        var url = new Uri(html).AbsoluteUri;

        var (dom, stderr) = RunChromium(Path.Combine(tmp.Path, "profile1"), "--dump-dom", url + "#selftest");
        var body = Body().Match(dom).Groups[1].Value;
        Assert.Equal("1", Attr(body, "data-ready"));
        Assert.Equal("0", Attr(body, "data-errors"));
        Assert.DoesNotMatch(new Regex(@"CONSOLE.*(Uncaught|Error)", RegexOptions.IgnoreCase), stderr);
        Assert.Equal("3", Attr(body, "data-heatmap-panels"));
        // The forecaster's warnings are marked on the training-loss chart, and the overhead chart is drawn.
        Assert.Equal(warned.ToString(System.Globalization.CultureInfo.InvariantCulture), Attr(body, "data-forecast-markers"));
        Assert.Matches(new Regex("<canvas[^>]*data-markers=\"" + warned + "\""), dom);
        Assert.Matches(new Regex("<div id=\"overhead\"[^>]*>\\s*<div class=\"chart\">"), dom);
        Assert.True(int.Parse(Attr(body, "data-heatmap-painted"), System.Globalization.CultureInfo.InvariantCulture) > 1000, "heatmap has almost no painted pixels");
        Assert.Equal("done", Attr(body, "data-selftest"));
        Assert.Equal("std", Attr(body, "data-selftest-before-stat"));
        Assert.NotEqual(Attr(body, "data-selftest-before-stat"), Attr(body, "data-selftest-after-stat"));
        Assert.NotEqual(Attr(body, "data-selftest-before-signature"), Attr(body, "data-selftest-after-signature"));

        var shot = Path.Combine(tmp.Path, "report.png");
        RunChromium(Path.Combine(tmp.Path, "profile2"), "--window-size=1500,2400", "--screenshot=" + shot, url);
        var bytes = File.ReadAllBytes(shot);
        Assert.True(bytes.Length > 10_000, $"screenshot is only {bytes.Length} bytes");
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        var keep = Path.Combine(Path.GetTempPath(), "covshift-report-screenshot.png");
        File.Copy(shot, keep, overwrite: true);
    }
}
