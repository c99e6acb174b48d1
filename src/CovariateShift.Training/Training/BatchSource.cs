using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>
/// The mini-batch of every step: epoch e is shuffled by a generator seeded from (seed, e) (so a resumed run draws the
/// same batches), the last partial batch dropped; the training set lives on the device once when it fits within
/// <see cref="TrainerOptions.DeviceDataLimitBytes"/>, otherwise every batch is copied. Owns its tensors.
/// </summary>
internal sealed class BatchSource : IDisposable
{
    private readonly Tensor _images;
    private readonly Tensor _labels;
    private readonly Device _device;
    private readonly long _seed;
    private readonly int _batchSize;
    private readonly long _stepsPerEpoch;
    private readonly long _count;
    private long _epochOfOrder = -1;
    private Tensor? _order;

    public BatchSource(ImageDataset train, Device device, TrainerOptions options, long stepsPerEpoch)
    {
        long bytes = train.Images.NumberOfElements * train.Images.ElementSize + train.Labels.NumberOfElements * 8;
        Resident = device.type != DeviceType.CPU && bytes <= options.DeviceDataLimitBytes;
        _images = Resident ? train.Images.to(device) : train.Images.alias();
        _labels = Resident ? train.Labels.to(device) : train.Labels.alias();
        _device = device;
        _seed = options.Seed;
        _batchSize = options.BatchSize;
        _stepsPerEpoch = stepsPerEpoch;
        _count = train.Count;
    }

    /// <summary>The training set was copied to the device once.</summary>
    public bool Resident { get; }

    /// <summary>The images and labels of step <paramref name="step"/>, on the device (in the caller's dispose scope).</summary>
    public (Tensor Images, Tensor Labels) Get(long step)
    {
        long epoch = step / _stepsPerEpoch;
        if (epoch != _epochOfOrder)
        {
            _order?.Dispose();
            using var generator = new Generator(TrainingState.ShuffleSeed(_seed, epoch));
            using var cpuOrder = randperm(_count, generator: generator);
            _order = (Resident ? cpuOrder.to(_device) : cpuOrder.alias()).DetachFromDisposeScope();   // kept across the epoch's steps
            _epochOfOrder = epoch;
        }
        var idx = _order!.narrow(0, step % _stepsPerEpoch * _batchSize, _batchSize);
        return (_images.index_select(0, idx).to(_device), _labels.index_select(0, idx).to(_device));
    }

    public void Dispose()
    {
        _order?.Dispose();
        _images.Dispose();
        _labels.Dispose();
    }
}
