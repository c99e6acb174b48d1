using System.Diagnostics;
using System.Text.Json;
using CovariateShift.Records;
using CovariateShift.Sinks;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>Sinks as plug-ins: failures contained (or rethrown when strict), a real full disk, the exclusive metrics file.</summary>
public sealed class SinkIsolationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-isolation-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A file stream that fails like a full disk once <paramref name="capacity"/> bytes are in the file: the write
    /// that crosses the limit puts the bytes that fit into the file first, as write(2) does.</summary>
    private sealed class FullDiskStream(string path, long capacity) : Stream
    {
        private readonly FileStream _file = new(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0);

        public override bool CanRead => false;
        public override bool CanSeek => true;
        public override bool CanWrite => true;
        public override long Length => _file.Length;
        public override long Position { get => _file.Position; set => _file.Position = value; }

        public override void Write(byte[] buffer, int offset, int count)
        {
            long room = capacity - _file.Length;
            if (count <= room)
            {
                _file.Write(buffer, offset, count);
                return;
            }
            _file.Write(buffer, offset, (int)Math.Max(0, room));
            throw new IOException("No space left on device");
        }

        public override void SetLength(long value) => _file.SetLength(value);
        public override void Flush() => _file.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => _file.Seek(offset, origin);

        protected override void Dispose(bool disposing)
        {
            if (disposing) _file.Dispose();
            base.Dispose(disposing);
        }
    }

    private sealed class CountingSink : IStepSink
    {
        public List<long> Steps { get; } = [];
        public bool Disposed { get; private set; }
        public void Write(StepRecord record) => Steps.Add(record.Step);
        public void Dispose() => Disposed = true;
    }

    private static nn.Module<Tensor, Tensor> Model() => nn.Sequential(("fc1", nn.Linear(6, 16)), ("act", nn.ReLU()), ("fc2", nn.Linear(16, 3)));

    private static int Train(ActivationMonitor monitor, nn.Module<Tensor, Tensor> model, int steps)
    {
        var gen = new Generator(5);
        int recorded = 0;
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            model.call(randn([8, 6], generator: gen));
            if (monitor.Step() is not null) recorded++;
        }
        return recorded;
    }

    private static void AssertWholeLines(string path, int layers)
    {
        var text = File.ReadAllText(path);
        Assert.True(text.Length == 0 || text.EndsWith('\n'), "the file ends inside a line");
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(0, lines.Length % layers);   // whole steps
        Assert.All(lines, l => Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(l).RootElement.ValueKind));
    }

    [Fact]
    public void A_sink_that_fails_is_reported_once_with_its_file_and_disabled_while_training_goes_on()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "full.jsonl");
        var (logger, log) = CollectingLogSink.Create(LogEventLevel.Warning);
        var other = new CountingSink();
        var model = Model();
        int recorded;
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            Logger = logger, Sinks = [new JsonLinesSink(new FullDiskStream(path, capacity: 5000), path), other],
        }))
        {
            recorded = Train(monitor, model, 20);
        }
        Assert.Equal(20, recorded);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (long)i), other.Steps);   // the other sink saw every step
        Assert.True(other.Disposed);
        var warning = Assert.Single(log.Events, e => e.Properties.ContainsKey("Target"));
        Assert.Equal(path, CollectingLogSink.Text(warning, "Target"));
        Assert.Contains("No space left on device", warning.RenderMessage(System.Globalization.CultureInfo.InvariantCulture));
        Assert.IsType<IOException>(warning.Exception);
        AssertWholeLines(path, layers: 3);
        var written = File.ReadAllLines(path).Length / 3;
        Assert.InRange(written, 1, 19);   // some steps fit, the rest did not
        Assert.True(new FileInfo(path).Length <= 5000);
    }

    [Fact]
    public void A_strict_monitor_rethrows_the_sink_failure()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "strict.jsonl");
        var model = Model();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            StrictSinks = true, Sinks = [new JsonLinesSink(new FullDiskStream(path, capacity: 3000), path)],
        });
        var e = Assert.Throws<IOException>(() => Train(monitor, model, 20));
        Assert.Contains("No space left on device", e.Message);
        AssertWholeLines(path, layers: 3);
    }

    [Fact]
    public void A_real_full_disk_leaves_whole_lines_and_training_finishes()
    {
        // A 16 KiB tmpfs the test mounts: needs root and mount(8); elsewhere the test has nothing to check and returns.
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") return;
        var mountPoint = Path.Combine(_dir, "tiny");
        Directory.CreateDirectory(mountPoint);
        if (!Run("mount", $"-t tmpfs -o size=16k covshift-test {mountPoint}")) return;
        try
        {
            using var scope = NewDisposeScope();
            var path = Path.Combine(mountPoint, "metrics.jsonl");
            var (logger, log) = CollectingLogSink.Create(LogEventLevel.Warning);
            var model = Model();
            int recorded;
            using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger, JsonLinesPath = path, JsonLinesHistogramEvery = 1 }))
                recorded = Train(monitor, model, 40);   // about 2 KB per step: the disk is full after a few steps
            Assert.Equal(40, recorded);
            var warning = Assert.Single(log.Events, e => e.Properties.ContainsKey("Target"));
            Assert.Equal(path, CollectingLogSink.Text(warning, "Target"));
            AssertWholeLines(path, layers: 3);
            Assert.InRange(File.ReadAllLines(path).Length / 3, 1, 39);
        }
        finally
        {
            Run("umount", mountPoint);
        }
    }

    private static bool Run(string file, string arguments)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    [Fact]
    public void A_second_monitor_on_the_same_metrics_file_is_refused_and_the_first_keeps_writing()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "shared.jsonl");
        var a = Model();
        var b = Model();
        using var first = ActivationMonitor.Attach(a, new MonitorOptions { JsonLinesPath = path });
        Train(first, a, 2);
        var e = Assert.Throws<IOException>(() => ActivationMonitor.Attach(b, new MonitorOptions { JsonLinesPath = path }));
        Assert.Contains(Path.GetFullPath(path), e.Message);
        Assert.Contains("already being written", e.Message);
        Train(first, a, 2);
        Assert.Equal(4 * 3, Schema.MetricsReader.Read(path).Layers.Count);   // readable while written, nothing truncated
        first.Dispose();
        using var again = ActivationMonitor.Attach(b, new MonitorOptions { JsonLinesPath = path });   // free once closed
    }

    [Fact]
    public void Plugged_in_sinks_receive_every_record_after_the_shorthands_and_are_disposed_with_the_monitor()
    {
        using var scope = NewDisposeScope();
        var custom = new CountingSink();
        var path = Path.Combine(_dir, "factory.jsonl");
        var model = Model();
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 2, Sinks = [StepSinks.JsonLines(path, histogramEvery: 1), custom] }))
            Train(monitor, model, 6);
        Assert.Equal([0L, 2, 4], custom.Steps);
        Assert.True(custom.Disposed);
        Assert.Equal([0L, 2, 4], Schema.MetricsReader.Read(path).Steps.Select(s => s.Step));
        // A failed attach disposes the sinks it was given.
        var orphan = new CountingSink();
        Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 0, Sinks = [orphan] }));
        Assert.True(orphan.Disposed);
    }
}
