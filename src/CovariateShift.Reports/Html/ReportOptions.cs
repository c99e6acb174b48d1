namespace CovariateShift.Reports.Html;

/// <summary>How <see cref="HtmlReport"/> builds a page.</summary>
public sealed record ReportOptions
{
    /// <summary>Page title. Default "CovariateShift report".</summary>
    public string Title { get; init; } = "CovariateShift report";

    /// <summary>At most this many recorded steps per run go into the heatmaps and line charts; more are thinned to
    /// evenly spaced records (the page says so). At least 2. Default 500.</summary>
    public int MaxColumns { get; init; } = 500;

    /// <summary>At most this many recorded steps per run go into the histogram views. At least 2. Default 200.</summary>
    public int MaxHistogramColumns { get; init; } = 200;

    /// <summary>Training-loss curves with more points are averaged in equal step buckets down to this many. At least 2. Default 2000.</summary>
    public int MaxCurvePoints { get; init; } = 2000;

    /// <summary>Layer shown first in the per-layer charts (percentiles, histogram evolution, gradients). Null: the last hidden activation.</summary>
    public string? DefaultLayer { get; init; }

    /// <summary>Extra lines shown at the top of the page (e.g. what an experiment ran).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value.</summary>
    public void Validate()
    {
        if (MaxColumns < 2) throw new ArgumentOutOfRangeException(nameof(MaxColumns), MaxColumns, $"MaxColumns must be at least 2; got {MaxColumns}.");
        if (MaxHistogramColumns < 2) throw new ArgumentOutOfRangeException(nameof(MaxHistogramColumns), MaxHistogramColumns, $"MaxHistogramColumns must be at least 2; got {MaxHistogramColumns}.");
        if (MaxCurvePoints < 2) throw new ArgumentOutOfRangeException(nameof(MaxCurvePoints), MaxCurvePoints, $"MaxCurvePoints must be at least 2; got {MaxCurvePoints}.");
    }
}
