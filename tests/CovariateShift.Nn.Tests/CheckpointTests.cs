using System.IO.Compression;
using System.Text;
using System.Text.Json;
using CovariateShift.Nn.Checkpoints;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>Checkpoint round trips in all three formats, and mismatches reported with names and shapes.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class CheckpointTests
{
    public static TheoryData<string, string> Formats()
    {
        var data = new TheoryData<string, string>();
        foreach (var extension in new[] { ".bin", ".pt", ".safetensors" })
        {
            data.Add(extension, "cnn-batch");
            data.Add(extension, "mlp-batch-renorm");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void RoundTripReproducesTheStateAndTheEvalOutputExactly(string extension, string model)
    {
        using var directory = new TempDirectory();
        var path = directory.File("model" + extension);
        var spec = model == "cnn-batch"
            ? ModelMatrixTests.Spec("cnn", NormKind.Batch, [1, 28, 28])
            : ModelMatrixTests.Spec("mlp", NormKind.BatchRenorm, [1, 28, 28]);
        using var scope = NewDisposeScope();
        manual_seed(1);
        using var original = ModelZoo.Create(spec);
        for (var step = 0; step < 3; step++)
        {
            original.call(randn(4, 1, 28, 28)); // moves the running statistics and step counters off their initial values
        }

        Checkpoint.Save(original, path);
        manual_seed(2);
        using var restored = ModelZoo.Create(spec);
        Checkpoint.Load(restored, path);

        var expectedState = original.state_dict();
        var restoredState = restored.state_dict();
        Assert.Equal(expectedState.Keys.Order(), restoredState.Keys.Order());
        Assert.All(expectedState, entry => Assert.True(entry.Value.equal(restoredState[entry.Key]).all().item<bool>(), $"{entry.Key} differs after the round trip"));
        Assert.Contains(expectedState, entry => entry.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal) && entry.Value.item<long>() == 3);

        original.eval();
        restored.eval();
        var input = randn(3, 1, 28, 28);
        Assert.True(original.call(input).equal(restored.call(input)).all().item<bool>(), "eval outputs differ after the round trip");
    }

    [Theory]
    [InlineData(".bin")]
    [InlineData(".pt")]
    [InlineData(".safetensors")]
    public void AShapeMismatchNamesTheParameterAndBothShapesAndLoadsNothing(string extension)
    {
        using var directory = new TempDirectory();
        var path = directory.File("wide" + extension);
        var wide = ModelMatrixTests.Spec("mlp", NormKind.Batch, [1, 28, 28]) with { Width = 16 };
        using (var model = ModelZoo.Create(wide))
        {
            Checkpoint.Save(model, path);
        }

        using var narrow = ModelZoo.Create(wide with { Width = 8 });
        var before = narrow.state_dict().ToDictionary(e => e.Key, e => e.Value.clone());
        var ex = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(narrow, path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("'layers.0.linear.weight' has shape [16, 784] in the file but the model expects [8, 784]", ex.Message);
        Assert.Contains("'layers.1.linear.weight' has shape [16, 16] in the file but the model expects [8, 8]", ex.Message);
        Assert.Contains("'head.weight' has shape [10, 16] in the file but the model expects [10, 8]", ex.Message);
        Assert.All(narrow.state_dict(), entry => Assert.True(entry.Value.equal(before[entry.Key]).all().item<bool>(), $"{entry.Key} was modified"));
    }

    [Fact]
    public void MissingAndUnexpectedEntriesAreListed()
    {
        using var directory = new TempDirectory();
        var path = directory.File("batch.safetensors");
        using (var model = ModelZoo.Create(ModelMatrixTests.Spec("mlp", NormKind.Batch, [1, 28, 28])))
        {
            Checkpoint.Save(model, path);
        }

        using var renorm = ModelZoo.Create(ModelMatrixTests.Spec("mlp", NormKind.BatchRenorm, [1, 28, 28]));
        var ex = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(renorm, path));
        Assert.Contains("'layers.0.norm.running_std' ([16]) is missing from the file", ex.Message);
        Assert.Contains("'layers.0.norm.running_var' in the file is not in the model", ex.Message);
    }

    [Fact]
    public void FilesAreInTheAdvertisedFormats()
    {
        using var directory = new TempDirectory();
        using var model = ModelZoo.Create(ModelMatrixTests.Spec("mlp", NormKind.Batch, [1, 28, 28]));
        var state = model.state_dict();

        // safetensors: 8-byte little-endian header length, then a JSON header with dtype and shape per tensor.
        var safetensors = directory.File("m.safetensors");
        Checkpoint.Save(model, safetensors);
        var bytes = File.ReadAllBytes(safetensors);
        var headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, headerLength));
        foreach (var (name, tensor) in state)
        {
            var entry = header.RootElement.GetProperty(name);
            Assert.Equal(tensor.shape, entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
        }

        // PyTorch: the zip layout torch.save writes, with the pickled state dict in data.pkl.
        var pytorch = directory.File("m.pth");
        Checkpoint.Save(model, pytorch);
        using (var zip = ZipFile.OpenRead(pytorch))
        {
            Assert.Contains(zip.Entries, e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal));
        }

        Assert.Equal(CheckpointFormat.TorchSharp, Checkpoint.FormatOf("x.dat"));
        Assert.Equal(CheckpointFormat.PyTorch, Checkpoint.FormatOf("x.PT"));
    }

    [Fact]
    public void UnknownExtensionsAndMissingOrCorruptFilesAreReported()
    {
        using var directory = new TempDirectory();
        using var model = ModelZoo.Create(ModelMatrixTests.Spec("mlp", NormKind.None, [784]));
        var unknown = Assert.Throws<ArgumentException>(() => Checkpoint.Save(model, directory.File("m.ckpt")));
        Assert.Contains("'.ckpt'", unknown.Message);
        Assert.Contains(".safetensors, .pt, .pth, .bin, .dat", unknown.Message);

        Assert.Throws<FileNotFoundException>(() => Checkpoint.Load(model, directory.File("absent.bin")));

        var corrupt = directory.File("corrupt.pt");
        File.WriteAllText(corrupt, "not a zip file");
        var ex = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(model, corrupt));
        Assert.Contains(corrupt, ex.Message);
    }
}
