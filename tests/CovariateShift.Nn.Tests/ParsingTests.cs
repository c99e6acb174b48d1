using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;

namespace CovariateShift.Nn.Tests;

/// <summary>Command-line names round-trip, and unknown names fail with a message that quotes them and lists the valid ones.</summary>
public sealed class ParsingTests
{
    [Fact]
    public void NormKindNamesRoundTrip()
    {
        Assert.Equal(
            ["none", "batch", "layer", "group", "instance", "weight-std", "rms", "batch-renorm", "noisy-batch"],
            NormKinds.CliNames);
        foreach (var kind in Enum.GetValues<NormKind>())
        {
            Assert.Equal(kind, NormKinds.Parse(kind.ToCliName()));
            Assert.Equal(kind, NormKinds.Parse(" " + kind.ToCliName().ToUpperInvariant() + " "));
        }
    }

    [Fact]
    public void OtherNamesRoundTrip()
    {
        foreach (var kind in Enum.GetValues<ActivationKind>())
        {
            Assert.Equal(kind, ActivationKinds.Parse(kind.ToCliName()));
        }

        foreach (var placement in Enum.GetValues<NormPlacement>())
        {
            Assert.Equal(placement, NormPlacements.Parse(placement.ToCliName()));
        }

        foreach (var shortcut in Enum.GetValues<ResNetShortcut>())
        {
            Assert.Equal(shortcut, ResNetShortcuts.Parse(shortcut.ToCliName().ToLowerInvariant()));
        }

        foreach (var init in new[] { WeightInit.Default, WeightInit.He, WeightInit.Xavier, WeightInit.Lecun, WeightInit.Gaussian(0.015) })
        {
            Assert.Equal(init, WeightInit.Parse(init.ToCliName()));
        }
    }

    [Fact]
    public void GaussianInitReadsItsStandardDeviation()
    {
        var init = WeightInit.Parse("Gaussian:1e-2");
        Assert.Equal(InitKind.Gaussian, init.Kind);
        Assert.Equal(0.01, init.GaussianStd);
        Assert.Equal("gaussian:0.01", init.ToCliName());
    }

    [Theory]
    [InlineData("bach")]
    [InlineData("batchnorm")]
    [InlineData("")]
    public void UnknownNormIsRefused(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => NormKinds.Parse(name));
        Assert.Contains($"'{name}'", ex.Message);
        Assert.Contains("weight-std", ex.Message);
    }

    [Fact]
    public void UnknownActivationIsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => ActivationKinds.Parse("swish"));
        Assert.Contains("'swish'", ex.Message);
        Assert.Contains("relu, sigmoid, tanh, gelu", ex.Message);
    }

    [Theory]
    [InlineData("kaiming")]
    [InlineData("gaussian")]
    [InlineData("gaussian:abc")]
    [InlineData("gaussian:-0.1")]
    [InlineData("he:2")]
    public void BadInitIsRefused(string text)
    {
        var ex = Assert.Throws<ArgumentException>(() => WeightInit.Parse(text));
        Assert.Contains($"'{text}'", ex.Message);
    }

    [Fact]
    public void UnknownPlacementAndShortcutAreRefused()
    {
        Assert.Contains("'middle'", Assert.Throws<ArgumentException>(() => NormPlacements.Parse("middle")).Message);
        Assert.Contains("'C'", Assert.Throws<ArgumentException>(() => ResNetShortcuts.Parse("C")).Message);
    }
}
