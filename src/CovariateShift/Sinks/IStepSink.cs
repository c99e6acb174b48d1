using CovariateShift.Records;

namespace CovariateShift.Sinks;

/// <summary>
/// Receives every <see cref="StepRecord"/> the monitor produces, in step order. Plug one in through
/// <see cref="MonitorOptions.Sinks"/> (the built-ins come from <see cref="StepSinks"/>); the monitor owns it and
/// disposes it. A sink that throws is reported once and disabled (unless <see cref="MonitorOptions.StrictSinks"/>).
/// </summary>
public interface IStepSink : IDisposable
{
    /// <summary>What the sink writes to (a file or directory), named in failure messages. Default: the type name.</summary>
    string Target => GetType().Name;

    /// <summary>Writes one recorded step.</summary>
    void Write(StepRecord record);
}
