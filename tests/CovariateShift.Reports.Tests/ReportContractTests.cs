using System.Text.Json;
using System.Text.Json.Nodes;
using CovariateShift.Forecast;
using CovariateShift.Probes;
using CovariateShift.Records;
using CovariateShift.Reports.Data;
using CovariateShift.Reports.Html;
using CovariateShift.Sinks;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Reports.Tests;

/// <summary>
/// The report's inputs end to end: files our own code wrote (the monitor, its forecaster, the CLI's log.clef sink, the
/// gradient-ICS probe) read by the report, checked against what the writers produced (records, measurements).
/// </summary>
public sealed class ReportContractTests
{
    private static JsonElement Run(RunData run) => HtmlReportTests.Payload(HtmlReport.Render([run])).GetProperty("runs")[0];

    [Fact]
    public void Forecast_warnings_the_real_forecaster_wrote_are_listed_in_the_warnings_table_and_marked_on_the_loss_curve()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("diverging");
        var records = Runs.Diverging(dir);
        var expected = records.SelectMany(r => r.Anomalies).Where(a => a.Kind == AnomalyKind.DivergenceAhead).ToList();
        Assert.NotEmpty(expected);   // the run must be warned for the test to mean anything
        Assert.All(expected, a => Assert.NotNull(a.Forecast));

        var run = RunLoader.Load(dir, "diverging");
        Assert.Equal(expected.Select(a => (a.Step, a.Forecast!.Horizon, a.Forecast.Score, a.Forecast.Layer)),
            run.Forecasts.Select(f => (f.Step, f.Horizon, f.Score, f.Layer)));
        // The warnings table: one row per (layer of the top signal, DivergenceAhead), its first step and count; not
        // doubled by log.clef's DivergenceAhead events of the same warnings.
        var rows = expected.GroupBy(a => a.Forecast!.Layer).Select(g => $"{g.Key} first {g.Min(a => a.Step)} x{g.Count()}").Order().ToList();
        Assert.Equal(rows, run.Warnings.Where(w => w.Kind == nameof(AnomalyKind.DivergenceAhead)).Select(w => $"{w.Layer} first {w.FirstStep} x{w.Count}").Order());
        Assert.All(run.Warnings.Where(w => w.Kind == nameof(AnomalyKind.DivergenceAhead)), w => Assert.Contains("predicted to diverge within", w.Hint, StringComparison.Ordinal));

        // The page embeds them: the markers of the loss curve and the rows of the table.
        var page = Run(run);
        Assert.Equal(expected.Select(a => (a.Step, a.Forecast!.Horizon, a.Forecast.Layer)),
            page.GetProperty("forecasts").EnumerateArray().Select(f => (f.GetProperty("step").GetInt64(), f.GetProperty("horizon").GetInt32(), f.GetProperty("layer").GetString()!)));
        Assert.Equal(rows, page.GetProperty("warnings").EnumerateArray().Where(w => w.GetProperty("kind").GetString() == "DivergenceAhead")
            .Select(w => $"{w.GetProperty("layer").GetString()} first {w.GetProperty("firstStep").GetInt64()} x{w.GetProperty("count").GetInt32()}").Order());

        // A run killed while writing a line: the whole lines are read, the torn one is skipped and said.
        var forecastPath = Path.Combine(dir, ForecastFile.FileName);
        var first = File.ReadAllLines(forecastPath)[0];
        File.AppendAllText(forecastPath, first[..(first.Length / 2)]);
        var torn = RunLoader.Load(dir, "torn");
        Assert.Equal(run.Forecasts.Select(f => f.Step), torn.Forecasts.Select(f => f.Step));
        Assert.Contains(torn.Notes, n => n == $"{ForecastFile.FileName}: the last line is incomplete; it was skipped.");

