using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Records;

namespace CovariateShift.Training.Runtime;

/// <summary>
/// Where a run stands after a step: everything besides the model and optimizer tensors that resuming needs to take
/// exactly the same next step (the JSON part of a <see cref="RunCheckpoint"/>).
/// </summary>
/// <param name="Step">Optimizer steps completed.</param>
/// <param name="TotalSteps">Steps the run is set to take.</param>
/// <param name="StepsPerEpoch">Mini-batches per epoch (training examples / batch size, last partial batch dropped).</param>
/// <param name="Seed">The run's seed; epoch e is shuffled by a generator seeded from (seed, e) (see <see cref="ShuffleSeed"/>).</param>
/// <param name="LearningRate">Learning rate of the last step taken (the schedule is a function of the step).</param>
/// <param name="PendingLosses">Training losses of the steps since the last logged step (their mean is the next logged loss).</param>
/// <param name="BestAccuracy">Best test accuracy so far, or null.</param>
/// <param name="Evaluations">Number of evaluations so far.</param>
/// <param name="Finished">True when the run completed every step.</param>
/// <param name="TorchRngState">State of TorchSharp's global generator (dropout, noisy batch norm), as bytes.</param>
/// <param name="Monitor">What the monitor's next records depend on (<see cref="ActivationMonitor.ExportState"/>); null in
/// checkpoints written before it was saved (the resumed monitor then starts afresh).</param>
/// <param name="RecentLosses">Training losses of the last <see cref="Training.TrainerOptions.LossWindow"/> steps (the
/// final train loss of a resumed run is taken over the same steps as a straight run's); null in older checkpoints.</param>
/// <param name="EvaluationHistory">Every evaluation so far (a resumed run's summary lists them all); null in older checkpoints.</param>
public sealed record TrainingState(
    long Step,
    long TotalSteps,
    long StepsPerEpoch,
    long Seed,
    double LearningRate,
    IReadOnlyList<float> PendingLosses,
    double? BestAccuracy,
    int Evaluations,
    bool Finished,
    byte[] TorchRngState,
    MonitorState? Monitor = null,
    IReadOnlyList<double>? RecentLosses = null,
    IReadOnlyList<Training.EvaluationResult>? EvaluationHistory = null)
{
    /// <summary>Completed epochs as a fraction: <see cref="Step"/> / <see cref="StepsPerEpoch"/>.</summary>
    [JsonIgnore]
    public double Epoch => (double)Step / StepsPerEpoch;

    /// <summary>The seed of the generator that shuffles epoch <paramref name="epoch"/> (0-based) of a run seeded with <paramref name="seed"/>.</summary>
    public static ulong ShuffleSeed(long seed, long epoch) => unchecked(((ulong)seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)epoch * 0xBF58476D1CE4E5B9UL) ^ 0x94D049BB133111EBUL);
}

/// <summary>
/// A training checkpoint file (<c>checkpoints/last</c>, <c>checkpoints/epoch-NNNN</c>): the <see cref="TrainingState"/>,
/// the model's state dict and the optimizer's state in one file, with a SHA-256 over everything so a damaged file is
/// recognized. Layout: the 8 bytes <c>CVSCKPT1</c>, then three sections (state JSON, model, optimizer), each an
/// int64 little-endian length and its bytes, then the 32-byte SHA-256 of all that precedes it. Written atomically
/// (temporary file + rename), so a crash or a kill during the write leaves the previous file intact.
/// </summary>
public static class RunCheckpoint
{
    private static readonly byte[] Magic = "CVSCKPT1"u8.ToArray();

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The three parts of a checkpoint.</summary>
    /// <param name="State">Where the run stands.</param>
    /// <param name="Model">The model's state dict in TorchSharp's format (<c>Module.save</c>).</param>
    /// <param name="Optimizer">The optimizer's state in TorchSharp's format (<c>save_state_dict</c>).</param>
    public sealed record Contents(TrainingState State, byte[] Model, byte[] Optimizer);

    /// <summary>Writes <paramref name="contents"/> to <paramref name="path"/> atomically.</summary>
    /// <exception cref="IOException">The file cannot be written; the message names it. The previous file is intact.</exception>
    public static void Save(string path, Contents contents)
    {
        ArgumentNullException.ThrowIfNull(contents);
        var state = JsonSerializer.SerializeToUtf8Bytes(contents.State, JsonOptions);
        SafeFile.WriteAtomic(path, stream =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            void Put(ReadOnlySpan<byte> bytes)
            {
                stream.Write(bytes);
                hash.AppendData(bytes);
            }
            Span<byte> length = stackalloc byte[8];
            Put(Magic);
            foreach (var section in new[] { state, contents.Model, contents.Optimizer })
            {
                BinaryPrimitives.WriteInt64LittleEndian(length, section.LongLength);
                Put(length);
                Put(section);
            }
            stream.Write(hash.GetHashAndReset());
        });
    }

    /// <summary>Reads and verifies the checkpoint at <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not a checkpoint, truncated or damaged; the message names the file and what is wrong.</exception>
    public static Contents Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Checkpoint '{path}' does not exist.", path);
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < Magic.Length + 3 * 8 + 32 || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new InvalidDataException($"Checkpoint '{path}' is not a covshift checkpoint or is truncated ({bytes.Length} bytes; expected the magic 'CVSCKPT1', three sections and a SHA-256).");
        var body = bytes.AsSpan(0, bytes.Length - 32);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
            throw new InvalidDataException($"Checkpoint '{path}' is damaged: its SHA-256 does not match its contents ({bytes.Length} bytes).");
        var sections = new byte[3][];
        int pos = Magic.Length;
        for (int i = 0; i < 3; i++)
        {
            long length = pos + 8 <= body.Length ? BinaryPrimitives.ReadInt64LittleEndian(body.Slice(pos, 8)) : -1;
            if (length < 0 || pos + 8 + length > body.Length)
                throw new InvalidDataException($"Checkpoint '{path}': section {i} has a bad length {length} at byte {pos}.");
            sections[i] = body.Slice(pos + 8, (int)length).ToArray();
            pos += 8 + (int)length;
        }
        TrainingState? state;
        try
        {
            state = JsonSerializer.Deserialize<TrainingState>(sections[0], JsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Checkpoint '{path}': the training state is not valid JSON: {e.Message}", e);
        }
        if (state is null || state.StepsPerEpoch < 1 || state.Step < 0 || state.TorchRngState is null || state.PendingLosses is null)
            throw new InvalidDataException($"Checkpoint '{path}': the training state is incomplete.");
        return new Contents(state, sections[1], sections[2]);
    }

    /// <summary>UTF-8 text of <paramref name="state"/> as stored in a checkpoint (for logs and tests).</summary>
    public static string ToJson(TrainingState state) => Encoding.UTF8.GetString(JsonSerializer.SerializeToUtf8Bytes(state, JsonOptions));
}
