#!/usr/bin/env bash
# One core's read bandwidth from memory: a plain vectorized sum (System.Numerics.Vector<float>, four accumulators) over
# a buffer read cold, that is right after reading a 512 MB buffer elsewhere, and read again right after. It is the
# floor of any exact CPU statistic over a layer's outputs (the Cost section of src/CovariateShift/README.md). No
# TorchSharp involved; the median and range over the repetitions, in GB/s.
#
#   scripts/read-bandwidth.sh            # buffers of 13 MB (one bench CNN conv output) and 76 MB (all of its outputs)
#   scripts/read-bandwidth.sh 4 76 256   # other sizes, in MB
set -euo pipefail
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(13 76)
for mb in "${sizes[@]}"; do
  [[ "$mb" =~ ^[0-9]+$ ]] && [ "$mb" -ge 1 ] && [ "$mb" -le 4096 ] \
    || { echo "size '$mb': expected a whole number of MB between 1 and 4096" >&2; exit 2; }
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/torch-harness.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
standalone_project "$work" ReadBandwidth
cat > "$work/Program.cs" <<'EOF'
using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;

const int Repetitions = 12;
long evictLength = 128L << 20;   // floats: 512 MB
unsafe
{
    float* evict = (float*)NativeMemory.AlignedAlloc((nuint)(evictLength * 4), 64);
    for (long i = 0; i < evictLength; i += 1 << 20) new Span<float>(evict + i, 1 << 20).Fill(1);
    Console.WriteLine($"one thread, Vector<float>.Count = {Vector<float>.Count}, {Repetitions} repetitions, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
    double sink = 0;
    foreach (var arg in args)
    {
        long mb = long.Parse(arg, CultureInfo.InvariantCulture);
        long length = mb * (1 << 20) / 4;
        float* buffer = (float*)NativeMemory.AlignedAlloc((nuint)(length * 4), 64);
        for (long i = 0; i < length; i++) buffer[i] = i % 7;
        var cold = new List<double>();
        var again = new List<double>();
        for (int r = 0; r < Repetitions; r++)
        {
            sink += Sum(evict, evictLength);
            long t0 = Stopwatch.GetTimestamp();
            sink += Sum(buffer, length);
            long t1 = Stopwatch.GetTimestamp();
            sink += Sum(buffer, length);
            long t2 = Stopwatch.GetTimestamp();
            cold.Add(length * 4.0 / Stopwatch.GetElapsedTime(t0, t1).TotalSeconds / 1e9);
            again.Add(length * 4.0 / Stopwatch.GetElapsedTime(t1, t2).TotalSeconds / 1e9);
        }
        cold.Sort();
        again.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{mb} MB: cold {Median(cold):F1} GB/s ({cold[0]:F1}-{cold[^1]:F1}), read again {Median(again):F1} GB/s ({again[0]:F1}-{again[^1]:F1})"));
        NativeMemory.AlignedFree(buffer);
    }
    NativeMemory.AlignedFree(evict);
    if (double.IsNaN(sink)) Console.WriteLine();   // keeps the sums from being optimized away
}

static double Median(List<double> sorted) => (sorted[(sorted.Count - 1) / 2] + sorted[sorted.Count / 2]) / 2;

static unsafe double Sum(float* p, long length)
{
    int w = Vector<float>.Count;
    Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
    long i = 0;
    for (; i + 4 * w <= length; i += 4 * w)
    {
        a0 += *(Vector<float>*)(p + i);
        a1 += *(Vector<float>*)(p + i + w);
        a2 += *(Vector<float>*)(p + i + 2 * w);
        a3 += *(Vector<float>*)(p + i + 3 * w);
    }
    double total = Vector.Sum((a0 + a1) + (a2 + a3));
    for (; i < length; i++) total += p[i];
    return total;
}
EOF
dotnet build -c Release -o "$work/out" "$work/ReadBandwidth.csproj" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; exit 1; }
dotnet "$work/out/ReadBandwidth.dll" "${sizes[@]}"
