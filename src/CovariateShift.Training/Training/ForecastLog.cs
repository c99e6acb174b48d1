using CovariateShift.Forecast;
using CovariateShift.Records;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Training.Training;

/// <summary>
/// Appends the monitor's forecast warnings (<see cref="AnomalyKind.DivergenceAhead"/> anomalies) to the run's
/// <c>forecast.jsonl</c> through <see cref="ForecastFile.Line"/> and remembers the first warning's step; a resumed run
/// starts with the warnings already in the file (those before its checkpoint).
/// </summary>
internal sealed class ForecastLog : IObserver<StepRecord>, IDisposable
{
    private readonly LineFile _file;

    public ForecastLog(string path)
    {
        FirstStep = ForecastFile.Read(path).Select(f => (long?)f.Step).FirstOrDefault();
        _file = new LineFile(path);
    }

    /// <summary>The run's step of the first warning, or null.</summary>
    public long? FirstStep { get; private set; }

    /// <summary>The first write failure (the trainer re-throws it after the step, naming the file).</summary>
    public Exception? Failure { get; private set; }

    public void OnNext(StepRecord record)
    {
        if (Failure is not null) return;
        try
        {
            foreach (var a in record.Anomalies)
            {
                if (a.Forecast is not { } f) continue;
                FirstStep ??= a.Step;
                _file.Append(ForecastFile.Line(f with { Step = a.Step }));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Failure = new IOException($"Cannot append to '{_file.Path}': {e.Message}", e);
        }
    }

    public void OnError(Exception error)
    {
    }

    public void OnCompleted()
    {
    }

    public void Dispose() => _file.Dispose();
}
