namespace CovariateShift.Cli.Tests;

/// <summary><c>covshift verify</c> in-process; redirects the console, so it shares the train tests' serial collection.</summary>
[Collection(nameof(TrainCommandTests))]
public sealed class VerifyCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args) => CliConsole.Run(args);

    [Fact]
    [Trait("Category", "Slow")]
    public void Verify_on_the_cpu_passes_every_check_and_prints_the_table_and_json()
    {
        var (code, output, error) = Run("verify", "--device", "cpu", "--json");
        Assert.True(code == 0, error + output);
        Assert.Contains("| conv | channel variance |", output, StringComparison.Ordinal);
        Assert.Contains("verify: all ", output, StringComparison.Ordinal);
        Assert.DoesNotContain("FAIL", output, StringComparison.Ordinal);
        var json = System.Text.Json.JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]);
        Assert.True(json.RootElement.GetProperty("passed").GetBoolean());
        Assert.Equal("cpu", json.RootElement.GetProperty("device").GetString());
    }

    [Fact]
    public void An_unknown_device_is_a_usage_error()
    {
        var (code, _, error) = Run("verify", "--device", "tpu");
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", error, StringComparison.Ordinal);
    }
}
