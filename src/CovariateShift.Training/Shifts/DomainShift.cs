using System.Globalization;
using CovariateShift.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Shifts;

/// <summary>
/// A target domain built from a source image data set: a list of <see cref="ImageShift"/>s applied in the order given
/// (the <c>--shift</c> syntax: comma-separated, e.g. <c>noise:0.5,rotate:20</c>).
/// </summary>
/// <remarks>
/// <para><b>Pixel space vs standardized space.</b> The data sets hold standardized images x = (p − mean) / std (see
/// <see cref="PixelStandardization"/>; Fashion-MNIST uses the training pixels' mean and std). <see cref="Apply"/> maps x
/// back to pixels p = x·std + mean, clips p to [0, 1], applies every image transform to p (each clips its result to
/// [0, 1]) and standardizes again with the same mean and std. So <c>brightness:0.2</c> adds 0.2 of the full
/// intensity range (0.2 / std in standardized units, before clipping), and <c>noise:0.5</c> has a standard deviation of
/// half the intensity range (0.5 / std standardized, before clipping). The model sees the standardized result.</para>
/// <para><b>Seeded.</b> One generator seeded with the seed given to <see cref="Apply"/> supplies all randomness (only
/// <c>noise</c> draws), consumed in list order: the same shift list and seed give bit-identical data.</para>
/// </remarks>
public sealed record DomainShift(IReadOnlyList<ImageShift> Parts)
{
    /// <summary>The forms <see cref="Parse"/> accepts.</summary>
    public static readonly IReadOnlyList<string> ValidForms =
        ["brightness:B", "contrast:C", "invert", "noise:SIGMA", "rotate:DEGREES", "blur:SIGMA", "classes:A-B", "translate:PIXELS"];

    /// <summary>No shift (the source domain).</summary>
    public static DomainShift None { get; } = new([]);

    /// <summary>The list in <c>--shift</c> syntax (empty for <see cref="None"/>).</summary>
    public string Spec => string.Join(',', Parts.Select(p => p.Spec));

    /// <inheritdoc />
    public override string ToString() => Parts.Count == 0 ? "none" : Spec;

    /// <inheritdoc />
    public bool Equals(DomainShift? other) => other is not null && Parts.SequenceEqual(other.Parts);

    /// <inheritdoc />
    public override int GetHashCode() => Parts.Aggregate(17, (h, p) => h * 31 + p.GetHashCode());

