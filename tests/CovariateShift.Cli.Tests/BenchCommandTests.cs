using System.Text.Json;

namespace CovariateShift.Cli.Tests;

/// <summary><c>covshift bench</c> in-process, at the smallest settings (what it reports, not how fast).</summary>
[Collection(nameof(TrainCommandTests))]
public sealed class BenchCommandTests
{
    [Fact]
    public void The_sample_size_reaches_the_monitor_and_the_report()
    {
        var (code, output, error) = CliConsole.Run("bench", "--device", "cpu", "--models", "mlp", "--record-every", "1", "--gradients", "false",
            "--mlp-pairs", "1", "--mlp-steps", "2", "--max-pairs-factor", "1", "--sample-size", "64", "--json");
        Assert.True(code == 0, error);
        Assert.Contains("sample size 64", output);
        var json = JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]).RootElement;
        Assert.Equal(64, json.GetProperty("sample_size").GetInt32());
        var row = Assert.Single(json.GetProperty("results").EnumerateArray());
        Assert.Equal(1, row.GetProperty("pairs").GetInt32());
        Assert.Equal((1, 1), (row.GetProperty("record_every_min").GetInt32(), row.GetProperty("record_every_max").GetInt32()));   // no budget
        Assert.True(row.GetProperty("monitored_ms").GetDouble() > 0);
        // One pair: the monitor's own ms per step is its share of the one monitored block times that block's ms per step.
        double own = row.GetProperty("self_timed_ms").GetDouble(), share = row.GetProperty("self_timed_share").GetDouble();
        double monitored = row.GetProperty("monitored_ms").GetDouble();
        Assert.True(own > 0 && Math.Abs(own - share * monitored) <= 0.01 * own + 2e-3, $"self_timed_ms {own} against share {share} x {monitored} ms");
        Assert.Equal(JsonValueKind.Null, row.GetProperty("notch").ValueKind);   // one pair: no notch (was an infinity JSON cannot hold)
    }

    [Fact]
    public void The_budget_row_reports_the_budget_and_the_interval_it_chose()
    {
        var (code, output, error) = CliConsole.Run("bench", "--device", "cpu", "--models", "mlp", "--record-every", "1", "--gradients", "false",
            "--mlp-pairs", "1", "--mlp-steps", "2", "--max-pairs-factor", "1", "--sample-size", "64", "--overhead-budget", "0.5", "--json");
        Assert.True(code == 0, error);
        var rows = JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]).RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(2, rows.Count);
        Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("overhead_budget").ValueKind);
        var row = rows[1];
        Assert.Equal(0.5, row.GetProperty("overhead_budget").GetDouble());
        int chosen = row.GetProperty("final_record_every").GetInt32();
        Assert.True(chosen >= 1 && int.IsPow2(chosen), $"final_record_every {chosen}: the budget picks 1 x 2^k");
        Assert.True(row.GetProperty("steps_per_block").GetInt32() >= 64);   // long enough blocks for the intervals a budget picks
        // The table's row names the budget and the interval; a single pair has no notch, printed as "-".
        // The intervals in use while measured: powers of two around the final one.
        int min = row.GetProperty("record_every_min").GetInt32(), max = row.GetProperty("record_every_max").GetInt32();
        Assert.True(int.IsPow2(min) && int.IsPow2(max) && min <= chosen && chosen <= max, $"intervals {min}-{max}, final {chosen}");
        string range = min == max ? "" : $" ({min}-{max})";
        Assert.Contains($"| mlp | budget 50.0 %: 1 -> {chosen}{range} | no |", output);
        Assert.DoesNotContain("Infinity", output);
    }

    [Theory]
    [InlineData("--overhead-budget", "1", "--overhead-budget must be in (0, 1); got 1.")]
    [InlineData("--overhead-budget", "0", "--overhead-budget must be in (0, 1); got 0.")]
    [InlineData("--margin", "-0.1", "--margin must be in (0, ")]
    public void A_bad_budget_or_margin_is_refused_before_any_data_is_loaded(string option, string value, string expected)
    {
        var (code, _, error) = CliConsole.Run("bench", "--device", "cpu", "--models", "mlp", option, value);
        Assert.Equal(2, code);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("Loading", error);
    }

    [Fact]
    public void A_sample_size_under_16_is_refused_naming_it()
    {
        var (code, _, error) = CliConsole.Run("bench", "--device", "cpu", "--models", "mlp", "--sample-size", "8");
        Assert.Equal(2, code);
        Assert.Contains("--sample-size must be at least 16; got 8", error);
    }
}
