// The libstdc++ step of CovariateShift's build (buildTransitive/CovariateShift.targets).
//
// TorchSharp 0.107's native shim libLibTorchSharp.so is built with GCC 13. GCC 13's <iostream> makes every object that
// includes it reference `std::ios_base_library_init()` (_ZSt21ios_base_library_initv, version GLIBCXX_3.4.32), a
// marker that makes the C++ library initialize the standard streams; nothing calls it and no relocation uses it. That
// one reference is the only GLIBCXX_3.4.32 requirement of the shim, and GCC 12's libstdc++ (Debian 12, Ubuntu 22.04)
// stops at 3.4.30, so the loader refuses the whole shim.
//
// This file edits the COPY of the shim a build puts in its output folder (never the NuGet cache): the Vernaux entry
// of GLIBCXX_3.4.32 gets VER_FLG_WEAK (a missing weak version is not an error for glibc's loader) and the symbol's
// .gnu.version entry becomes 1 (global: any definition, no version). Every other byte stays as it was. It refuses
// anything it does not recognise (another layout, another symbol on that version) with a message saying what it found.
//
// The same source is compiled twice: by MSBuild's RoslynCodeTaskFactory (the task class at the end) and, with
// COVSHIFT_ELF_ONLY defined, into the packaging tests, which call ShimElf directly. It therefore sticks to APIs that
// netstandard2.0 has.
#nullable enable

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace CovariateShift.Build;

/// <summary>What <see cref="ShimElf.Weaken(byte[], out byte[])"/> found in a shim.</summary>
public enum ShimState
{
    /// <summary>The GLIBCXX_3.4.32 requirement was strong; the returned bytes carry the weak one.</summary>
    Patched,

    /// <summary>The requirement is already weak and the symbol global: nothing to change.</summary>
    AlreadyWeak,

    /// <summary>The shim does not require GLIBCXX_3.4.32 at all: nothing to change.</summary>
    NotRequired,
}

/// <summary>The ELF64 little-endian reading and editing of the shim and of libstdc++ (version sections only).</summary>
public static class ShimElf
{
    /// <summary>The libstdc++ version only the marker symbol needs.</summary>
    public const string Version = "GLIBCXX_3.4.32";

    /// <summary>The marker symbol, std::ios_base_library_init().</summary>
    public const string Symbol = "_ZSt21ios_base_library_initv";

    /// <summary>The file name the shim's version requirement names.</summary>
    public const string Library = "libstdc++.so.6";

    /// <summary>Vernaux flag: a missing version is not an error.</summary>
    public const ushort VerFlgWeak = 0x2;

    /// <summary>.gnu.version value of an unversioned (global) symbol.</summary>
    public const ushort VerNdxGlobal = 1;

    private static readonly char[] PathSeparator = { ':' };

    private static readonly string[] SystemLibraryDirectories =
    {
        "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
        "/usr/lib64", "/lib64", "/usr/lib", "/lib",
    };

    private const uint ShtDynsym = 11;
    private const uint ShtGnuVerdef = 0x6ffffffd;
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const uint ShtGnuVersym = 0x6fffffff;

