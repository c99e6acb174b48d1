namespace CovariateShift.Training.FineTuning;

/// <summary>What batch normalization does while fine-tuning (<c>--bn-mode</c>). Other normalization layers are unaffected.</summary>
public enum BatchNormMode
{
    /// <summary><c>train</c>: batch statistics in training, running statistics keep updating (ordinary training).</summary>
    Train,

    /// <summary><c>frozen</c>: every BatchNorm layer stays in evaluation mode: it normalizes with the source running statistics, which stay unchanged.</summary>
    Frozen,

    /// <summary><c>recalibrate</c>: before the first step the running statistics are recomputed on the target training data (AdaBN: a cumulative average over one pass), then training as <see cref="Train"/>.</summary>
    Recalibrate,
}

/// <summary>CLI names of <see cref="BatchNormMode"/>.</summary>
public static class BatchNormModes
{
    /// <summary>train, frozen, recalibrate.</summary>
    public static IReadOnlyList<string> CliNames { get; } = ["train", "frozen", "recalibrate"];

    /// <summary>Parses a CLI name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the valid ones.</exception>
    public static BatchNormMode Parse(string text) => text?.Trim().ToLowerInvariant() switch
    {
        "train" => BatchNormMode.Train,
        "frozen" => BatchNormMode.Frozen,
        "recalibrate" => BatchNormMode.Recalibrate,
        _ => throw new ArgumentException($"--bn-mode '{text}' is not valid; expected one of {string.Join(", ", CliNames)}."),
    };

    /// <summary>The CLI name.</summary>
    public static string ToCliName(this BatchNormMode mode) => CliNames[(int)mode];
}
