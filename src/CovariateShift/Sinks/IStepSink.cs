using CovariateShift.Records;

namespace CovariateShift.Sinks;

/// <summary>Receives every <see cref="StepRecord"/> the monitor produces, in step order. Disposed with the monitor.</summary>
public interface IStepSink : IDisposable
{
    /// <summary>Writes one recorded step.</summary>
    void Write(StepRecord record);
}
