using System.Globalization;
using CovariateShift.Training.Runtime;
using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>
/// Writes the run's training checkpoints: <c>checkpoints/last</c> (atomically) and, with <c>keep</c> &gt; 0, a copy per
/// epoch (<c>epoch-NNNN</c>) of which the newest <c>keep</c> are kept.
/// </summary>
internal sealed class CheckpointWriter(string directory, int keep)
{
    /// <summary>Path of <c>last</c>.</summary>
    public string LastPath { get; } = Path.Combine(directory, TrainerOptions.LastCheckpointName);

    public void Save(nn.Module model, TorchSharp.Modules.OptimizerHelper optimizer, TrainingState state, long? epoch = null)
    {
        Directory.CreateDirectory(directory);
        RunCheckpoint.Save(LastPath, new RunCheckpoint.Contents(state, Bytes(w => model.save(w)), Bytes(w => optimizer.save_state_dict(w))));
        if (epoch is { } e && keep > 0)
        {
            var bytes = File.ReadAllBytes(LastPath);
            SafeFile.WriteAtomic(Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"epoch-{e:D4}")), s => s.Write(bytes));
            foreach (var old in Directory.GetFiles(directory, "epoch-*").Order(StringComparer.Ordinal).SkipLast(keep)) File.Delete(old);
        }
    }

    private static byte[] Bytes(Action<BinaryWriter> save)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) save(w);
        return ms.ToArray();
    }
}
