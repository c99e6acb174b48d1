using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CovariateShift.Experiments.Forecasting;

/// <summary>One grid point of the forecast experiment: an MLP and its optimizer settings (every seed of the grid trains it).</summary>
/// <param name="Name">Short name; runs are called <c>Name-sSEED</c>.</param>
/// <param name="Depth">Hidden layers.</param>
/// <param name="Width">Units per hidden layer.</param>
/// <param name="Norm">Normalization (CLI name: none, batch, layer, ...).</param>
/// <param name="Optimizer">sgd, adam or adamw.</param>
/// <param name="LearningRate">Base learning rate.</param>
/// <param name="WarmupSteps">Linear warm-up steps to the base rate (0: none).</param>
/// <param name="Init">Weight init (CLI form: he, xavier, gaussian:0.05, ...).</param>
public sealed record ForecastGridPoint(string Name, int Depth, int Width, string Norm, string Optimizer, double LearningRate, int WarmupSteps, string Init);

/// <summary>
/// The forecast experiment's grid (<c>models/grids/forecast-grid.json</c>): the data, the run length and the grid points;
/// every point trains once per seed. Runs with a seed in <see cref="TuningSeeds"/> choose the parameters (of the
/// forecaster and of the loss-spike baseline); runs with a seed in <see cref="HeldOutSeeds"/> evaluate them.
/// </summary>
public sealed record ForecastGrid
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>Training steps per run.</summary>
    public int Steps { get; init; } = 250;

    /// <summary>Mini-batch size.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Training examples used (the first N of Fashion-MNIST).</summary>
    public int TrainLimit { get; init; } = 2000;

    /// <summary>Test examples used.</summary>
    public int TestLimit { get; init; } = 200;

    /// <summary>The monitor records every this many steps (the forecaster sees only recorded steps; losses are logged every step).</summary>
    public int RecordEvery { get; init; } = 5;

    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>Seeds of the tuning runs.</summary>
    public IReadOnlyList<int> TuningSeeds { get; init; } = [0, 1];

    /// <summary>Seeds of the held-out (evaluation) runs.</summary>
    public IReadOnlyList<int> HeldOutSeeds { get; init; } = [2, 3];

    /// <summary>The grid points.</summary>
    public IReadOnlyList<ForecastGridPoint> Points { get; init; } = [];

    /// <summary>Every (point, seed, run name), tuning seeds first.</summary>
    public IEnumerable<(ForecastGridPoint Point, int Seed, string Run)> Runs() =>
        from seed in TuningSeeds.Concat(HeldOutSeeds)
        from p in Points
        select (p, seed, string.Create(CultureInfo.InvariantCulture, $"{p.Name}-s{seed}"));

    /// <summary>Reads a grid file.</summary>
    /// <exception cref="InvalidDataException">Not a grid (the message names the file and the problem).</exception>
    public static ForecastGrid Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = File.OpenRead(path);
        return Read(stream, $"'{path}'");
    }

    /// <summary>Reads a grid from <paramref name="stream"/> (UTF-8 JSON); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not a grid (the message names the source and the problem).</exception>
    public static ForecastGrid Read(Stream stream, string source)
    {
        ArgumentNullException.ThrowIfNull(stream);
        try
        {
            var grid = JsonSerializer.Deserialize<ForecastGrid>(stream, Json) ?? throw new InvalidDataException("empty");
            if (grid.Points.Count == 0 || grid.TuningSeeds.Count == 0 || grid.HeldOutSeeds.Count == 0 || grid.TuningSeeds.Intersect(grid.HeldOutSeeds).Any())
                throw new InvalidDataException("expected points, tuning_seeds and held_out_seeds, with no seed in both");
            return grid;
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or NotSupportedException)
        {
            throw new InvalidDataException($"{source} is not a forecast grid: {e.Message}", e);
        }
    }

    /// <summary>The grid as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);
}
