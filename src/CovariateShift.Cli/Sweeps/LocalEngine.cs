using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace CovariateShift.Cli.Sweeps;

/// <summary>
/// Runs sweep points on this machine: one <c>covshift sweep run-point</c> process per point (each trains its point
/// with <c>covshift train</c>), one after another or <c>parallel</c> at once, their output in points/&lt;id&gt;/output.log.
/// Prints one line per point started and ended (done / total, the point, its result). A cancellation (Ctrl+C, SIGTERM)
/// starts no further point and passes SIGTERM to the running ones, which save a checkpoint and stop.
/// </summary>
public static class LocalEngine
{
    /// <summary>Runs the points <paramref name="indices"/> of the sweep in <paramref name="sweepDirectory"/>; returns how many were started.</summary>
    public static int Run(string sweepDirectory, SweepManifest manifest, IReadOnlyList<int> indices, int parallel, int alreadyDone, TextWriter output, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(output);
        if (parallel < 1) throw new ArgumentException($"--parallel must be at least 1; got {parallel}.");
        var dir = Path.GetFullPath(sweepDirectory);
        var command = CovshiftExecutable.Command();
        var queue = new Queue<int>(indices);
        var running = new List<Worker>();
        int total = manifest.Points.Count, done = alreadyDone, started = 0;
        using var forward = cancel.Register(() =>
        {
            lock (running)
            {
                foreach (var w in running) Terminate(w.Process);
            }
        });
        while (queue.Count > 0 || running.Count > 0)
        {
            while (running.Count < parallel && queue.Count > 0 && !cancel.IsCancellationRequested)
            {
                var point = manifest.Points[queue.Dequeue()];
                var worker = Worker.Start(command, dir, point);
                lock (running) running.Add(worker);
                started++;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{done}/{total}] started {point.Id}{(running.Count > 1 ? $" ({running.Count} running)" : "")}; log: {worker.LogPath}"));
            }
            if (running.Count == 0) break;
            var finished = Task.WaitAny([.. running.Select(w => w.Exited)], CancellationToken.None);
            var w = running[finished];
            lock (running) running.RemoveAt(finished);
            var code = w.Finish();
            var pointDir = SweepLayout.PointDirectory(dir, w.Point.Id);
            var state = PointState.Load(pointDir);
            if (state?.Status == PointStatus.Running && PointRunner.IsRunning(pointDir))
            {
                output.WriteLine($"[{done}/{total}] {w.Point.Id}: running in another process (pid {state.Pid} on {state.Host}); left to it");
                continue;
            }
            if (state is null || state.Status == PointStatus.Running)
            {
                // The process ended without recording its outcome (killed, or it failed before it could start the point).
                state = (state ?? new PointState(PointStatus.Failed, 1, null, null, 0, null, null, null, Environment.MachineName, null)) with
                {
                    Status = PointStatus.Failed,
                    ExitCode = code,
                    Ended = DateTimeOffset.UtcNow,
                    Error = w.LastLine() ?? $"the point's process exited with code {code} without reporting",
                };
                state.Save(SweepLayout.CreateBelow(dir, SweepLayout.PointDirectory(dir, w.Point.Id)));
            }
            if (state.Status is PointStatus.Finished or PointStatus.Diverged) done++;
            output.WriteLine($"[{done}/{total}] {w.Point.Id}: {Describe(dir, w.Point, state, w.Clock.Elapsed)}");
        }
        return started;
    }

    private static string Describe(string dir, ManifestPoint point, PointState state, TimeSpan elapsed)
    {
        var s = RunSummary.TryLoad(SweepLayout.RunDirectory(dir, point.Id));
        var time = string.Create(CultureInfo.InvariantCulture, $"{elapsed.TotalSeconds:F1} s");
        return state.Status switch
        {
            PointStatus.Finished or PointStatus.Diverged when s is not null => string.Create(CultureInfo.InvariantCulture,
                $"{SweepResults.StatusName(state.Status)}{(s.Diverged ? $" at step {s.DivergedAtStep}" : "")}{(s.StoppedOnForecast ? $" (stopped by the forecaster after step {s.Steps}, warning at step {s.FirstForecastStep})" : "")} in {time}, test accuracy {s.TestAccuracy:F4} (best {s.BestTestAccuracy:F4}), train loss {s.FinalTrainLoss:F4}"),
            PointStatus.Interrupted => $"interrupted after {time} (checkpoint saved; rerun the sweep to resume)",
            _ => $"{SweepResults.StatusName(state.Status)} after {time}: {state.Error}",
        };
    }

    /// <summary>Sends SIGTERM (the trainer saves a checkpoint and stops) to a point's process.</summary>
    private static void Terminate(Process process)
    {
        try
        {
            if (!process.HasExited && (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())) _ = Kill(process.Id, 15);
        }
        catch (InvalidOperationException)
        {
            // it ended meanwhile
        }
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code in this project; kill(2) takes and returns plain ints.
    [DllImport("libc", EntryPoint = "kill")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Kill(int pid, int signal);
#pragma warning restore SYSLIB1054

    private sealed class Worker
    {
        private readonly StreamWriter _log;
        private readonly object _gate = new();
        private string? _last;

        private Worker(ManifestPoint point, Process process, StreamWriter log, string logPath)
        {
            Point = point;
            Process = process;
            _log = log;
            LogPath = logPath;
            Exited = process.WaitForExitAsync();
        }

        public ManifestPoint Point { get; }

        public Process Process { get; }

        public string LogPath { get; }

        public Task Exited { get; }

        public Stopwatch Clock { get; } = Stopwatch.StartNew();

        public static Worker Start(IReadOnlyList<string> command, string dir, ManifestPoint point)
        {
            var pointDir = SweepLayout.CreateBelow(dir, SweepLayout.PointDirectory(dir, point.Id));
            var logPath = Path.Combine(pointDir, PointState.OutputFileName);
            Training.Runtime.SafeFile.RefuseSymlink(logPath);
            var log = new StreamWriter(new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
            var info = new ProcessStartInfo(command[0])
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = false,
            };
            foreach (var a in command.Skip(1)) info.ArgumentList.Add(a);
            foreach (var a in new[] { "sweep", "run-point", dir, "--index", point.Index.ToString(CultureInfo.InvariantCulture) }) info.ArgumentList.Add(a);
            Process process;
            try
            {
                process = Process.Start(info) ?? throw new InvalidOperationException($"Cannot start {command[0]}.");
            }
            catch
            {
                log.Dispose();
                throw;
            }
            var worker = new Worker(point, process, log, logPath);
            process.OutputDataReceived += (_, e) => worker.Line(e.Data);
            process.ErrorDataReceived += (_, e) => worker.Line(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return worker;
        }

        private void Line(string? text)
        {
            if (text is null) return;
            lock (_gate)
            {
                _log.WriteLine(text);
                if (text.Trim().Length > 0) _last = text.Trim();
            }
        }

        public string? LastLine()
        {
            lock (_gate) return _last;
        }

        /// <summary>Waits for the output to drain, closes the log and returns the exit code.</summary>
        public int Finish()
        {
            Process.WaitForExit();
            var code = Process.ExitCode;
            lock (_gate) _log.Dispose();
            Process.Dispose();
            return code;
        }
    }
}
