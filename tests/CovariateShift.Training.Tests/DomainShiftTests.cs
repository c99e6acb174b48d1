using CovariateShift.Training.Data;
using CovariateShift.Training.Shifts;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Tests;

/// <summary>Each --shift part against its formula on small tensors, composition, seeding, parsing and bad specs.</summary>
public sealed class DomainShiftTests
{
    /// <summary>Random pixels in [0, 1], [n, c, h, w], from a fixed seed.</summary>
    private static float[] RandomPixels(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    private static float[] Apply(ImageShift shift, float[] pixels, long[] shape, Generator? generator = null)
    {
        using var x = tensor(pixels, shape, ScalarType.Float32);
        using var y = shift.ApplyToPixels(x, generator);
        Assert.Equal(shape, y.shape);
        return y.data<float>().ToArray();
    }

    private static void Close(double expected, double actual, double tolerance = 1e-6) =>
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"expected {expected}, got {actual}");

    [Fact]
    public void Brightness_adds_and_clips()
    {
        var p = RandomPixels(2 * 3 * 4 * 5, 1);
        var got = Apply(new BrightnessShift(0.3), p, [2, 3, 4, 5]);
        for (int i = 0; i < p.Length; i++) Close(Math.Min(1, p[i] + 0.3), got[i]);
        got = Apply(new BrightnessShift(-0.3), p, [2, 3, 4, 5]);
        for (int i = 0; i < p.Length; i++) Close(Math.Max(0, p[i] - 0.3), got[i]);
    }

    [Fact]
    public void Contrast_scales_about_each_images_own_mean()
    {
        var p = RandomPixels(3 * 2 * 4 * 4, 2);
        var got = Apply(new ContrastShift(1.7), p, [3, 2, 4, 4]);
        const int per = 2 * 4 * 4;
        for (int n = 0; n < 3; n++)
        {
            double m = p.Skip(n * per).Take(per).Select(v => (double)v).Average();
            for (int k = 0; k < per; k++) Close(Math.Clamp(m + 1.7 * (p[n * per + k] - m), 0, 1), got[n * per + k], 2e-6);
        }
    }

    [Fact]
    public void Invert_is_one_minus_p()
    {
        var p = RandomPixels(60, 3);
        var got = Apply(new InvertShift(), p, [1, 3, 4, 5]);
        for (int i = 0; i < p.Length; i++) Close(1 - p[i], got[i]);
    }

    [Fact]
    public void Noise_is_sigma_times_the_seeded_standard_normal_then_clipped()
    {
        var p = Enumerable.Repeat(0.5f, 4 * 1 * 16 * 16).ToArray();
        long[] shape = [4, 1, 16, 16];
        using var g1 = new Generator(42);
        var got = Apply(new NoiseShift(0.1), p, shape, g1);
        using var g2 = new Generator(42);
        using var z = randn(shape, dtype: ScalarType.Float32, generator: g2);
        var zs = z.data<float>().ToArray();
        for (int i = 0; i < p.Length; i++) Close(Math.Clamp(0.5 + 0.1 * zs[i], 0, 1), got[i]);
        var d = got.Select(v => (v - 0.5) / 0.1).ToArray();
        double mean = d.Average(), sd = Math.Sqrt(d.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, -4 / 32.0, 4 / 32.0);   // 1024 draws: standard error 1/32
        Assert.InRange(sd, 0.9, 1.1);
    }

    [Fact]
    public void Rotate_by_90_is_rot90_and_by_180_flips_both_axes()
    {
        var p = RandomPixels(2 * 1 * 5 * 5, 4);
        long[] shape = [2, 1, 5, 5];
        using var x = tensor(p, shape, ScalarType.Float32);
        using var rot = rot90(x, 1, (2, 3));
        var expected = rot.data<float>().ToArray();
        var got = Apply(new RotateShift(90), p, shape);
        for (int i = 0; i < p.Length; i++) Close(expected[i], got[i], 1e-5);
        // The top-right pixel moves to the top-left corner: counter-clockwise as displayed.
        Close(p[4], got[0], 1e-5);
        using var flip = x.flip(2, 3);
        expected = flip.data<float>().ToArray();
        got = Apply(new RotateShift(180), p, shape);
        for (int i = 0; i < p.Length; i++) Close(expected[i], got[i], 1e-5);
    }