    /// <summary>
    /// Weakens the GLIBCXX_3.4.32 requirement in an in-memory image of the shim. <paramref name="patched"/> is a new
    /// array when the state is <see cref="ShimState.Patched"/>, otherwise the input itself.
    /// </summary>
    /// <exception cref="InvalidDataException">The image is not a layout this step knows how to edit safely.</exception>
    public static ShimState Weaken(byte[] image, out byte[] patched)
    {
        patched = image;
        var elf = new Image(image);
        var verneed = elf.SingleSection(ShtGnuVerneed, ".gnu.version_r");
        if (verneed is null)
        {
            return ShimState.NotRequired;
        }

        var strtab = elf.Section(verneed.Link, ".gnu.version_r's string table");
        var requirements = new List<(long FlagsAt, ushort Flags, ushort Index)>();
        long need = verneed.Offset;
        for (int n = 0; n < verneed.Info; n++)
        {
            Image.Check(need, 16, verneed, "Verneed entry");
            var file = elf.String(strtab, elf.U32(need + 4));
            int count = elf.U16(need + 2);
            long aux = need + elf.U32(need + 8);
            for (int a = 0; a < count; a++)
            {
                Image.Check(aux, 16, verneed, "Vernaux entry");
                if (elf.String(strtab, elf.U32(aux + 8)) == Version)
                {
                    if (file != Library)
                    {
                        throw Refuse($"{Version} is required from '{file}', expected '{Library}'");
                    }

                    requirements.Add((aux + 4, elf.U16(aux + 4), elf.U16(aux + 6)));
                }

                aux += elf.U32(aux + 12);
            }

            need += elf.U32(need + 12);
        }

        if (requirements.Count == 0)
        {
            return ShimState.NotRequired;
        }

        if (requirements.Count > 1)
        {
            throw Refuse($"{requirements.Count} Vernaux entries name {Version}, expected one");
        }

        var (flagsAt, flags, index) = requirements[0];
        if (flags != 0 && flags != VerFlgWeak)
        {
            throw Refuse($"the flags of the {Version} requirement are 0x{flags:x}, expected 0 or 0x{VerFlgWeak:x} (weak)");
        }

        var dynsym = elf.SingleSection(ShtDynsym, ".dynsym") ?? throw Refuse("there is no .dynsym section");
        var versym = elf.SingleSection(ShtGnuVersym, ".gnu.version") ?? throw Refuse("there is no .gnu.version section");
        var dynstr = elf.Section(dynsym.Link, ".dynsym's string table");
        if (dynsym.EntrySize != 24 || dynsym.Size % 24 != 0 || versym.Size != dynsym.Size / 24 * 2)
        {
            throw Refuse($".dynsym ({dynsym.Size} bytes, entries of {dynsym.EntrySize}) and .gnu.version ({versym.Size} bytes) do not match");
        }

        long markerAt = -1;
        for (long i = 0; i < dynsym.Size / 24; i++)
        {
            long symAt = dynsym.Offset + (i * 24);
            long verAt = versym.Offset + (i * 2);
            var ver = elf.U16(verAt);
            var name = elf.String(dynstr, elf.U32(symAt));
            if (name == Symbol)
            {
                if (elf.U16(symAt + 6) != 0)
                {
                    throw Refuse($"{Symbol} is defined in the shim, expected an undefined reference");
                }

                if (ver != index && ver != VerNdxGlobal)
                {
                    throw Refuse($"{Symbol} has version index {ver}, expected {index} ({Version}) or {VerNdxGlobal} (global)");
                }

                markerAt = verAt;
            }
            else if ((ver & 0x7fff) == index)
            {
                throw Refuse($"symbol '{name}' also needs {Version}; only {Symbol} may be made weak");
            }
        }

        if (markerAt < 0)
        {
            throw Refuse($"{Version} is required but no symbol named {Symbol} was found");
        }

        if (flags == VerFlgWeak && elf.U16(markerAt) == VerNdxGlobal)
        {
            return ShimState.AlreadyWeak;
        }

        patched = (byte[])image.Clone();
        Put16(patched, flagsAt, VerFlgWeak);
        Put16(patched, markerAt, VerNdxGlobal);
        return ShimState.Patched;
    }

    /// <summary>Whether an ELF shared library (libstdc++) defines <paramref name="version"/> in .gnu.version_d.</summary>
    /// <exception cref="InvalidDataException">The file is not an ELF64 little-endian shared library.</exception>
    public static bool DefinesVersion(byte[] library, string version)
    {
        var elf = new Image(library);
        var verdef = elf.SingleSection(ShtGnuVerdef, ".gnu.version_d");
        if (verdef is null)
        {
            return false;
        }

        var strtab = elf.Section(verdef.Link, ".gnu.version_d's string table");
        long def = verdef.Offset;
        for (int n = 0; n < verdef.Info; n++)
        {
            Image.Check(def, 20, verdef, "Verdef entry");
            long aux = def + elf.U32(def + 12);
            Image.Check(aux, 8, verdef, "Verdaux entry");
            if (elf.String(strtab, elf.U32(aux)) == version)
            {
                return true;
            }

            def += elf.U32(def + 16);
        }

        return false;
    }

