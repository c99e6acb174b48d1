using System.Collections.Immutable;
using CovariateShift.Records;

namespace CovariateShift.Schema;

/// <summary>What <see cref="MetricsReader.Read(string)"/> found in a metrics file.</summary>
/// <param name="Steps">One record per recorded step, in file order, with its layer records (the file stores no
/// anomalies: <see cref="StepRecord.Anomalies"/> is empty).</param>
/// <param name="SkippedLines">Lines that were skipped: not JSON, not a metrics line, or cut off (no final newline).</param>
public sealed record MetricsFileContents(IReadOnlyList<StepRecord> Steps, int SkippedLines)
{
    /// <summary>Every step, as an immutable array.</summary>
    public IReadOnlyList<StepRecord> Steps { get; init => field = [.. value]; } = ImmutableArray.CreateRange(Steps);

    /// <summary>Every layer record of every step, in file order.</summary>
    public IReadOnlyList<LayerRecord> Layers => [.. Steps.SelectMany(s => s.Layers)];
}