    [Fact]
    public void Rotate_by_30_interpolates_bilinearly_at_the_rotated_position_and_fills_black_outside()
    {
        const int h = 6, w = 7;
        var p = RandomPixels(h * w, 5);
        var got = Apply(new RotateShift(30), p, [1, 1, h, w]);
        double c = Math.Cos(Math.PI / 6), s = Math.Sin(Math.PI / 6), cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
        double Pixel(int i, int j) => i < 0 || j < 0 || i >= h || j >= w ? 0 : p[i * w + j];
        for (int i = 0; i < h; i++)
        {
            for (int j = 0; j < w; j++)
            {
                double x = c * (j - cx) - s * (i - cy) + cx, y = s * (j - cx) + c * (i - cy) + cy;
                int x0 = (int)Math.Floor(x), y0 = (int)Math.Floor(y);
                double fx = x - x0, fy = y - y0;
                double v = (1 - fy) * ((1 - fx) * Pixel(y0, x0) + fx * Pixel(y0, x0 + 1)) + fy * ((1 - fx) * Pixel(y0 + 1, x0) + fx * Pixel(y0 + 1, x0 + 1));
                Close(v, got[i * w + j], 1e-5);
            }
        }

        Assert.Contains(got, v => v == 0);   // corners rotate in from outside
    }

