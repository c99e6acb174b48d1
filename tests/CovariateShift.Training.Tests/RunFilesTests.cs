using System.Diagnostics;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Training.Tests;

/// <summary>The run directory's file primitives: atomic writes, whole-line appends, the lock, the checkpoint container.</summary>
public sealed class RunFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-runfiles-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RunCheckpoint.Contents Contents(long step, int size) =>
        new(new TrainingState(step, 100, 10, 3, 0.1, [1.5f, float.NaN], 0.5, 2, false, [1, 2, 3]),
            Enumerable.Range(0, size).Select(i => (byte)(i * 7 + step)).ToArray(), [9, 8, 7]);

    /// <summary>A stream that fails after <paramref name="limit"/> bytes, like a kill or a full disk mid-write.</summary>
    private sealed class FailingStream(Stream inner, long limit) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            int n = (int)Math.Min(buffer.Length, limit - _written);
            inner.Write(buffer[..n]);
            _written += n;
            if (n < buffer.Length) throw new IOException("No space left on device (simulated)");
        }
    }

    [Fact]
    public void A_checkpoint_write_interrupted_at_any_byte_leaves_the_previous_one_loadable()
    {
        var path = Path.Combine(_dir, "last");
        RunCheckpoint.Save(path, Contents(step: 5, size: 300));
        var good = File.ReadAllBytes(path);
        var next = Contents(step: 6, size: 300);
        RunCheckpoint.Save(Path.Combine(_dir, "reference"), next);
        var reference = File.ReadAllBytes(Path.Combine(_dir, "reference"));
        long total = reference.Length;

        for (long cut = 0; cut < total; cut += 37)
        {
            // The same bytes Save writes, through a stream that dies after `cut` bytes.
            var e = Assert.Throws<IOException>(() => SafeFile.WriteAtomic(path, s => new FailingStream(s, cut).Write(reference)));
            Assert.Contains(path, e.Message);
            Assert.Equal(good, File.ReadAllBytes(path));
            Assert.Equal(5, RunCheckpoint.Load(path).State.Step);
            Assert.Equal(["last", "reference"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));   // no temporary file left
        }
    }

    [Fact]
    public void A_torn_or_altered_checkpoint_is_refused_naming_the_file()
    {
        var path = Path.Combine(_dir, "last");
        RunCheckpoint.Save(path, Contents(step: 5, size: 300));
        var bytes = File.ReadAllBytes(path);
        var loaded = RunCheckpoint.Load(path);
        Assert.Equal(Contents(5, 300).Model, loaded.Model);
        Assert.Equal([9, 8, 7], loaded.Optimizer);
        Assert.Equal(1.5f, loaded.State.PendingLosses[0]);
        Assert.True(float.IsNaN(loaded.State.PendingLosses[1]));

        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        Assert.Contains("damaged", Assert.Throws<InvalidDataException>(() => RunCheckpoint.Load(path)).Message);
        File.WriteAllBytes(path, bytes[..20]);
        Assert.Contains($"Checkpoint '{path}' is not a covshift checkpoint or is truncated", Assert.Throws<InvalidDataException>(() => RunCheckpoint.Load(path)).Message);
        var altered = bytes.ToArray();
        altered[100] ^= 1;
        File.WriteAllBytes(path, altered);
        Assert.Contains("SHA-256 does not match", Assert.Throws<InvalidDataException>(() => RunCheckpoint.Load(path)).Message);
        Assert.Throws<FileNotFoundException>(() => RunCheckpoint.Load(Path.Combine(_dir, "nope")));
    }

    [Fact]
    public void Line_files_keep_whole_lines_cut_a_torn_tail_and_never_follow_a_symlink()
    {
        var path = Path.Combine(_dir, "a.jsonl");
        File.WriteAllText(path, "{\"step\":1}\n{\"step\":2}\n{\"st");
        using (var f = new LineFile(path))
        {
            f.Append("{\"step\":3}\n");
        }
        Assert.Equal("{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n", File.ReadAllText(path));

        Assert.Equal(2, LineFile.Filter(path, l => !l.Contains("\"step\":2", StringComparison.Ordinal) && !l.Contains("\"step\":3", StringComparison.Ordinal)));
        Assert.Equal("{\"step\":1}\n", File.ReadAllText(path));

        var victim = Path.Combine(_dir, "victim.txt");
        File.WriteAllText(victim, "keep");
        var link = Path.Combine(_dir, "link.jsonl");
        File.CreateSymbolicLink(link, victim);
        var e = Assert.Throws<IOException>(() => new LineFile(link));
        Assert.Contains("symbolic link", e.Message);
        Assert.Throws<IOException>(() => SafeFile.WriteAtomic(link, "x"));
        Assert.Equal("keep", File.ReadAllText(victim));
    }

    [Fact]
    public void A_locked_run_directory_is_refused_naming_the_holder_and_free_again_after_release()
    {
        var dir = Directory.CreateDirectory(Path.Combine(_dir, "run")).FullName;
        using (RunLock.Acquire(dir))
        {
            var e = Assert.Throws<IOException>(() => RunLock.Acquire(dir));
            Assert.Contains(dir, e.Message);
            Assert.Contains($"pid {Environment.ProcessId}", e.Message);
            Assert.Throws<IOException>(() => RunDirectory.Open(dir, RunDirectoryMode.Resume));
        }
        using (RunLock.Acquire(dir))
        {
            // taken again
        }

        File.WriteAllText(Path.Combine(dir, "x.txt"), "x");
        Assert.Contains("is not empty", Assert.Throws<IOException>(() => RunDirectory.Open(dir, RunDirectoryMode.New)).Message);
        Assert.Contains("not a covshift run directory", Assert.Throws<IOException>(() => RunDirectory.Open(dir, RunDirectoryMode.Overwrite)).Message);
        File.WriteAllText(Path.Combine(dir, RunConfig.FileName), "{}");
        // --overwrite deletes only what a run writes: x.txt is named and kept.
        Assert.Contains("'x.txt' was not written by a covshift run", Assert.Throws<IOException>(() => RunDirectory.Open(dir, RunDirectoryMode.Overwrite)).Message);
        Assert.Equal("x", File.ReadAllText(Path.Combine(dir, "x.txt")));
        File.Delete(Path.Combine(dir, "x.txt"));
        using (RunDirectory.Open(dir, RunDirectoryMode.Overwrite))
        {
            Assert.DoesNotContain(Directory.GetFiles(dir), f => !RunLock.IsLockFile(Path.GetFileName(f)));
        }
    }

    [Fact]
    public void A_lock_held_by_another_process_is_refused_with_its_pid_and_released_when_it_dies()
    {
        if (!OperatingSystem.IsLinux()) return;
        var dir = Directory.CreateDirectory(Path.Combine(_dir, "run2")).FullName;
        // flock(1) holds an exclusive lock on DIR/.lock the way RunLock does (both are flock); --no-fork: the killed process is the holder.
        var lockPath = Path.Combine(dir, RunLock.LockFileName);
        using var holder = Process.Start(new ProcessStartInfo("flock", ["--no-fork", "-x", lockPath, "sleep", "30"]) { UseShellExecute = false })!;
        File.WriteAllText(Path.Combine(dir, RunLock.PidFileName), $"{holder.Id}\n");
        var deadline = Stopwatch.StartNew();
        IOException? refused = null;
        while (refused is null && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            try
            {
                RunLock.Acquire(dir).Dispose();   // flock has not started yet
                File.WriteAllText(Path.Combine(dir, RunLock.PidFileName), $"{holder.Id}\n");
                Thread.Sleep(50);
            }
            catch (IOException e)
            {
                refused = e;
            }
        }
        Assert.NotNull(refused);
        Assert.Contains($"pid {holder.Id}", refused.Message);
        holder.Kill();
        holder.WaitForExit();
        using (RunLock.Acquire(dir))
        {
            // the dead holder's lock is gone
        }
    }
}
