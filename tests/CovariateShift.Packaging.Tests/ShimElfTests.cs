using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using CovariateShift.Build;

namespace CovariateShift.Packaging.Tests;

/// <summary>
/// The libstdc++ step on copies of TorchSharp 0.107's real libLibTorchSharp.so, checked with a separate ELF reader
/// (dynamic segment, not section headers), byte comparisons and, where binutils is installed, readelf.
/// </summary>
public sealed class ShimElfTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDirectory("shim");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string CopyOfShim(string name = "libLibTorchSharp.so")
    {
        var path = Path.Combine(_dir, name);
        File.Copy(TestPaths.PackagedShim, path);
        return path;
    }

    [Fact]
    public void WeakenFile_RealShim_MakesOnlyTheGlibcxx3432RequirementWeakAndTheMarkerGlobal()
    {
        var original = File.ReadAllBytes(TestPaths.PackagedShim);
        var before = new IndependentElfReader(original);
        var need = Assert.Single(before.Needs, n => n.Name == ShimElf.Version);
        Assert.Equal("libstdc++.so.6", need.File);
        Assert.Equal(0, need.Flags);
        var marker = before.SymbolVersions.Select((s, i) => (s, i)).Single(x => x.s.Name == ShimElf.Symbol);
        Assert.Equal(need.Index, marker.s.Version);

        var path = CopyOfShim();
        Assert.Equal(ShimState.Patched, ShimElf.WeakenFile(path));

        var patched = File.ReadAllBytes(path);
        var after = new IndependentElfReader(patched);
        Assert.Equal(before.Needs.Count, after.Needs.Count);
        for (int i = 0; i < before.Needs.Count; i++)
        {
            var expected = before.Needs[i].Name == ShimElf.Version ? before.Needs[i] with { Flags = ShimElf.VerFlgWeak } : before.Needs[i];
            Assert.Equal(expected, after.Needs[i]);
        }

        Assert.Equal(before.SymbolVersions.Count, after.SymbolVersions.Count);
        Assert.True(before.SymbolVersions.Count > 100, $"only {before.SymbolVersions.Count} dynamic symbols read");
        for (int i = 0; i < before.SymbolVersions.Count; i++)
        {
            var expected = i == marker.i ? before.SymbolVersions[i] with { Version = 1 } : before.SymbolVersions[i];
            Assert.Equal(expected, after.SymbolVersions[i]);
        }

        // No symbol refers to the weak version any more, and at most the two 16-bit fields differ from the original.
        Assert.DoesNotContain(after.SymbolVersions, s => (s.Version & 0x7fff) == need.Index);
        Assert.Equal(original.Length, patched.Length);
        var changed = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToList();
        Assert.InRange(changed.Count, 2, 4);
        Assert.True(changed[^1] - changed[0] > 2, "the flags and the symbol's version are two separate places");
    }

    [Fact]
    public void WeakenFile_RunTwice_SecondRunChangesNothing()
    {
        var path = CopyOfShim();
        Assert.Equal(ShimState.Patched, ShimElf.WeakenFile(path));
        var once = File.ReadAllBytes(path);
        var written = File.GetLastWriteTimeUtc(path);

        Assert.Equal(ShimState.AlreadyWeak, ShimElf.WeakenFile(path));
        Assert.Equal(once, File.ReadAllBytes(path));
        Assert.Equal(written, File.GetLastWriteTimeUtc(path));
        Assert.Equal(ShimState.AlreadyWeak, ShimElf.Weaken(once, out var again));
        Assert.Same(once, again);
    }

    [Fact]
    public void WeakenFile_LeavesThePackagedShimAndHardLinkedCopiesUntouched()
    {
        var hashBefore = SHA256.HashData(File.ReadAllBytes(TestPaths.PackagedShim));
        var copy = CopyOfShim();
        var link = Path.Combine(_dir, "hard-link.so");
        if (!TryRun("ln", $"\"{copy}\" \"{link}\"", out _))
        {
            throw new InvalidOperationException("ln failed");
        }

        ShimElf.WeakenFile(link);

        Assert.Equal(hashBefore, SHA256.HashData(File.ReadAllBytes(TestPaths.PackagedShim)));
        Assert.Equal(hashBefore, SHA256.HashData(File.ReadAllBytes(copy)));
        Assert.Contains(new IndependentElfReader(File.ReadAllBytes(link)).Needs, n => n.Name == ShimElf.Version && n.Flags == ShimElf.VerFlgWeak);
    }

    [Fact]
    public void WeakenFile_SymbolicLink_IsRefusedAndTheTargetKept()
    {
        var target = CopyOfShim("target.so");
        var link = Path.Combine(_dir, "libLibTorchSharp.so");
        File.CreateSymbolicLink(link, target);

        var e = Assert.Throws<IOException>(() => ShimElf.WeakenFile(link));
        Assert.Contains("symbolic link", e.Message, StringComparison.Ordinal);
        Assert.Equal(File.ReadAllBytes(TestPaths.PackagedShim), File.ReadAllBytes(target));
    }

    [Fact]
    public void ReadelfOnThePatchedCopy_ShowsTheWeakFlagOnGlibcxx3432Only()
    {
        var path = CopyOfShim();
        ShimElf.WeakenFile(path);
        if (!TryRun("readelf", $"-V -W \"{path}\"", out var output))
        {
            return; // binutils is not installed; the separate reader above checks the same
        }

        var weak = output.Split('\n').Where(l => l.Contains("Flags: WEAK", StringComparison.Ordinal)).ToList();
        var line = Assert.Single(weak);
        Assert.Contains("Name: GLIBCXX_3.4.32", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Weaken_AnotherSymbolOnTheSameVersion_IsRefusedNamingIt()
    {
        var image = File.ReadAllBytes(TestPaths.PackagedShim);
        var reader = new IndependentElfReader(image);
        var index = reader.Needs.Single(n => n.Name == ShimElf.Version).Index;
        var other = reader.SymbolVersions.Select((s, i) => (s, i)).First(x => x.s.Undefined && x.s.Name.StartsWith("_ZNSt", StringComparison.Ordinal) && x.s.Version > 1);
        var versymOffset = FindVersymOffset(image, reader);
        image[versymOffset + (other.i * 2)] = (byte)index;
        image[versymOffset + (other.i * 2) + 1] = (byte)(index >> 8);

        var e = Assert.Throws<InvalidDataException>(() => ShimElf.Weaken(image, out _));
        Assert.Contains(other.s.Name, e.Message, StringComparison.Ordinal);
        Assert.Contains("not changed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Weaken_UnknownFlags_AreRefused()
    {
        var image = File.ReadAllBytes(TestPaths.PackagedShim);
        var flagsAt = FindVernauxFlagsOffset(image);
        image[flagsAt] = 0x1; // VER_FLG_BASE: not something a requirement carries

        var e = Assert.Throws<InvalidDataException>(() => ShimElf.Weaken(image, out _));
        Assert.Contains("0x1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WeakenFile_NotAnElfFile_IsRefusedWithItsPathAndLeftAsItWas()
    {
        var path = Path.Combine(_dir, "libLibTorchSharp.so");
        File.WriteAllText(path, "not a shared object\n");

        var e = Assert.Throws<InvalidDataException>(() => ShimElf.WeakenFile(path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("not an ELF file", e.Message, StringComparison.Ordinal);
        Assert.Equal("not a shared object\n", File.ReadAllText(path));
    }

    [Fact]
    public void Weaken_LibraryWithoutTheRequirement_IsNotRequired()
    {
        // libstdc++ itself defines versions but needs no GLIBCXX version from anyone.
        var lib = ShimElf.FindLibStdCxx(null);
        Assert.NotNull(lib);
        var bytes = File.ReadAllBytes(lib);
        Assert.Equal(ShimState.NotRequired, ShimElf.Weaken(bytes, out var same));
        Assert.Same(bytes, same);
    }

    [Fact]
    public void ShouldWeaken_MachineLibStdCxx_DecidesByWhetherItDefinesTheVersion()
    {
        var lib = ShimElf.FindLibStdCxx(null);
        Assert.NotNull(lib);
        var bytes = File.ReadAllBytes(lib);
        // Independent check: the version names of a library are plain strings in its file (what `grep -a` sees).
        var hasVersion = Encoding.ASCII.GetString(bytes).Contains(ShimElf.Version + "\0", StringComparison.Ordinal);

        Assert.Equal(!hasVersion, ShimElf.ShouldWeaken("auto", isLinux: true, lib, out var reason));
        Assert.Contains(lib, reason, StringComparison.Ordinal);
        Assert.True(ShimElf.DefinesVersion(bytes, "GLIBCXX_3.4.30"));
        Assert.False(ShimElf.DefinesVersion(bytes, "GLIBCXX_9.9.99"));
    }

    [Fact]
    public void ShouldWeaken_LibStdCxxWithoutTheVersion_SaysYes()
    {
        // A copy of the machine's libstdc++ whose GLIBCXX_3.4.32 name is renamed: what GCC 12's libstdc++ looks like
        // to the check (it defines everything up to 3.4.30). On a machine with GCC 12's libstdc++ (a clean Debian 12)
        // there is nothing to rename: the copy is the real case.
        var bytes = File.ReadAllBytes(ShimElf.FindLibStdCxx(null)!);
        var name = Encoding.ASCII.GetBytes(ShimElf.Version + "\0");
        var renamed = 0;
        for (var i = bytes.AsSpan().IndexOf(name); i >= 0; i = IndexAfter(bytes, name, i))
        {
            bytes[i + name.Length - 2] = (byte)'X';
            renamed++;
        }

        var copy = Path.Combine(_dir, "libstdc++.so.6");
        File.WriteAllBytes(copy, bytes);

        Assert.True(renamed > 0 || !ShimElf.DefinesVersion(File.ReadAllBytes(ShimElf.FindLibStdCxx(null)!), ShimElf.Version),
            "the machine's libstdc++ defines GLIBCXX_3.4.32 but the name was not found to rename");
        Assert.False(ShimElf.DefinesVersion(bytes, ShimElf.Version));
        Assert.True(ShimElf.ShouldWeaken("auto", isLinux: true, copy, out var reason));
        Assert.Contains("does not define", reason, StringComparison.Ordinal);
        Assert.Equal(copy, ShimElf.FindLibStdCxx(_dir + ":/nonexistent"));
    }

    [Theory]
    [InlineData("always", false, true)]
    [InlineData("false", true, false)]
    [InlineData("never", true, false)]
    [InlineData("auto", false, false)]
    [InlineData("", false, false)]
    public void ShouldWeaken_Modes(string mode, bool isLinux, bool expected) =>
        Assert.Equal(expected, ShimElf.ShouldWeaken(mode, isLinux, null, out _));

    [Fact]
    public void ShouldWeaken_NoLibStdCxxFoundOnLinux_SaysYes() =>
        Assert.True(ShimElf.ShouldWeaken("auto", isLinux: true, null, out _));

    [Fact]
    public void ShouldWeaken_UnknownMode_NamesTheValue()
    {
        var e = Assert.Throws<ArgumentException>(() => ShimElf.ShouldWeaken("sometimes", true, null, out _));
        Assert.Contains("'sometimes'", e.Message, StringComparison.Ordinal);
        Assert.Contains("auto, always or false", e.Message, StringComparison.Ordinal);
    }

    private static int IndexAfter(byte[] bytes, byte[] name, int previous)
    {
        var next = bytes.AsSpan(previous + 1).IndexOf(name);
        return next < 0 ? -1 : previous + 1 + next;
    }

    // The .gnu.version array: 2 bytes per dynamic symbol; the step's own code finds it from the section headers, here
    // from a unique run of the original versions as this reader sees them.
    private static int FindVersymOffset(byte[] image, IndependentElfReader reader)
    {
        var pattern = reader.SymbolVersions.Take(64).SelectMany(s => new[] { (byte)s.Version, (byte)(s.Version >> 8) }).ToArray();
        var at = image.AsSpan().IndexOf(pattern);
        Assert.True(at > 0);
        Assert.Equal(-1, image.AsSpan(at + 1).IndexOf(pattern));
        return at;
    }

    // The Vernaux entry of GLIBCXX_3.4.32: its hash (ELF hash of the name) followed by flags 0 and its index.
    private static int FindVernauxFlagsOffset(byte[] image)
    {
        var need = new IndependentElfReader(image).Needs.Single(n => n.Name == ShimElf.Version);
        var pattern = new byte[8];
        BitConverter.TryWriteBytes(pattern.AsSpan(0, 4), need.Hash);
        BitConverter.TryWriteBytes(pattern.AsSpan(4, 2), need.Flags);
        BitConverter.TryWriteBytes(pattern.AsSpan(6, 2), need.Index);
        var at = image.AsSpan().IndexOf(pattern);
        Assert.True(at > 0);
        return at + 4;
    }

    private static bool TryRun(string file, string arguments, out string output)
    {
        output = "";
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
            output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
