using System.Globalization;
using System.Text;

namespace CovariateShift.Cli.Sweeps;

/// <summary>Where one point stands, from its run directory, its state.json and (for Slurm) the queue.</summary>
/// <param name="Point">The point.</param>
/// <param name="Status">Its status.</param>
/// <param name="Summary">summary.json of its run, when the run ended.</param>
/// <param name="State">Its state.json, when it was ever started.</param>
/// <param name="Note">The error's first line (failed), the Slurm job and state, or what was found.</param>
public sealed record PointReport(ManifestPoint Point, PointStatus Status, RunSummary? Summary, PointState? State, string? Note);

/// <summary>The status of every point of a sweep directory and the counts (<c>covshift sweep status DIR</c>).</summary>
public static class SweepStatus
{
    /// <summary>
    /// Reads every point's status. <paramref name="queue"/> maps point index → Slurm state (PENDING, RUNNING, ...) of
    /// the sweep's jobs still in the queue; null when there is no Slurm.
    /// </summary>
    public static IReadOnlyList<PointReport> Read(string sweepDirectory, SweepManifest manifest, IReadOnlyDictionary<int, SlurmTaskState>? queue = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        var dir = Path.GetFullPath(sweepDirectory);
        var reports = new List<PointReport>();
        foreach (var p in manifest.Points)
        {
            var runDir = SweepLayout.RunDirectory(dir, p.Id);
            var pointDir = SweepLayout.PointDirectory(dir, p.Id);
            var summary = RunSummary.TryLoad(runDir);
            var state = PointState.Load(pointDir);
            SlurmTaskState? queued = queue is not null && queue.TryGetValue(p.Index, out var q) ? q : null;
            var queuedStatus = queued is null ? (PointStatus?)null : queued.State is "RUNNING" or "COMPLETING" or "CONFIGURING" ? PointStatus.Running : PointStatus.Pending;
            var queuedNote = queued is null ? null : $"slurm {queued.JobId} {queued.State}";
            PointReport report;
            if (summary is not null)
            {
                report = new PointReport(p, summary.Diverged ? PointStatus.Diverged : PointStatus.Finished, summary, state, summary.Diverged ? string.Create(CultureInfo.InvariantCulture, $"diverged at step {summary.DivergedAtStep}")
                    : summary.StoppedOnForecast ? string.Create(CultureInfo.InvariantCulture, $"stopped by the forecaster after step {summary.Steps} (warning at step {summary.FirstForecastStep})") : null);
            }
            else if (state is null)
            {
                report = new PointReport(p, queuedStatus ?? PointStatus.Pending, null, null, queuedNote);
            }
            else if (state.Status == PointStatus.Running && PointRunner.IsRunning(pointDir))
            {
                report = new PointReport(p, PointStatus.Running, null, state, queuedNote ?? $"pid {state.Pid} on {state.Host}");
            }
            else if (queuedStatus is { } qs)
            {
                report = new PointReport(p, qs, null, state, queuedNote);
            }
            else
            {
                report = state.Status switch
                {
                    PointStatus.Running when state.SlurmJob is not null && queue is null => new PointReport(p, PointStatus.Running, null, state, $"slurm {state.SlurmJob} (squeue not available)"),
                    PointStatus.Running => new PointReport(p, PointStatus.Failed, null, state, "stopped without reporting an exit (killed?); a rerun resumes it"),
                    PointStatus.Interrupted => new PointReport(p, PointStatus.Interrupted, null, state, "interrupted after a checkpoint; a rerun resumes it"),
                    PointStatus.Failed => new PointReport(p, PointStatus.Failed, null, state, state.Error),
                    _ => new PointReport(p, PointStatus.Pending, null, state, $"state.json says {state.Status.ToString().ToLowerInvariant()} but there is no summary.json"),
                };
            }
            reports.Add(report);
        }
        return reports;
    }

    /// <summary>"N points: a finished, b diverged, c failed, d interrupted, e running, f pending".</summary>
    public static string CountLine(IReadOnlyList<PointReport> reports)
    {
        ArgumentNullException.ThrowIfNull(reports);
        int Count(PointStatus s) => reports.Count(r => r.Status == s);
        return string.Create(CultureInfo.InvariantCulture,
            $"{reports.Count} points: {Count(PointStatus.Finished)} finished, {Count(PointStatus.Diverged)} diverged, {Count(PointStatus.Failed)} failed, {Count(PointStatus.Interrupted)} interrupted, {Count(PointStatus.Running)} running, {Count(PointStatus.Pending)} pending");
    }

    /// <summary>A table: index, id, status, final and best test accuracy, steps, note; then the count line.</summary>
    public static string Format(IReadOnlyList<PointReport> reports)
    {
        ArgumentNullException.ThrowIfNull(reports);
        var idWidth = Math.Max(2, reports.Select(r => r.Point.Id.Length).DefaultIfEmpty(2).Max());
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{"#",4}  {"id".PadRight(idWidth)}  {"status",-11}  {"test acc",8}  {"best",6}  {"steps",11}  note\n");
        foreach (var r in reports)
        {
            var s = r.Summary;
            var acc = s?.TestAccuracy is { } a ? a.ToString("F4", CultureInfo.InvariantCulture) : "";
            var best = s?.BestTestAccuracy is { } b ? b.ToString("F4", CultureInfo.InvariantCulture) : "";
            var steps = s is null ? "" : string.Create(CultureInfo.InvariantCulture, $"{s.Steps}/{s.RequestedSteps}");
            sb.Append(CultureInfo.InvariantCulture, $"{r.Point.Index,4}  {r.Point.Id.PadRight(idWidth)}  {r.Status.ToString().ToLowerInvariant(),-11}  {acc,8}  {best,6}  {steps,11}  {r.Note}\n");
        }
        sb.Append(CountLine(reports)).Append('\n');
        return sb.ToString();
    }
}