    [Fact]
    public void Blur_is_the_direct_2d_gaussian_sum_with_black_outside()
    {
        const int h = 7, w = 6;
        var p = RandomPixels(2 * h * w, 6);
        var shift = new BlurShift(0.8);
        var got = Apply(shift, p, [1, 2, h, w]);
        int r = (int)Math.Ceiling(3 * 0.8);
        double norm = Enumerable.Range(-r, 2 * r + 1).Sum(t => Math.Exp(-t * t / (2 * 0.64)));
        Assert.Equal(2 * r + 1, shift.Kernel().Length);
        for (int ch = 0; ch < 2; ch++)
        {
            for (int i = 0; i < h; i++)
            {
                for (int j = 0; j < w; j++)
                {
                    double sum = 0;
                    for (int a = -r; a <= r; a++)
                    {
                        for (int b = -r; b <= r; b++)
                        {
                            int ii = i + a, jj = j + b;
                            if (ii < 0 || jj < 0 || ii >= h || jj >= w) continue;
                            sum += p[ch * h * w + ii * w + jj] * Math.Exp(-(a * a + b * b) / (2 * 0.64)) / (norm * norm);
                        }
                    }

                    Close(sum, got[ch * h * w + i * w + j], 1e-5);
                }
            }
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(-1)]
    public void Translate_moves_down_and_right_and_fills_black(int t)
    {
        const int h = 5, w = 6;
        var p = RandomPixels(2 * h * w, 7);
        var got = Apply(new TranslateShift(t), p, [2, 1, h, w]);
        for (int n = 0; n < 2; n++)
        {
            for (int i = 0; i < h; i++)
            {
                for (int j = 0; j < w; j++)
                {
                    int si = i - t, sj = j - t;
                    double expected = si < 0 || sj < 0 || si >= h || sj >= w ? 0 : p[n * h * w + si * w + sj];
                    Assert.Equal(expected, got[n * h * w + i * w + j]);
                }
            }
        }
    }

    private static ImageDataset Standardized(float[] pixels, long[] shape, long[] labels, PixelStandardization s, int classes = 10)
    {
        using var scope = NewDisposeScope();
        var x = tensor(pixels, shape, ScalarType.Float32).sub((float)s.Mean).div_((float)s.Std);
        return new ImageDataset("toy", x.MoveToOuterDisposeScope(), tensor(labels, ScalarType.Int64).MoveToOuterDisposeScope(), classes);
    }

    [Fact]
    public void Apply_works_in_pixel_space_composes_in_order_and_restandardizes()
    {
        var s = new PixelStandardization(0.3, 0.4);
        var p = RandomPixels(4 * 1 * 3 * 3, 8);
        using var source = Standardized(p, [4, 1, 3, 3], [0, 1, 2, 3], s);
        using var target = DomainShift.Parse("invert, brightness:0.25").Apply(source, s, seed: 0);
        Assert.Equal("toy+invert,brightness:0.25", target.Name);
        var x = target.Images.data<float>().ToArray();
        for (int i = 0; i < p.Length; i++) Close((Math.Min(1, 1 - p[i] + 0.25) - 0.3) / 0.4, x[i], 1e-5);
        // The other order gives the other formula: not commutative.
        using var other = DomainShift.Parse("brightness:0.25,invert").Apply(source, s, seed: 0);
        x = other.Images.data<float>().ToArray();
        for (int i = 0; i < p.Length; i++) Close((1 - Math.Min(1, p[i] + 0.25) - 0.3) / 0.4, x[i], 1e-5);
        // The source is unchanged.
        var src = source.Images.data<float>().ToArray();
        for (int i = 0; i < p.Length; i++) Close((p[i] - 0.3) / 0.4, src[i], 1e-6);
    }

    [Fact]
    public void Class_subset_keeps_the_named_classes_with_their_labels_and_images()
    {
        var s = PixelStandardization.None;
        var p = RandomPixels(6 * 4, 9);
        using var source = Standardized(p, [6, 1, 2, 2], [5, 0, 3, 4, 9, 2], s);
        var shift = DomainShift.Parse("classes:0-3+9");
        Assert.Equal("classes:0-3+9", shift.Spec);
        using var target = shift.Apply(source, s, seed: 0);
        Assert.Equal([0L, 3, 9, 2], target.Labels.data<long>().ToArray());
        var x = target.Images.data<float>().ToArray();
        int[] kept = [1, 2, 4, 5];
        for (int k = 0; k < kept.Length; k++)
        {
            for (int e = 0; e < 4; e++) Close(p[kept[k] * 4 + e], x[k * 4 + e]);
        }

        Assert.Equal(10, target.Classes);
        var empty = Assert.Throws<ArgumentException>(() => DomainShift.Parse("classes:6-8").Apply(source, s, 0));
        Assert.Contains("keeps no example", empty.Message, StringComparison.Ordinal);
        var tooLarge = Assert.Throws<ArgumentException>(() => DomainShift.Parse("classes:10").Apply(source, s, 0));
        Assert.Contains("classes 0-9", tooLarge.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Same_shift_and_seed_give_identical_data_and_another_seed_does_not()
    {
        var s = new PixelStandardization(0.2, 0.35);
        var p = RandomPixels(8 * 1 * 6 * 6, 10);
        using var source = Standardized(p, [8, 1, 6, 6], [0, 1, 2, 3, 4, 5, 6, 7], s);
        var shift = DomainShift.Parse("noise:0.3,rotate:20,blur:0.7,translate:1,contrast:0.8");
        using var a = shift.Apply(source, s, seed: 5);
        using var b = DomainShift.Parse(shift.Spec).Apply(source, s, seed: 5);
        using var c = shift.Apply(source, s, seed: 6);
        Assert.Equal(a.Images.data<float>().ToArray(), b.Images.data<float>().ToArray());
        Assert.NotEqual(a.Images.data<float>().ToArray(), c.Images.data<float>().ToArray());
    }

    [Theory]
    [InlineData("brightness:0.2,noise:0.5,rotate:-15,blur:1,classes:0-4,translate:2,contrast:1.5,invert")]
    [InlineData("NOISE:0.5 , Rotate:20")]
    public void Parse_round_trips_through_spec(string text)
    {
        var shift = DomainShift.Parse(text);
        Assert.Equal(shift, DomainShift.Parse(shift.Spec));
        Assert.Equal(text.Split(',').Length, shift.Parts.Count);
    }

    [Theory]
    [InlineData("noise:0.5,sharpen:2", "'sharpen:2' (item 2", "unknown shift 'sharpen'")]
    [InlineData("noise", "'noise'", "needs a value")]
    [InlineData("noise:-1", "'noise:-1'", "(0, 10]")]
    [InlineData("noise:abc", "'noise:abc'", "'abc' is not a number")]
    [InlineData("invert:1", "'invert:1'", "takes no value")]
    [InlineData("translate:1.5", "'translate:1.5'", "whole number")]
    [InlineData("classes:4-0", "'classes:4-0'", "ends before it starts")]
    [InlineData("classes:a", "'classes:a'", "not a class")]
    [InlineData("rotate:20,,blur:1", "item 2", "empty part")]
    public void Bad_specs_name_the_wrong_part_and_list_the_valid_ones(string spec, string part, string what)
    {
        var e = Assert.Throws<FormatException>(() => DomainShift.Parse(spec));
        Assert.Contains(part, e.Message, StringComparison.Ordinal);
        Assert.Contains(what, e.Message, StringComparison.Ordinal);
        foreach (var form in DomainShift.ValidForms) Assert.Contains(form, e.Message, StringComparison.Ordinal);
    }
}
