using System.Buffers.Binary;
using System.Text;

namespace CovariateShift.Packaging.Tests;

/// <summary>One Vernaux entry of a shared object: the file it is needed from and its version.</summary>
public sealed record VersionNeed(string File, string Name, uint Hash, ushort Flags, ushort Index);

/// <summary>
/// A second, separate reader of an ELF64 shared object's version requirements, for checking the libstdc++ step. It
/// does not use section headers at all (the step's own code does): it follows the program headers to the dynamic
/// segment, takes DT_VERNEED/DT_VERNEEDNUM, DT_VERSYM, DT_SYMTAB and DT_STRTAB from it, maps their addresses to file
/// offsets through the PT_LOAD segments, and counts the dynamic symbols from DT_GNU_HASH.
/// </summary>
public sealed class IndependentElfReader
{
    private const long PtLoad = 1, PtDynamic = 2;
    private const long DtNull = 0, DtStrtab = 5, DtSymtab = 6, DtGnuHash = 0x6ffffef5;
    private const long DtVersym = 0x6ffffff0, DtVerneed = 0x6ffffffe, DtVerneedNum = 0x6fffffff;

    private readonly byte[] _b;
    private readonly List<(ulong VAddr, ulong Offset, ulong Size)> _loads = [];
    private readonly Dictionary<long, ulong> _dynamic = [];

    public IndependentElfReader(byte[] bytes)
    {
        _b = bytes;
        if (!bytes.AsSpan(0, 4).SequenceEqual("\u007fELF"u8) || bytes[4] != 2 || bytes[5] != 1)
        {
            throw new InvalidDataException("not an ELF64 little-endian file");
        }

        var phoff = (long)U64(32);
        int phentsize = U16(54), phnum = U16(56);
        long dynOffset = -1, dynSize = 0;
        for (int i = 0; i < phnum; i++)
        {
            var ph = phoff + (i * phentsize);
            var type = U32(ph);
            if (type == PtLoad)
            {
                _loads.Add((U64(ph + 16), U64(ph + 8), U64(ph + 32)));
            }
            else if (type == PtDynamic)
            {
                dynOffset = (long)U64(ph + 8);
                dynSize = (long)U64(ph + 32);
            }
        }

        for (var d = dynOffset; d < dynOffset + dynSize; d += 16)
        {
            var tag = (long)U64(d);
            if (tag == DtNull)
            {
                break;
            }

            _dynamic.TryAdd(tag, U64(d + 8));
        }

        Needs = ReadNeeds();
        SymbolVersions = ReadSymbolVersions();
    }

    /// <summary>Every version requirement, in file order.</summary>
    public IReadOnlyList<VersionNeed> Needs { get; }

    /// <summary>Every dynamic symbol (name, undefined?, .gnu.version value), in symbol-table order.</summary>
    public IReadOnlyList<(string Name, bool Undefined, ushort Version)> SymbolVersions { get; }

    private List<VersionNeed> ReadNeeds()
    {
        var needs = new List<VersionNeed>();
        var at = Offset(_dynamic[DtVerneed]);
        for (ulong n = 0; n < _dynamic[DtVerneedNum]; n++)
        {
            var file = Str(U32(at + 4));
            var aux = at + U32(at + 8);
            for (int a = 0; a < U16(at + 2); a++)
            {
                needs.Add(new VersionNeed(file, Str(U32(aux + 8)), U32(aux), U16(aux + 4), U16(aux + 6)));
                aux += U32(aux + 12);
            }

            at += U32(at + 12);
        }

        return needs;
    }

    private List<(string, bool, ushort)> ReadSymbolVersions()
    {
        var symtab = Offset(_dynamic[DtSymtab]);
        var versym = Offset(_dynamic[DtVersym]);
        var list = new List<(string, bool, ushort)>();
        for (long i = 0; i < CountSymbols(); i++)
        {
            var sym = symtab + (i * 24);
            list.Add((Str(U32(sym)), U16(sym + 6) == 0, U16(versym + (i * 2))));
        }

        return list;
    }

    // GNU hash: [nbuckets, symoffset, bloom words, shift], bloom (8 bytes each), buckets, chains. The last symbol is
    // the end of the chain that starts at the largest bucket value (a chain ends at a hash with its low bit set).
    private long CountSymbols()
    {
        var h = Offset(_dynamic[DtGnuHash]);
        uint nbuckets = U32(h), symoffset = U32(h + 4), bloom = U32(h + 8);
        var buckets = h + 16 + (bloom * 8L);
        var chains = buckets + (nbuckets * 4L);
        uint last = 0;
        for (int i = 0; i < nbuckets; i++)
        {
            last = Math.Max(last, U32(buckets + (i * 4L)));
        }

        if (last < symoffset)
        {
            return symoffset;
        }

        while ((U32(chains + ((last - symoffset) * 4L)) & 1) == 0)
        {
            last++;
        }

        return last + 1;
    }

    private long Offset(ulong vaddr)
    {
        foreach (var (v, o, size) in _loads)
        {
            if (vaddr >= v && vaddr < v + size)
            {
                return (long)(vaddr - v + o);
            }
        }

        throw new InvalidDataException($"address 0x{vaddr:x} is in no PT_LOAD segment");
    }

    private string Str(uint offset)
    {
        var start = Offset(_dynamic[DtStrtab]) + offset;
        var end = Array.IndexOf(_b, (byte)0, (int)start);
        return Encoding.ASCII.GetString(_b, (int)start, end - (int)start);
    }

    private ushort U16(long at) => BinaryPrimitives.ReadUInt16LittleEndian(_b.AsSpan((int)at));

    private uint U32(long at) => BinaryPrimitives.ReadUInt32LittleEndian(_b.AsSpan((int)at));

    private ulong U64(long at) => BinaryPrimitives.ReadUInt64LittleEndian(_b.AsSpan((int)at));
}
