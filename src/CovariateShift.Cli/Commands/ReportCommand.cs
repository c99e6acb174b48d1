using System.CommandLine;
using System.Globalization;
using CovariateShift.Reports;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift report RUN_DIR... [--out FILE.html]</c>: one self-contained HTML report (and PNG figures beside it) of any
/// set of run directories. A path that does not exist is an error; a directory with missing, empty or half-written
/// files is rendered with what is there, and the page says what was skipped. Nothing is written through a symbolic link,
/// and an existing file at --out is replaced only when it is a covshift report.
/// </summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("RUN_DIR") { Description = "Run directories (each with metrics.jsonl; training.jsonl, config.json, summary.json, log.clef when present).", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string?>("--out") { Description = "HTML file to write (PNG figures go beside it). Default: report.html in the first run directory's parent." };
        var stat = new Option<string>("--figure-stat") { Description = "Statistic of the PNG heatmaps (std, mean, kl_divergence, jensen_shannon, ...: the metrics schema's names).", DefaultValueFactory = _ => "std" };
        var noFigures = new Option<bool>("--no-figures") { Description = "Write only the HTML file." };
        var cmd = new Command("report", "Write a self-contained HTML report (heatmaps, percentiles, histograms, curves, warnings) and PNG figures for run directories.")
        {
            runs, output, stat, noFigures,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var dirs = parse.GetValue(runs) ?? [];
            foreach (var d in dirs)
            {
                if (!Directory.Exists(d))
                    throw new ArgumentException(File.Exists(d) ? $"run directory '{d}' is a file; expected a directory holding metrics.jsonl." : $"run directory '{d}' does not exist.");
            }
            Reports.Data.Statistic.Find(parse.GetValue(stat)!);
            var outPath = parse.GetValue(output) ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(dirs[0]).TrimEnd(Path.DirectorySeparatorChar)) ?? ".", ReportWriter.DefaultFileName);
            if (Directory.Exists(outPath)) throw new ArgumentException($"--out '{outPath}' is a directory; expected an .html file path.");
            ReportWriter.CheckTargets(outPath, figures: !parse.GetValue(noFigures));   // a link, or a file that is not our report: refused before reading the runs
            var result = ReportWriter.Write(dirs, outPath, figures: !parse.GetValue(noFigures), figureStatistic: parse.GetValue(stat)!);
            Print(result);
            return 0;
        }));
        return cmd;
    }

    /// <summary>One line per file written and per run note.</summary>
    public static void Print(ReportResult result)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"report: {result.HtmlPath} ({result.Bytes / 1e6:F2} MB, {result.Runs.Count} run(s); read {result.LoadTime.TotalSeconds:F2} s, HTML written at {result.HtmlTime.TotalSeconds:F2} s, with figures {result.Elapsed.TotalSeconds:F2} s)"));
        foreach (var f in result.Figures) Console.WriteLine($"figure: {f}");
        foreach (var r in result.Runs)
        {
            foreach (var n in r.Notes) Console.WriteLine($"note: {r.Name}: {n}");
        }
    }
}
