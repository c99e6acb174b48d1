using Serilog;

namespace CovariateShift.Experiments;

/// <summary>Settings shared by the experiments; null values mean "the experiment's default".</summary>
public sealed record ExperimentSettings
{
    /// <summary>Directory that receives one sub-directory per run, report.html, figures and results.md.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Directory of the MNIST-format files.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Data set name shown on the page ("fashion-mnist" or "mnist").</summary>
    public string Dataset { get; init; } = "fashion-mnist";

    /// <summary>Training steps per run.</summary>
    public int? Steps { get; init; }

    /// <summary>SGD learning rate (not used by lr-sweep, which has <see cref="LearningRates"/>).</summary>
    public double? LearningRate { get; init; }

    /// <summary>Mini-batch size (not used by batch-sweep, which has <see cref="BatchSizes"/>).</summary>
    public int? BatchSize { get; init; }

    /// <summary>Normalizations to compare (CLI names); each experiment has its own default list.</summary>
    public IReadOnlyList<string>? Norms { get; init; }

    /// <summary>lr-sweep: the learning-rate grid.</summary>
    public IReadOnlyList<double>? LearningRates { get; init; }

    /// <summary>depth-sweep: the depths.</summary>
    public IReadOnlyList<int>? Depths { get; init; }

    /// <summary>batch-sweep: the batch sizes.</summary>
    public IReadOnlyList<int>? BatchSizes { get; init; }

    /// <summary>Hidden width (MLP) or base width (CNN).</summary>
    public int? Width { get; init; }

    /// <summary>Hidden layers of the MLP (lr-sweep, ics).</summary>
    public int? Depth { get; init; }

    /// <summary>Use only the first N training images.</summary>
    public int? TrainLimit { get; init; }

    /// <summary>Evaluate on only the first N test images.</summary>
    public int? TestLimit { get; init; }

    /// <summary>Seed of every run.</summary>
    public int Seed { get; init; }

    /// <summary>Creates the logger of a run (it writes log.clef in the run directory); null: no log files.</summary>
    public Func<string, ILogger>? LoggerFactory { get; init; }

    /// <summary>forecast: the grid file (JSON, as models/grids/forecast-grid.json); null: the shipped grid.</summary>
    public string? ForecastGrid { get; init; }

    /// <summary>Where progress lines go.</summary>
    public TextWriter Out { get; init; } = TextWriter.Null;
}

/// <summary>What an experiment wrote.</summary>
/// <param name="Name">Experiment name.</param>
/// <param name="ResultsTable">The results table (markdown), also written to results.md.</param>
/// <param name="ReportPath">The HTML report.</param>
/// <param name="Figures">PNG figures written.</param>
/// <param name="Elapsed">Wall time.</param>
public sealed record ExperimentResult(string Name, string ResultsTable, string ReportPath, IReadOnlyList<string> Figures, TimeSpan Elapsed);
