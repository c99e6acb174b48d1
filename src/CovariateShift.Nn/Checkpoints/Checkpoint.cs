using System.Collections;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Checkpoints;

/// <summary>
/// Saves and loads a module's state dict (parameters and buffers, with their dotted names) in the format given by
/// the file extension: <c>.safetensors</c>, <c>.pt</c>/<c>.pth</c> (PyTorch state_dict) or <c>.bin</c>/<c>.dat</c>
/// (TorchSharp). Loading reads the whole file into memory first and checks it against the module — same names,
/// shapes and dtypes — before copying anything, so a mismatched file leaves the module untouched.
/// </summary>
public static class Checkpoint
{
    private static readonly (string Extension, CheckpointFormat Format)[] Extensions =
    [
        (".safetensors", CheckpointFormat.SafeTensors),
        (".pt", CheckpointFormat.PyTorch),
        (".pth", CheckpointFormat.PyTorch),
        (".bin", CheckpointFormat.TorchSharp),
        (".dat", CheckpointFormat.TorchSharp),
    ];

    /// <summary>The format for <paramref name="path"/>'s extension (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown extension; the message lists the supported ones.</exception>
    public static CheckpointFormat FormatOf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var extension = Path.GetExtension(path);
        foreach (var (candidate, format) in Extensions)
        {
            if (string.Equals(candidate, extension, StringComparison.OrdinalIgnoreCase))
            {
                return format;
            }
        }

        throw new ArgumentException(
            $"Cannot tell the checkpoint format of '{path}' from its extension '{extension}'. Use {string.Join(", ", Extensions.Select(e => e.Extension))}.");
    }

    /// <summary>Writes <paramref name="module"/>'s state dict to <paramref name="path"/> in the format of its extension.</summary>
    /// <exception cref="ArgumentException">Unknown extension.</exception>
    public static void Save(nn.Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        switch (FormatOf(path))
        {
            case CheckpointFormat.SafeTensors:
                module.save_safetensors(path);
                break;
            case CheckpointFormat.PyTorch:
                module.save_py(path);
                break;
            default:
                module.save(path);
                break;
        }
    }

    /// <summary>
    /// Loads the state dict in <paramref name="path"/> into <paramref name="module"/> (on whatever device the module is).
    /// </summary>
    /// <exception cref="ArgumentException">Unknown extension.</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">
    /// The file cannot be read in its format, or it does not fit the module: the message lists every missing or
    /// unexpected entry and, for every entry whose shape or dtype differs, the name, the shape in the file and the
    /// shape the model expects.
    /// </exception>
    public static void Load(nn.Module module, string path)
    {
        ArgumentNullException.ThrowIfNull(module);
        var format = FormatOf(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        }

        using var scope = NewDisposeScope();
        var loaded = Read(path, format);
        var expected = module.state_dict();
        var problems = new List<string>();
        foreach (var (name, target) in expected)
        {
            if (!loaded.TryGetValue(name, out var source))
            {
                problems.Add($"'{name}' ({InputChecks.FormatShape(target.shape)}) is missing from the file");
            }
            else if (!source.shape.SequenceEqual(target.shape))
            {
                problems.Add($"'{name}' has shape {InputChecks.FormatShape(source.shape)} in the file but the model expects {InputChecks.FormatShape(target.shape)}");
            }
            else if (source.dtype != target.dtype)
            {
                problems.Add($"'{name}' has dtype {source.dtype} in the file but the model expects {target.dtype}");
            }
        }

        problems.AddRange(loaded.Keys.Where(name => !expected.ContainsKey(name)).Select(name => $"'{name}' in the file is not in the model"));
        if (problems.Count > 0)
        {
            throw new InvalidDataException(
                $"Checkpoint '{path}' does not fit the model ({problems.Count} problem(s)):{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", problems));
        }

        module.load_state_dict(loaded, strict: true);
    }

    /// <summary>Reads every tensor of the file into CPU memory, keyed by its state-dict name.</summary>
    private static Dictionary<string, Tensor> Read(string path, CheckpointFormat format)
    {
        try
        {
            return format switch
            {
                CheckpointFormat.SafeTensors => Safetensors.LoadStateDict(path),
                CheckpointFormat.PyTorch => ToDictionary(PyTorchUnpickler.UnpickleStateDict(path)),
                _ => ReadTorchSharp(path),
            };
        }
        // TorchSharp.PyBridge's unpickler reports pickle features it does not support with NotImplementedException:
        // for the user that is an unreadable file like any other, so it is caught here too.
        catch (Exception ex) when (ex is IOException or FormatException or ArgumentException or InvalidOperationException or InvalidCastException or NotImplementedException or System.Text.Json.JsonException)
        {
            throw new InvalidDataException($"Checkpoint '{path}' could not be read as {format}: {ex.Message}", ex);
        }
    }

    private static Dictionary<string, Tensor> ToDictionary(Hashtable table)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (DictionaryEntry entry in table)
        {
            result.Add((string)entry.Key, (Tensor)entry.Value!);
        }

        return result;
    }

    /// <summary>
    /// TorchSharp's format (written by <c>Module.save</c>): a LEB128 entry count, then per entry the name (a .NET
    /// length-prefixed string) and the tensor (dtype, rank, dims, raw bytes) as read by TensorExtensionMethods.Load.
    /// </summary>
    private static Dictionary<string, Tensor> ReadTorchSharp(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        var count = reader.Read7BitEncodedInt64();
        var result = new Dictionary<string, Tensor>();
        for (long i = 0; i < count; i++)
        {
            var name = reader.ReadString();
            result[name] = TensorExtensionMethods.Load(reader);
        }

        if (reader.BaseStream.Position != reader.BaseStream.Length)
        {
            throw new InvalidDataException($"{reader.BaseStream.Length - reader.BaseStream.Position} unread bytes after the {count} entries.");
        }

        return result;
    }
}
