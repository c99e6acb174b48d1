using System.Text.Json;
using CovariateShift.Nn.Backends;

namespace CovariateShift.Cli.Tests;

/// <summary><c>covshift conv-check</c> in-process: what it measures, and that it leaves the process's oneDNN setting as it was.</summary>
[Collection(nameof(TrainCommandTests))]
public sealed class ConvCheckCommandTests
{
    [Fact]
    public void It_measures_every_shape_with_onednn_on_and_off_and_restores_the_setting()
    {
        if (!OperatingSystem.IsLinux()) return;
        bool before = CpuConvolutions.OneDnnEnabled;
        var (code, output, error) = CliConsole.Run("conv-check", "--trials", "4", "--json");
        Assert.True(code == 0, error + output);
        Assert.Equal(before, CpuConvolutions.OneDnnEnabled);
        Assert.Contains("conv-check: right with oneDNN off", output);
        var json = JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]).RootElement;
        Assert.Equal(4, json.GetProperty("trials").GetInt32());
        var rows = json.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(6, rows.Count);
        Assert.Equal("[8,4,12,12] -> 8, 3x3, padding 0", rows[0].GetProperty("convolution").GetString());
        Assert.All(rows, r => Assert.Equal(0, r.GetProperty("wrong_onednn_off").GetInt32()));
        Assert.All(rows, r => Assert.InRange(r.GetProperty("wrong_onednn_on").GetInt32(), 0, 4));
    }

    [Fact]
    public void Zero_trials_are_a_usage_error()
    {
        var (code, _, error) = CliConsole.Run("conv-check", "--trials", "0");
        Assert.Equal(2, code);
        Assert.Contains("--trials", error);
    }
}