        // A run without forecast.jsonl (a user's own loop with only the Serilog sink): the same rows from log.clef.
        var logOnly = tmp.Sub("log-only");
        File.Copy(Path.Combine(dir, "log.clef"), Path.Combine(logOnly, "log.clef"));
        var fromLog = RunLoader.Load(logOnly, "log-only");
        Assert.Empty(fromLog.Forecasts);
        Assert.Equal(rows, fromLog.Warnings.Where(w => w.Kind == nameof(AnomalyKind.DivergenceAhead)).Select(w => $"{w.Layer} first {w.FirstStep} x{w.Count}").Order());
    }

    [Fact]
    public void The_overhead_line_is_the_records_monitor_ms_over_step_ms_and_the_run_share_weights_them_by_their_windows()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        var records = Runs.Train(dir, batchNorm: true, steps: 30, recordEvery: 3);
        Assert.All(records, r => Assert.True(r.MonitorMs is > 0 && r.StepMs is > 0, $"step {r.Step}: monitor_ms {r.MonitorMs}, step_ms {r.StepMs}"));
        var page = Run(RunLoader.Load(dir, "run"));
        var overhead = page.GetProperty("overhead");
        var points = overhead.GetProperty("points").EnumerateArray().Select(p => (p[0].GetInt64(), p[1].GetDouble())).ToList();
        Assert.Equal(records.Select(r => r.Step), points.Select(p => p.Item1));
        for (int i = 0; i < records.Count; i++) Assert.Equal(records[i].MonitorMs!.Value / records[i].StepMs!.Value, points[i].Item2, 12);
        double monitor = records.Sum(r => r.MonitorMs!.Value * (r.StepsSincePrevious ?? 1));
        double step = records.Sum(r => r.StepMs!.Value * (r.StepsSincePrevious ?? 1));
        Assert.Equal(monitor / step, overhead.GetProperty("share").GetDouble(), 12);
        Assert.Equal(3, records[1].StepsSincePrevious);
    }

    [Fact]
    public void Metrics_without_timing_fields_have_no_overhead_line()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        Runs.Train(dir, batchNorm: false, steps: 6, recordEvery: 2);
        // The same file as a monitor before self-timing wrote it: the timing fields removed from the real lines.
        var path = Path.Combine(dir, "metrics.jsonl");
        File.WriteAllLines(path, File.ReadAllLines(path).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            o.Remove("monitor_ms");
            o.Remove("step_ms");
            return o.ToJsonString();
        }));
        var overhead = Run(RunLoader.Load(dir, "run")).GetProperty("overhead");
        Assert.Equal(JsonValueKind.Null, overhead.GetProperty("share").ValueKind);
        Assert.Equal(0, overhead.GetProperty("points").GetArrayLength());
    }

    [Fact]
    public void Gradient_ics_the_probe_wrote_is_merged_into_the_layers_and_steps_of_the_metrics()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("ics");
        torch.manual_seed(4);
        using var model = nn.Sequential(("fc1", nn.Linear(6, 12)), ("act1", nn.Tanh()), ("fc2", nn.Linear(12, 8)), ("act2", nn.Tanh()), ("fc3", nn.Linear(8, 3)));
        using var opt = optim.SGD(model.parameters(), 0.1);
        var measured = new List<GradientIcsMeasurement>();
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            RecordEvery = 2, JsonLinesPath = Path.Combine(dir, "metrics.jsonl"),
            GradientIcs = new GradientIcsOptions { JsonLinesPath = Path.Combine(dir, RunLoader.IcsFile) },
        }))
        {
            for (int s = 0; s < 8; s++)
            {
                using var scope = NewDisposeScope();
                var x = randn(16, 6);
                var y = (x[.., 0] > 0).to_type(ScalarType.Int64);
                opt.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                loss.backward();
                monitor.RecordGradients();
                opt.step();
                measured.AddRange(monitor.MeasureGradientIcs(() => nn.functional.cross_entropy(model.call(x), y)));
                monitor.Step(loss);
            }
        }
        Assert.Equal([0L, 2, 4, 6], measured.Select(m => m.Step).Distinct());
        var m = RunLoader.Load(dir, "ics").Metrics!;
        Assert.DoesNotContain(RunLoader.Load(dir, "ics").Notes, n => n.Contains(RunLoader.IcsFile, StringComparison.Ordinal));
        int cells = 0;
        for (int l = 0; l < m.Layers.Count; l++)
        {
            for (int s = 0; s < m.Steps.Count; s++)
            {
                var at = measured.SingleOrDefault(x => x.Layer == m.Layers[l].Name && x.Step == m.Steps[s]);
                if (at is null)
                {
                    Assert.True(double.IsNaN(m.Values["ics_l2"][l][s]), $"{m.Layers[l].Name} at {m.Steps[s]}: no measurement, yet a value");
                    continue;
                }
                Assert.Equal(at.L2, m.Values["ics_l2"][l][s], 12);
                Assert.Equal(at.Cosine, m.Values["ics_cos"][l][s], 12);
                cells++;
            }
        }
        Assert.Equal(measured.Count, cells);
    }
}
