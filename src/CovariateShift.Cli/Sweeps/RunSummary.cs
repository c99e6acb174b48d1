using System.Globalization;
using System.Text.Json;
using CovariateShift.Cli.Commands;

namespace CovariateShift.Cli.Sweeps;

/// <summary>
/// What the sweep reads from a run directory's summary.json (written by <c>covshift train</c> when a run ends):
/// steps, accuracies, loss, divergence and wall time. Accepts the camelCase names and their snake_case forms.
/// </summary>
/// <param name="Steps">Steps completed.</param>
/// <param name="RequestedSteps">Steps the run was set to take.</param>
/// <param name="FinalTrainLoss">Mean training loss at the end (NaN when unknown).</param>
/// <param name="TestAccuracy">Final test accuracy.</param>
/// <param name="BestTestAccuracy">Best test accuracy of the run.</param>
/// <param name="DivergedAtStep">Step of the divergence, or null.</param>
/// <param name="WallSeconds">Wall time of the last training call, in seconds.</param>
public sealed record RunSummary(long Steps, long RequestedSteps, double FinalTrainLoss, double? TestAccuracy, double? BestTestAccuracy, long? DivergedAtStep, double? WallSeconds)
{
    /// <summary>Whether the run diverged.</summary>
    public bool Diverged => DivergedAtStep is not null;

    /// <summary>Reads summary.json of <paramref name="runDirectory"/>; null when it is missing or unreadable (a run that did not end).</summary>
    public static RunSummary? TryLoad(string runDirectory)
    {
        var path = Path.Combine(runDirectory, TrainCommand.SummaryFileName);
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) return null;
            return new RunSummary(
                (long)(Number(r, "steps") ?? 0),
                (long)(Number(r, "requestedSteps") ?? 0),
                Number(r, "finalTrainLoss") ?? double.NaN,
                Number(r, "testAccuracy"),
                Number(r, "bestTestAccuracy"),
                Number(r, "divergedAtStep") is { } d ? (long)d : null,
                Seconds(r, "wallTime"));
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static JsonElement? Find(JsonElement obj, string camel)
    {
        if (obj.TryGetProperty(camel, out var v)) return v;
        var snake = string.Concat(camel.Select(c => char.IsUpper(c) ? "_" + char.ToLowerInvariant(c) : c.ToString()));
        return obj.TryGetProperty(snake, out v) ? v : null;
    }

    private static double? Number(JsonElement obj, string name) => Find(obj, name) is { } v
        ? v.ValueKind switch
        {
            JsonValueKind.Number => v.GetDouble(),
            JsonValueKind.String when double.TryParse(v.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
            JsonValueKind.String => v.GetString() switch { "NaN" => double.NaN, "Infinity" => double.PositiveInfinity, "-Infinity" => double.NegativeInfinity, _ => null },
            _ => null,
        }
        : null;

    /// <summary>A TimeSpan ("00:00:04.12") or a number of seconds (also under a "_s"/"Seconds" name).</summary>
    private static double? Seconds(JsonElement obj, string name)
    {
        if (Find(obj, name) is { } v)
        {
            if (v.ValueKind == JsonValueKind.String && TimeSpan.TryParse(v.GetString(), CultureInfo.InvariantCulture, out var t)) return t.TotalSeconds;
            if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        }
        return Number(obj, name + "Seconds") ?? Number(obj, name + "S");
    }
}
