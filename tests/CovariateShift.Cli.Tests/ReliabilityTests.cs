using CovariateShift.Cli.Commands;
using System.Diagnostics;
using System.IO.Compression;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// The reliability defects of the hostile-input probe (issue 18), each reproduced with the real command line: one
/// "error:" line, exit code 2, and nothing already written lost or written outside the run directory.
/// </summary>
[Collection(nameof(TrainCommandTests))]
public sealed class ReliabilityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-reliability-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Tiny = ["train", "--dataset", "gaussian", "--model", "mlp", "--depth", "2", "--width", "16", "--batch-size", "50",
        "--train-limit", "400", "--test-limit", "100", "--log-every", "5", "--record-every", "3"];

    private static (int Code, string Out, string Error) Run(params string[] args) => CliConsole.Run(args);

    /// <summary>Exit code 2 and exactly one line on stderr, starting with "error: " and containing <paramref name="expected"/>.</summary>
    private static void AssertUserError((int Code, string Out, string Error) result, string expected)
    {
        Assert.True(result.Code == 2, $"exit code {result.Code}: {result.Error}");
        Assert.StartsWith("error: ", result.Error, StringComparison.Ordinal);
        Assert.Contains(expected, result.Error, StringComparison.Ordinal);
        Assert.Single(result.Error.TrimEnd('\n').Split('\n'));
    }

    /// <summary>A finished tiny run (of <paramref name="width"/>) in <paramref name="name"/>, then made resumable: checkpoints/last re-saved as unfinished at step 8.</summary>
    private string UnfinishedRun(string name, string width = "16")
    {
        var run = Path.Combine(_dir, name);
        string[] args = [.. Tiny.Select((a, i) => i > 0 && Tiny[i - 1] == "--width" ? width : a)];
        var (code, _, error) = Run([.. args, "--steps", "24", "--out", run]);
        Assert.True(code == 0, error);
        var last = Path.Combine(run, "checkpoints", "last");
        var contents = RunCheckpoint.Load(last);
        RunCheckpoint.Save(last, contents with { State = contents.State with { Finished = false, Step = 8 } });
        File.Delete(Path.Combine(run, "summary.json"));
        File.Delete(Path.Combine(run, "checkpoint.bin"));
        return run;
    }

    private static Dictionary<string, byte[]> Snapshot(string dir) =>
        Directory.EnumerateFiles(dir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Where(f => !RunLock.IsLockFile(Path.GetFileName(f)))
            .ToDictionary(f => Path.GetRelativePath(dir, f), File.ReadAllBytes);

    // 1. --overwrite deletes only what a run wrote.
    [Fact]
    public void Overwrite_refuses_a_directory_with_files_no_run_wrote_and_deletes_nothing()
    {
        var x = Directory.CreateDirectory(Path.Combine(_dir, "x")).FullName;
        File.WriteAllText(Path.Combine(x, "config.json"), "{}");
        File.WriteAllText(Path.Combine(x, "important.txt"), "keep");
        AssertUserError(Run([.. Tiny, "--steps", "5", "--overwrite", "--out", x]), $"--overwrite refuses to clear '{x}': 'important.txt' was not written by a covshift run");
        Assert.Equal("keep", File.ReadAllText(Path.Combine(x, "important.txt")));
        Assert.Equal("{}", File.ReadAllText(Path.Combine(x, "config.json")));

        // A real run with a user's file among its checkpoints: refused, naming it; without it the run is replaced.
        var run = Path.Combine(_dir, "run");
        var (code, _, error) = Run([.. Tiny, "--steps", "5", "--out", run]);
        Assert.True(code == 0, error);
        File.WriteAllText(Path.Combine(run, "checkpoints", "mine.txt"), "keep");
        var before = Snapshot(run);
        AssertUserError(Run([.. Tiny, "--steps", "6", "--overwrite", "--out", run]), "'checkpoints/mine.txt' was not written by a covshift run");
        Assert.Equal(before, Snapshot(run));
        File.Delete(Path.Combine(run, "checkpoints", "mine.txt"));
        (code, _, error) = Run([.. Tiny, "--steps", "6", "--overwrite", "--out", run]);
        Assert.True(code == 0, error);
        Assert.Equal(6, RunConfig.Load(run).Training.Steps);
    }

    // 3. and 9. --resume refuses symbolic links inside the run directory before it writes or trains.
    [Theory]
    [InlineData("checkpoints")]
    [InlineData("tensorboard")]
    [InlineData("summary.json")]
    public void Resume_refuses_a_symlink_inside_the_run_directory_before_writing(string planted)
    {
        var run = UnfinishedRun("run");
        var target = Path.Combine(_dir, "elsewhere");
        var inside = Path.Combine(run, planted);
        if (Directory.Exists(inside))
        {
            Directory.Move(inside, target);
        }
        else
        {
            File.WriteAllText(target, "keep me");
        }
        File.CreateSymbolicLink(inside, target);
        var before = Snapshot(run);
        var targetBefore = Directory.Exists(target) ? Snapshot(target) : new() { ["."] = File.ReadAllBytes(target) };

        AssertUserError(Run("train", "--resume", run), $"'{inside}' in the run directory is a symbolic link (to '{target}')");
        Assert.Equal(before, Snapshot(run));
        Assert.Equal(targetBefore, Directory.Exists(target) ? Snapshot(target) : new() { ["."] = File.ReadAllBytes(target) });
    }

    // 7. Train and test images of different shapes.
    [Fact]
    public void Train_and_test_images_of_different_shapes_are_refused_naming_both()
    {
        var mnist = Directory.CreateDirectory(Path.Combine(_dir, "mnist")).FullName;
        foreach (var (prefix, n, h, w) in new[] { ("train", 60, 14, 56), ("t10k", 20, 28, 28) })
        {
            IdxReader.Write(Path.Combine(mnist, $"{prefix}-images-idx3-ubyte"), [n, h, w], Enumerable.Range(0, n * h * w).Select(i => (byte)(i * 7)).ToArray());
            IdxReader.Write(Path.Combine(mnist, $"{prefix}-labels-idx1-ubyte"), [n], Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
        }
        var outDir = Path.Combine(_dir, "out");
        AssertUserError(Run("train", "--dataset", "mnist", "--data-dir", mnist, "--batch-size", "10", "--steps", "2", "--out", outDir),
            "the training examples have shape [1, 14, 56] but the test examples [1, 28, 28]; expected the same shape in both splits");
        Assert.False(Directory.Exists(outDir));
    }

    // 13. Damaged gzip files and empty idx files.
    [Fact]
    public void Damaged_gzip_and_empty_idx_files_are_named_before_anything_is_written()
    {
        string Mnist(string name, int testImages)
        {
            var dir = Directory.CreateDirectory(Path.Combine(_dir, name)).FullName;
            foreach (var (prefix, n) in new[] { ("train", 30), ("t10k", testImages) })
            {
                IdxReader.Write(Path.Combine(dir, $"{prefix}-images-idx3-ubyte.gz"), [n, 28, 28], new byte[n * 784]);
                IdxReader.Write(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte.gz"), [n], Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
            }
            return dir;
        }
        var outDir = Path.Combine(_dir, "out");
        string[] Args(string dir) => ["train", "--dataset", "mnist", "--data-dir", dir, "--batch-size", "10", "--steps", "2", "--out", outDir];

        var garbage = Mnist("garbage", 10);
        var garbageFile = Path.Combine(garbage, "t10k-images-idx3-ubyte.gz");
        File.WriteAllBytes(garbageFile, Enumerable.Range(0, 1000).Select(i => (byte)(i * 131 % 251)).ToArray());
        AssertUserError(Run(Args(garbage)), $"'{garbageFile}' is not a valid gzip file");

        var crc = Mnist("crc", 10);
        var crcFile = Path.Combine(crc, "t10k-labels-idx1-ubyte.gz");
        var bytes = File.ReadAllBytes(crcFile);
        bytes[^6] ^= 0xFF;   // inside the CRC-32 of the gzip trailer
        File.WriteAllBytes(crcFile, bytes);
        AssertUserError(Run(Args(crc)), $"'{crcFile}' is not a valid gzip file");

        var empty = Mnist("empty", 0);
        var (code, _, error) = Run(Args(empty));
        AssertUserError((code, "", error), $"'{Path.Combine(empty, "t10k-images-idx3-ubyte.gz")}' holds no images (shape 0x28x28); expected at least one test image.");
        Assert.DoesNotContain("batch", error, StringComparison.OrdinalIgnoreCase);
        Assert.False(Directory.Exists(outDir));

        // The files this test wrote are valid gzip: the reader reads them back.
        using var check = new GZipStream(File.OpenRead(Path.Combine(empty, "train-images-idx3-ubyte.gz")), CompressionMode.Decompress);
        Assert.Equal(16 + 30 * 784, ReadAll(check));
    }

    private static long ReadAll(Stream s)
    {
        long total = 0;
        var buffer = new byte[8192];
        int n;
        while ((n = s.Read(buffer)) > 0) total += n;
        return total;
    }

    // 13. A run killed before its first checkpoint: the advice is --overwrite, and --resume says so too.
    [Fact]
    public void A_run_without_a_checkpoint_is_advised_to_overwrite_not_to_resume()
    {
        var run = Path.Combine(_dir, "run");
        var (code, _, error) = Run([.. Tiny, "--steps", "5", "--out", run]);
        Assert.True(code == 0, error);
        // What a kill before the first checkpoint leaves: the files written at the start, no checkpoints/last.
        Directory.Delete(Path.Combine(run, "checkpoints"), recursive: true);
        File.Delete(Path.Combine(run, "summary.json"));
        File.Delete(Path.Combine(run, "checkpoint.bin"));
        var before = Snapshot(run);

        var again = Run([.. Tiny, "--steps", "5", "--out", run]);
        AssertUserError(again, "holds a run that stopped before its first checkpoint");
        Assert.Contains("use --overwrite to start it again", again.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("--resume", again.Error, StringComparison.Ordinal);
        AssertUserError(Run("train", "--resume", run), $"Cannot resume '{run}': it has no checkpoints/last (the run stopped before its first checkpoint). Start it again with covshift train --overwrite");
        Assert.Equal(before, Snapshot(run));
        (code, _, error) = Run([.. Tiny, "--steps", "5", "--overwrite", "--out", run]);
        Assert.True(code == 0, error);
    }

    // 13. A checkpoint of another model: one line naming the file and the first difference.
    [Fact]
    public void Resuming_with_a_foreign_checkpoint_names_the_file_and_the_mismatch()
    {
        var mine = UnfinishedRun("mine");
        var foreign = UnfinishedRun("foreign", width: "24");
        var last = Path.Combine(mine, "checkpoints", "last");
        File.Copy(Path.Combine(foreign, "checkpoints", "last"), last, overwrite: true);
        var before = Snapshot(mine);
        AssertUserError(Run("train", "--resume", mine),
            $"Checkpoint '{last}' does not belong to the run's model (mlp in config.json): 'layers.0.linear.weight' has shape [24, 16] there but the model expects [16, 16]");
        Assert.Equal(before, Snapshot(mine));
    }

    // 13. Messages of numbers out of range (see also TrainCommandTests.Cases) and .NET artefacts.
    [Fact]
    public void Messages_carry_no_dotnet_parameter_artefacts_and_are_one_line()
    {
        var e = new ArgumentOutOfRangeException("batchSize", 0, "Batch size must be in 1..0 (the data set size).");
        Assert.Contains("(Parameter 'batchSize')", e.Message, StringComparison.Ordinal);   // what .NET adds
        Assert.Equal("Batch size must be in 1..0 (the data set size).", CliRunner.OneLine(e));
        Assert.Equal("Checkpoint 'x' does not fit the model (2 problem(s)): 'a' is missing; 'b' is missing",
            CliRunner.OneLine(new InvalidDataException($"Checkpoint 'x' does not fit the model (2 problem(s)):{Environment.NewLine}  'a' is missing{Environment.NewLine}  'b' is missing")));
        Assert.Equal("Value cannot be null.", CliRunner.OneLine(new ArgumentNullException("source")));
    }

    // 13. An empty read-only --out is not "in use by another process". Root writes anywhere, so as root the CLI runs as nobody.
    [Fact]
    public async Task A_read_only_out_is_reported_as_not_writable_not_as_locked()
    {
        Assert.True(OperatingSystem.IsLinux(), "a Linux test (file modes, setpriv)");
        if (!OperatingSystem.IsLinux()) return;
        var cli = Path.Combine(AppContext.BaseDirectory, "covshift.dll");
        var parent = Directory.CreateDirectory(Path.Combine(_dir, "ro-parent")).FullName;
        var ro = Directory.CreateDirectory(Path.Combine(parent, "ro")).FullName;
        File.SetUnixFileMode(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        File.SetUnixFileMode(parent, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        File.SetUnixFileMode(ro, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        bool root = Environment.UserName == "root";
        var start = new ProcessStartInfo(root ? "setpriv" : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (root)
        {
            foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "env", $"HOME={parent}", $"DOTNET_CLI_HOME={parent}", "dotnet" }) start.ArgumentList.Add(a);
        }
        foreach (var a in new[] { cli, "train", "--dataset", "gaussian", "--steps", "2", "--out", ro }) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = await process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token);
        if (root && stderr.Contains("Permission denied", StringComparison.Ordinal) && !stderr.Contains("error:", StringComparison.Ordinal))
        {
            // The test binaries are not readable by nobody here (e.g. below /root): the case cannot be set up as root.
            Assert.Fail($"cannot run the CLI as nobody to test a read-only directory: {stderr}");
        }
        AssertUserError((process.ExitCode, await stdout, stderr), $"Cannot write to the run directory '{ro}'");
        Assert.DoesNotContain("in use by another", stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(ro));
    }

    // 2. report --out never writes through a planted link and replaces only its own reports.
    [Fact]
    public void Report_refuses_planted_links_and_files_it_did_not_write()
    {
        var run = Path.Combine(_dir, "run");
        var (code, _, error) = Run([.. Tiny, "--steps", "6", "--out", run]);
        Assert.True(code == 0, error);
        var victim = Path.Combine(_dir, "victim.txt");
        File.WriteAllText(victim, "keep me");

        var link = Path.Combine(_dir, "link.html");
        File.CreateSymbolicLink(link, victim);
        AssertUserError(Run("report", run, "--out", link), $"'{link}' is a symbolic link (to '{victim}')");

        var figures = Directory.CreateDirectory(Path.Combine(_dir, "figures")).FullName;
        var percentiles = Path.Combine(figures, "r-percentiles.png");
        File.CreateSymbolicLink(percentiles, victim);
        AssertUserError(Run("report", run, "--out", Path.Combine(figures, "r.html")), $"'{percentiles}' is a symbolic link (to '{victim}')");
        Assert.False(File.Exists(Path.Combine(figures, "r.html")));

        var notes = Path.Combine(_dir, "notes.html");
        File.WriteAllText(notes, "<p>my notes</p>");
        AssertUserError(Run("report", run, "--out", notes), $"'{notes}' exists and is not a covshift report");
        Assert.Equal("<p>my notes</p>", File.ReadAllText(notes));
        Assert.Equal("keep me", File.ReadAllText(victim));

        // Its own report is replaced: written twice, the second time over the first.
        var report = Path.Combine(_dir, "out", "report.html");
        (code, _, error) = Run("report", run, "--out", report, "--no-figures");
        Assert.True(code == 0, error);
        Assert.True(CovariateShift.Reports.ReportWriter.IsReport(report));
        File.SetLastWriteTimeUtc(report, new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        (code, _, error) = Run("report", run, "--out", report, "--no-figures");
        Assert.True(code == 0, error);
        Assert.True(File.GetLastWriteTimeUtc(report).Year > 2000);
    }

    // 2., 8. and 9. experiment: every value checked before the first write; no write through a planted link.
    [Theory]
    [InlineData("lr-sweep", "--lrs 0.1 -1", "--lrs must be in (0, 3.4E+38]; got -1.")]
    [InlineData("lr-sweep", "--lrs 1e300", "--lrs must be in (0, 3.4E+38]; got 1e300.")]
    [InlineData("depth-sweep", "--depths 4 0", "--depths must be at least 1; got 0.")]
    [InlineData("batch-sweep", "--batch-sizes 8 100000", "Experiment run 'batch-batch100000': batch size 100000 is larger than the 200 training examples")]
    [InlineData("lr-sweep", "--lrs 0.01 --depth 2 --width 8 --norms batch --overwrite", "results.md' in the run directory is a symbolic link")]
    public void Experiment_settings_are_checked_before_anything_is_written(string experiment, string flags, string expected)
    {
        var outDir = Path.Combine(_dir, "experiment");
        var victim = Path.Combine(_dir, "victim.txt");
        File.WriteAllText(victim, "keep me");
        if (expected.Contains("results.md", StringComparison.Ordinal))
        {
            Directory.CreateDirectory(outDir);
            File.CreateSymbolicLink(Path.Combine(outDir, "results.md"), victim);
        }
        var before = Directory.Exists(outDir) ? Directory.GetFileSystemEntries(outDir).Length : -1;
        AssertUserError(Run(["experiment", experiment, .. flags.Split(' '), "--steps", "2", "--train-limit", "200", "--test-limit", "100", "--out", outDir]), expected);
        Assert.Equal(before, Directory.Exists(outDir) ? Directory.GetFileSystemEntries(outDir).Length : -1);
        Assert.Equal("keep me", File.ReadAllText(victim));
    }
}
