using System.Globalization;
using System.Text.Json;
using CovariateShift.Training.Runtime;
using TorchSharp;

namespace CovariateShift.Training.Training;

/// <summary>
/// training.jsonl, its one writer (one whole line per logged training step and per evaluation, each with a
/// <c>version</c>) and, optionally, the TensorBoard
/// curves train/loss, train/lr, test/loss, test/accuracy.
/// </summary>
internal sealed class TrainingLog : IDisposable
{
    /// <summary>The <c>version</c> field of every line (1: step, epoch, split, loss, lr, examples_per_s / accuracy).</summary>
    public const int LineVersion = 1;

    private readonly LineFile _file;
    private readonly TorchSharp.Modules.SummaryWriter? _tensorBoard;

    public TrainingLog(string path, string? tensorBoardDirectory)
    {
        _file = new LineFile(path);
        if (tensorBoardDirectory is not null)
        {
            Directory.CreateDirectory(tensorBoardDirectory);
            _tensorBoard = torch.utils.tensorboard.SummaryWriter(tensorBoardDirectory, filename_suffix: ".training");
        }
    }

    public string Path => _file.Path;

    public void Train(long step, double epoch, double loss, double learningRate, double examplesPerSecond)
    {
        _file.Append(Line(w =>
        {
            w.WriteNumber("step", step);
            w.WriteNumber("epoch", epoch);
            w.WriteString("split", "train");
            Number(w, "loss", loss);
            w.WriteNumber("lr", learningRate);
            Number(w, "examples_per_s", examplesPerSecond);
        }));
        _tensorBoard?.add_scalar("train/loss", (float)loss, checked((int)step));
        _tensorBoard?.add_scalar("train/lr", (float)learningRate, checked((int)step));
    }

    public void Test(long step, double epoch, double loss, double accuracy)
    {
        _file.Append(Line(w =>
        {
            w.WriteNumber("step", step);
            w.WriteNumber("epoch", epoch);
            w.WriteString("split", "test");
            Number(w, "loss", loss);
            w.WriteNumber("accuracy", accuracy);
        }));
        _tensorBoard?.add_scalar("test/loss", (float)loss, checked((int)step));
        _tensorBoard?.add_scalar("test/accuracy", (float)accuracy, checked((int)step));
    }

    public void Flush()
    {
        _file.Flush();
    }

    public void Dispose()
    {
        _file.Dispose();
    }

    private static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteString(name, value.ToString(CultureInfo.InvariantCulture));
    }

    private static byte[] Line(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("version", LineVersion);
            body(w);
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }
}