    /// <summary>
    /// The libstdc++.so.6 the loader would most likely pick: the first found in LD_LIBRARY_PATH, then the usual
    /// system directories. Null when there is none.
    /// </summary>
    public static string? FindLibStdCxx(string? ldLibraryPath)
    {
        var dirs = new List<string>();
        if (!string.IsNullOrEmpty(ldLibraryPath))
        {
            dirs.AddRange(ldLibraryPath!.Split(PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        }

        dirs.AddRange(SystemLibraryDirectories);
        foreach (var dir in dirs)
        {
            var candidate = Path.Combine(dir, Library);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether the step should edit shims: <paramref name="mode"/> "always" yes, "false"/"never" no, "auto" (or empty)
    /// only on Linux when <paramref name="libStdCxx"/> is missing or does not define GLIBCXX_3.4.32.
    /// <paramref name="reason"/> says why, for the build log.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown mode.</exception>
    public static bool ShouldWeaken(string? mode, bool isLinux, string? libStdCxx, out string reason)
    {
        var m = string.IsNullOrEmpty(mode) ? "auto" : mode!.Trim().ToLowerInvariant();
        switch (m)
        {
            case "always":
                reason = "CovariateShiftWeakenGlibcxx=always";
                return true;
            case "false":
            case "never":
                reason = $"CovariateShiftWeakenGlibcxx={mode}";
                return false;
            case "auto":
                break;
            default:
                throw new ArgumentException($"CovariateShiftWeakenGlibcxx='{mode}' is not supported; expected auto, always or false.", nameof(mode));
        }

        if (!isLinux)
        {
            reason = "not Linux";
            return false;
        }

        if (libStdCxx is null)
        {
            reason = $"no {Library} found in LD_LIBRARY_PATH or the system library directories";
            return true;
        }

        if (DefinesVersion(File.ReadAllBytes(libStdCxx), Version))
        {
            reason = $"{libStdCxx} defines {Version}";
            return false;
        }

        reason = $"{libStdCxx} does not define {Version}";
        return true;
    }

    /// <summary>
    /// Edits the shim at <paramref name="path"/> in place when needed. The file is replaced (written beside it, then
    /// renamed), so a hard link to another copy is never written through. Symbolic links are refused.
    /// </summary>
    /// <exception cref="InvalidDataException">The shim is not recognised; the file is left as it was.</exception>
    /// <exception cref="IOException">The path is a symbolic link, or writing failed.</exception>
    public static ShimState WeakenFile(string path)
    {
        var info = new FileInfo(path);
        if ((info.Attributes & FileAttributes.ReparsePoint) != 0)
        {
            throw new IOException($"{path} is a symbolic link; the libstdc++ step edits only real copies in the output folder.");
        }

        byte[] image = File.ReadAllBytes(path);
        ShimState state;
        byte[] patched;
        try
        {
            state = Weaken(image, out patched);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }

        if (state != ShimState.Patched)
        {
            return state;
        }

        var temp = path + ".covshift-tmp";
        File.Copy(path, temp, true); // keeps the file's permissions
        using (var stream = new FileStream(temp, FileMode.Open, FileAccess.Write))
        {
            stream.Write(patched, 0, patched.Length);
        }

        File.Delete(path);
        File.Move(temp, path);
        return state;
    }

    private static void Put16(byte[] bytes, long at, ushort value)
    {
        bytes[at] = (byte)value;
        bytes[at + 1] = (byte)(value >> 8);
    }

    private static InvalidDataException Refuse(string what) =>
        new($"not a libLibTorchSharp.so layout the libstdc++ step recognises: {what}. The file was not changed.");

    private sealed class SectionHeader
    {
        public SectionHeader(int index, uint type, long offset, long size, uint link, uint info, long entrySize)
        {
            Index = index;
            Type = type;
            Offset = offset;
            Size = size;
            Link = link;
            Info = info;
            EntrySize = entrySize;
        }

        public int Index { get; }

        public uint Type { get; }

        public long Offset { get; }

        public long Size { get; }

        public uint Link { get; }

        public uint Info { get; }

        public long EntrySize { get; }
    }

    private sealed class Image
    {
        private readonly byte[] _bytes;
        private readonly List<SectionHeader> _sections = new();

        public Image(byte[] bytes)
        {
            _bytes = bytes;
            if (bytes.Length < 64 || bytes[0] != 0x7f || bytes[1] != (byte)'E' || bytes[2] != (byte)'L' || bytes[3] != (byte)'F')
            {
                throw Refuse("not an ELF file");
            }

            if (bytes[4] != 2 || bytes[5] != 1)
            {
                throw Refuse($"ELF class {bytes[4]}, data {bytes[5]}; expected 64-bit little-endian (2, 1)");
            }

            if (U16(16) != 3)
            {
                throw Refuse($"ELF type {U16(16)}, expected a shared object (3)");
            }

            long shoff = (long)U64(40);
            int shentsize = U16(58);
            int shnum = U16(60);
            if (shnum == 0 || shentsize != 64 || shoff <= 0 || shoff + ((long)shnum * 64) > bytes.Length)
            {
                throw Refuse($"section headers at {shoff} ({shnum} of {shentsize} bytes) do not fit a {bytes.Length}-byte file");
            }

            for (int i = 0; i < shnum; i++)
            {
                long at = shoff + (i * 64L);
                var header = new SectionHeader(i, U32(at + 4), (long)U64(at + 24), (long)U64(at + 32), U32(at + 40), U32(at + 44), (long)U64(at + 56));
                if (header.Type != 8 && (header.Offset < 0 || header.Size < 0 || header.Offset + header.Size > bytes.Length))
                {
                    throw Refuse($"section {i} ({header.Size} bytes at {header.Offset}) lies outside the file");
                }

                _sections.Add(header);
            }
        }

        public SectionHeader? SingleSection(uint type, string what)
        {
            SectionHeader? found = null;
            foreach (var s in _sections)
            {
                if (s.Type == type)
                {
                    if (found is not null)
                    {
                        throw Refuse($"more than one {what} section");
                    }

                    found = s;
                }
            }

            return found;
        }

        public SectionHeader Section(uint index, string what)
        {
            if (index == 0 || index >= _sections.Count || _sections[(int)index].Type != 3)
            {
                throw Refuse($"{what} (section {index}) is not a string table");
            }

            return _sections[(int)index];
        }

        public static void Check(long at, int length, SectionHeader within, string what)
        {
            if (at < within.Offset || at + length > within.Offset + within.Size)
            {
                throw Refuse($"a {what} at {at} lies outside its section ({within.Size} bytes at {within.Offset})");
            }
        }

        public string String(SectionHeader strtab, uint offset)
        {
            if (offset >= strtab.Size)
            {
                throw Refuse($"string offset {offset} outside its string table ({strtab.Size} bytes)");
            }

            long start = strtab.Offset + offset;
            long end = start;
            long limit = strtab.Offset + strtab.Size;
            while (end < limit && _bytes[end] != 0)
            {
                end++;
            }

            if (end == limit)
            {
                throw Refuse($"unterminated string at offset {offset}");
            }

            return Encoding.ASCII.GetString(_bytes, (int)start, (int)(end - start));
        }

        public ushort U16(long at) => (ushort)(_bytes[at] | (_bytes[at + 1] << 8));

        public uint U32(long at) => (uint)(_bytes[at] | (_bytes[at + 1] << 8) | (_bytes[at + 2] << 16) | (_bytes[at + 3] << 24));

        public ulong U64(long at) => U32(at) | ((ulong)U32(at + 4) << 32);
    }
}

#if !COVSHIFT_ELF_ONLY
/// <summary>
/// MSBuild task: weakens the GLIBCXX_3.4.32 requirement of each given libLibTorchSharp.so copy when
/// <see cref="ShimElf.ShouldWeaken"/> says so. Files under <see cref="NuGetPackageRoot"/> are refused.
/// </summary>
public sealed class WeakenGlibcxxRequirement : Microsoft.Build.Utilities.Task
{
    /// <summary>The shim copies in an output or publish folder.</summary>
    [Microsoft.Build.Framework.Required]
    public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

    /// <summary>auto (default), always or false.</summary>
    public string? Mode { get; set; }

    /// <summary>The NuGet packages folder; a file under it is never edited.</summary>
    public string? NuGetPackageRoot { get; set; }

    /// <inheritdoc />
    public override bool Execute()
    {
        try
        {
            var isLinux = RuntimeInformation.IsOSPlatform(OSPlatform.Linux);
            var lib = isLinux ? ShimElf.FindLibStdCxx(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH")) : null;
            if (!ShimElf.ShouldWeaken(Mode, isLinux, lib, out var reason))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"CovariateShift libstdc++ step: not needed ({reason}).");
                return true;
            }

            var root = string.IsNullOrEmpty(NuGetPackageRoot) ? null : Path.GetFullPath(NuGetPackageRoot);
            foreach (var item in Files)
            {
                var path = Path.GetFullPath(item.ItemSpec);
                if (root is not null && path.StartsWith(root.TrimEnd('/') + "/", StringComparison.Ordinal))
                {
                    Log.LogError($"CovariateShift libstdc++ step: {path} is in the NuGet packages folder {root}; only copies in an output folder are edited.");
                    return false;
                }

                var state = ShimElf.WeakenFile(path);
                var importance = state == ShimState.Patched ? Microsoft.Build.Framework.MessageImportance.High : Microsoft.Build.Framework.MessageImportance.Low;
                Log.LogMessage(importance, state switch
                {
                    ShimState.Patched => $"CovariateShift libstdc++ step: {reason}; marked {ShimElf.Version} weak for {ShimElf.Symbol} in {path}",
                    ShimState.AlreadyWeak => $"CovariateShift libstdc++ step: {path} already has the weak {ShimElf.Version} requirement",
                    _ => $"CovariateShift libstdc++ step: {path} does not require {ShimElf.Version}",
                });
            }

            return true;
        }
        catch (Exception e) when (e is InvalidDataException || e is IOException || e is ArgumentException || e is UnauthorizedAccessException)
        {
            Log.LogError($"CovariateShift libstdc++ step: {e.Message}");
            return false;
        }
    }
}
#endif
