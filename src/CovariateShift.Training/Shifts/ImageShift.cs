using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Shifts;

/// <summary>
/// One part of a <see cref="DomainShift"/>. Every image transform is defined on pixel intensities p in [0, 1]
/// (images as float32 [N, C, H, W]); its result is clipped to [0, 1]. Parsed from the <c>--shift</c> syntax
/// by <see cref="DomainShift.Parse"/>; <see cref="Spec"/> gives that syntax back.
/// </summary>
public abstract record ImageShift
{
    /// <summary>The part in <c>--shift</c> syntax (e.g. <c>noise:0.5</c>), invariant culture.</summary>
    public abstract string Spec { get; }

    /// <summary>
    /// The shifted images: a new float32 tensor of the same shape, in [0, 1]. <paramref name="pixels"/> is not changed.
    /// <paramref name="generator"/> supplies randomness (noise); transforms without randomness ignore it.
    /// </summary>
    public abstract Tensor ApplyToPixels(Tensor pixels, Generator? generator);

    /// <summary>Examples to keep given their labels (int64 [N]): a bool [N] mask, or null to keep all (every image transform).</summary>
    public virtual Tensor? KeepMask(Tensor labels) => null;

    /// <summary>Clips to [0, 1].</summary>
    protected static Tensor Clip(Tensor t) => t.clamp(0f, 1f);
}

/// <summary><c>brightness:B</c>: p' = clip(p + B). B in [−1, 1].</summary>
/// <param name="Delta">Added to every pixel intensity.</param>
public sealed record BrightnessShift(double Delta) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => FormattableString.Invariant($"brightness:{Delta}");

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator) => Clip(pixels.add((float)Delta));
}

/// <summary>
/// <c>contrast:C</c>: p' = clip(m + C·(p − m)) with m the image's own mean intensity (over its channels and pixels).
/// C = 1 changes nothing, 0 &lt;= C &lt; 1 lowers the contrast (0: a flat grey image of the mean), C &gt; 1 raises it.
/// </summary>
/// <param name="Factor">The contrast factor C &gt;= 0.</param>
public sealed record ContrastShift(double Factor) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => FormattableString.Invariant($"contrast:{Factor}");

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var m = pixels.mean([1, 2, 3], keepdim: true);
        return Clip(pixels.sub(m).mul_((float)Factor).add_(m)).MoveToOuterDisposeScope();
    }
}

/// <summary><c>invert</c>: p' = 1 − p.</summary>
public sealed record InvertShift : ImageShift
{
    /// <inheritdoc />
    public override string Spec => "invert";

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator) => Clip(pixels.neg().add_(1f));
}

/// <summary>
/// <c>noise:SIGMA</c>: p' = clip(p + SIGMA·z), z ~ N(0, 1) independently per pixel, drawn from the seeded generator
/// (the same seed gives the same noise). SIGMA &gt; 0, in pixel units (1 = the full intensity range).
/// </summary>
/// <param name="Sigma">Standard deviation of the added Gaussian noise.</param>
public sealed record NoiseShift(double Sigma) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => FormattableString.Invariant($"noise:{Sigma}");

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var z = randn(pixels.shape, dtype: ScalarType.Float32, generator: generator);
        return Clip(z.mul_((float)Sigma).add_(pixels)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// <c>rotate:DEGREES</c>: every image rotated by DEGREES counter-clockwise (as displayed, rows downwards) about its centre
/// ((H − 1)/2, (W − 1)/2). Output pixel (i, j) takes the bilinear interpolation of the input at
/// x = cos θ·(j − cx) − sin θ·(i − cy) + cx, y = sin θ·(j − cx) + cos θ·(i − cy) + cy; positions outside the image count as 0 (black).
/// </summary>
/// <param name="Degrees">Rotation angle in degrees (finite; negative = clockwise).</param>
public sealed record RotateShift(double Degrees) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => FormattableString.Invariant($"rotate:{Degrees}");

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator)
    {
        var (src, shape) = PixelArrays.Read(pixels);
        int h = (int)shape[2], w = (int)shape[3], plane = h * w;
        var dst = new float[src.Length];
        double theta = Degrees * Math.PI / 180, cos = Math.Cos(theta), sin = Math.Sin(theta);
        double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
        var sx = new double[plane];
        var sy = new double[plane];
        for (int i = 0; i < h; i++)
        {
            for (int j = 0; j < w; j++)
            {
                sx[i * w + j] = cos * (j - cx) - sin * (i - cy) + cx;
                sy[i * w + j] = sin * (j - cx) + cos * (i - cy) + cy;
            }
        }

        Parallel.For(0, src.Length / plane, p =>
        {
            var s = src.AsSpan(p * plane, plane);
            var d = dst.AsSpan(p * plane, plane);
            for (int k = 0; k < plane; k++) d[k] = Math.Clamp(PixelArrays.Bilinear(s, h, w, sy[k], sx[k]), 0f, 1f);
        });
        return tensor(dst, shape, ScalarType.Float32);
    }
}