    /// <summary>
    /// Parses a comma-separated list, e.g. <c>brightness:0.2,noise:0.5,classes:0-4</c> (invariant culture, names are
    /// case-insensitive, spaces around parts are ignored). An empty string or <c>none</c> is <see cref="None"/>.
    /// </summary>
    /// <exception cref="FormatException">A part is unknown, lacks or has a superfluous value, or its value is out of range;
    /// the message quotes the part, says what is wrong and lists the valid forms.</exception>
    public static DomainShift Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (string.IsNullOrWhiteSpace(spec) || spec.Trim().Equals("none", StringComparison.OrdinalIgnoreCase)) return None;
        var parts = spec.Split(',', StringSplitOptions.TrimEntries);
        return new DomainShift(parts.Select((p, i) => ParsePart(p, i, spec)).ToList());
    }

    private static ImageShift ParsePart(string part, int index, string spec)
    {
        string Fail(string what) =>
            $"Shift part '{part}' (item {index + 1} of '{spec}'): {what}. Valid parts: {string.Join(", ", ValidForms)}, comma-separated.";
        if (part.Length == 0) throw new FormatException(Fail("empty part"));
        int colon = part.IndexOf(':', StringComparison.Ordinal);
        var name = (colon < 0 ? part : part[..colon]).Trim().ToLowerInvariant();
        string? value = colon < 0 ? null : part[(colon + 1)..].Trim();

        double Number(double min, double max, string range)
        {
            if (value is null or "") throw new FormatException(Fail($"'{name}' needs a value ({range})"));
            if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v))
                throw new FormatException(Fail($"'{value}' is not a number"));
            if (v < min || v > max) throw new FormatException(Fail($"{name} must be {range}; got {value}"));
            return v;
        }

        switch (name)
        {
            case "brightness":
                return new BrightnessShift(Number(-1, 1, "in [-1, 1] (added to pixel intensities in [0, 1])"));
            case "contrast":
                return new ContrastShift(Number(0, 100, "in [0, 100] (1 = unchanged)"));
            case "invert":
                if (value is not null) throw new FormatException(Fail("'invert' takes no value"));
                return new InvertShift();
            case "noise":
                return new NoiseShift(Positive(Number(0, 10, "in (0, 10] (standard deviation in pixel intensity units)")));
            case "rotate":
                return new RotateShift(Number(-360, 360, "in [-360, 360] degrees"));
            case "blur":
                return new BlurShift(Positive(Number(0, 20, "in (0, 20] pixels")));
            case "translate":
            {
                double t = Number(-1000, 1000, "a whole number of pixels");
                if (t != Math.Round(t)) throw new FormatException(Fail($"translate must be a whole number of pixels; got {value}"));
                return new TranslateShift((int)t);
            }
            case "classes":
                return new ClassSubsetShift(ParseClasses());
            default:
                throw new FormatException(Fail($"unknown shift '{name}'"));
        }

        double Positive(double v) => v > 0 ? v : throw new FormatException(Fail($"{name} must be > 0; got {value}"));

        List<int> ParseClasses()
        {
            if (value is null or "") throw new FormatException(Fail("'classes' needs a value such as 0-4 or 0-2+7"));
            var set = new SortedSet<int>();
            foreach (var range in value.Split('+', StringSplitOptions.TrimEntries))
            {
                var ends = range.Split('-', StringSplitOptions.TrimEntries);
                if (ends.Length is < 1 or > 2 || !ends.All(e => int.TryParse(e, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
                    throw new FormatException(Fail($"'{range}' is not a class or a range A-B of non-negative class numbers"));
                int a = int.Parse(ends[0], CultureInfo.InvariantCulture), b = int.Parse(ends[^1], CultureInfo.InvariantCulture);
                if (b < a) throw new FormatException(Fail($"range '{range}' ends before it starts"));
                for (int c = a; c <= b; c++) set.Add(c);
            }

            return [.. set];
        }
    }

    /// <summary>
    /// The target domain: a new data set (the source is not changed) with the shifted images, standardized again with
    /// <paramref name="standardization"/>, and only the examples every class subset keeps. Its name is the source's
    /// followed by <c>+</c> and <see cref="Spec"/>.
    /// </summary>
    /// <param name="source">Images standardized with <paramref name="standardization"/>.</param>
    /// <param name="standardization">How <paramref name="source"/>'s images were standardized.</param>
    /// <param name="seed">Seed of the generator behind random parts (noise).</param>
    /// <exception cref="ArgumentException">A class subset keeps no example of <paramref name="source"/>, or names a class the data set does not have.</exception>
    public ImageDataset Apply(ImageDataset source, PixelStandardization standardization, long seed)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(standardization);
        standardization.Validate();
        foreach (var subset in Parts.OfType<ClassSubsetShift>())
        {
            if (subset.Classes[^1] >= source.Classes)
                throw new ArgumentException($"Shift '{subset.Spec}' names class {subset.Classes[^1]}, but '{source.Name}' has classes 0-{source.Classes - 1}.", nameof(source));
        }

        using var scope = NewDisposeScope();
        using var generator = new Generator(unchecked((ulong)seed));
        using var noGrad = no_grad();
        float mean = (float)standardization.Mean, std = (float)standardization.Std;
        var images = source.Images;
        var labels = source.Labels;
        var pixels = images.mul(std).add_(mean).clamp_(0f, 1f);
        foreach (var part in Parts)
        {
            if (part.KeepMask(labels) is { } mask)
            {
                var idx = mask.nonzero().squeeze(1);
                if (idx.shape[0] == 0)
                    throw new ArgumentException($"Shift '{part.Spec}' keeps no example of '{source.Name}'.", nameof(source));
                pixels = pixels.index_select(0, idx);
                labels = labels.index_select(0, idx);
            }
            else
            {
                pixels = part.ApplyToPixels(pixels, generator);
            }
        }

        var x = pixels.sub(mean).div_(std);
        var y = ReferenceEquals(labels, source.Labels) ? labels.clone() : labels;
        var name = Parts.Count == 0 ? source.Name : $"{source.Name}+{Spec}";
        return new ImageDataset(name, x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), source.Classes);
    }
}