/// <summary>
/// <c>blur:SIGMA</c>: Gaussian blur, the separable kernel k(t) ∝ exp(−t² / (2 SIGMA²)) for integer t in
/// [−⌈3 SIGMA⌉, ⌈3 SIGMA⌉], normalized to sum 1, applied along rows then columns of every channel; positions outside the
/// image count as 0 (black). SIGMA &gt; 0 in pixels.
/// </summary>
/// <param name="Sigma">Standard deviation of the Gaussian in pixels.</param>
public sealed record BlurShift(double Sigma) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => FormattableString.Invariant($"blur:{Sigma}");

    /// <summary>The normalized 1-D kernel, length 2⌈3σ⌉ + 1.</summary>
    public float[] Kernel()
    {
        int r = (int)Math.Ceiling(3 * Sigma);
        var k = new double[2 * r + 1];
        for (int t = -r; t <= r; t++) k[t + r] = Math.Exp(-(t * (double)t) / (2 * Sigma * Sigma));
        double sum = k.Sum();
        return k.Select(v => (float)(v / sum)).ToArray();
    }

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var k = Kernel();
        int r = k.Length / 2;
        long n = pixels.shape[0], c = pixels.shape[1], h = pixels.shape[2], w = pixels.shape[3];
        using var noGrad = no_grad();
        var flat = pixels.reshape(n * c, 1, h, w);
        var row = tensor(k, [1, 1, 1, k.Length], ScalarType.Float32).to(pixels.device);
        var col = tensor(k, [1, 1, k.Length, 1], ScalarType.Float32).to(pixels.device);
        var blurred = nn.functional.conv2d(flat, row, padding: [0, r]);
        blurred = nn.functional.conv2d(blurred, col, padding: [r, 0]);
        return Clip(blurred.reshape(n, c, h, w)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// <c>translate:PIXELS</c>: every image moved PIXELS down and PIXELS right (negative: up and left):
/// p'(i, j) = p(i − PIXELS, j − PIXELS), and 0 (black) where that falls outside the image.
/// </summary>
/// <param name="Pixels">The offset in whole pixels along both axes.</param>
public sealed record TranslateShift(int Pixels) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => FormattableString.Invariant($"translate:{Pixels}");

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator)
    {
        var (src, shape) = PixelArrays.Read(pixels);
        int h = (int)shape[2], w = (int)shape[3], plane = h * w, t = Pixels;
        var dst = new float[src.Length];
        for (int p = 0; p < src.Length / plane; p++)
        {
            for (int i = Math.Max(0, t); i < Math.Min(h, h + t); i++)
            {
                for (int j = Math.Max(0, t); j < Math.Min(w, w + t); j++) dst[p * plane + i * w + j] = src[p * plane + (i - t) * w + (j - t)];
            }
        }

        return Clip(tensor(dst, shape, ScalarType.Float32));
    }
}

/// <summary>
/// <c>classes:A-B</c> (or <c>classes:A</c>, several joined with <c>+</c>, e.g. <c>classes:0-2+7</c>): keeps only the
/// examples whose label is one of the classes. Labels keep their values (class 7 stays 7); images are unchanged.
/// </summary>
/// <param name="Classes">The classes kept, ascending, distinct.</param>
public sealed record ClassSubsetShift(IReadOnlyList<int> Classes) : ImageShift
{
    /// <inheritdoc />
    public override string Spec => "classes:" + string.Join('+', Ranges().Select(r => r.A == r.B ? FormattableString.Invariant($"{r.A}") : FormattableString.Invariant($"{r.A}-{r.B}")));

    /// <inheritdoc />
    public override Tensor ApplyToPixels(Tensor pixels, Generator? generator) => pixels.clone();

    /// <inheritdoc />
    public override Tensor? KeepMask(Tensor labels)
    {
        using var scope = NewDisposeScope();
        var keep = tensor(Classes.Select(c => (long)c).ToArray(), ScalarType.Int64);
        return labels.unsqueeze(1).eq(keep.unsqueeze(0)).any(1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public bool Equals(ClassSubsetShift? other) => other is not null && Classes.SequenceEqual(other.Classes);

    /// <inheritdoc />
    public override int GetHashCode() => Classes.Aggregate(17, (h, c) => h * 31 + c);

    private IEnumerable<(int A, int B)> Ranges()
    {
        int i = 0;
        while (i < Classes.Count)
        {
            int j = i;
            while (j + 1 < Classes.Count && Classes[j + 1] == Classes[j] + 1) j++;
            yield return (Classes[i], Classes[j]);
            i = j + 1;
        }
    }
}

/// <summary>Reads a CPU float32 tensor into an array and interpolates in a plane.</summary>
internal static class PixelArrays
{
    public static (float[] Data, long[] Shape) Read(Tensor pixels)
    {
        if (pixels.dim() != 4)
            throw new ArgumentException($"Images must be [N, C, H, W]; got shape [{string.Join(", ", pixels.shape)}].", nameof(pixels));
        using var cpu = pixels.to(ScalarType.Float32, CPU).contiguous();
        return (cpu.data<float>().ToArray(), pixels.shape);
    }

    /// <summary>Bilinear interpolation at (y, x) in an h×w plane; samples outside the plane are 0.</summary>
    public static float Bilinear(ReadOnlySpan<float> plane, int h, int w, double y, double x)
    {
        int y0 = (int)Math.Floor(y), x0 = (int)Math.Floor(x);
        double fy = y - y0, fx = x - x0;
        double v = At(plane, h, w, y0, x0) * (1 - fy) * (1 - fx) + At(plane, h, w, y0, x0 + 1) * (1 - fy) * fx
            + At(plane, h, w, y0 + 1, x0) * fy * (1 - fx) + At(plane, h, w, y0 + 1, x0 + 1) * fy * fx;
        return (float)v;
    }

    private static double At(ReadOnlySpan<float> plane, int h, int w, int i, int j) =>
        i < 0 || j < 0 || i >= h || j >= w ? 0 : plane[i * w + j];
}
