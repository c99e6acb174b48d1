using System.Reflection;

namespace CovariateShift.Packaging.Tests;

/// <summary>Paths the test project's build recorded (assembly metadata) and temporary folders.</summary>
internal static class TestPaths
{
    /// <summary>TorchSharp's own libLibTorchSharp.so in the NuGet packages folder (read only, never edited).</summary>
    public static string PackagedShim => Metadata("PackagedShim");

    /// <summary>The repository root this test project was built from.</summary>
    public static string RepositoryRoot => Metadata("RepositoryRoot");

    /// <summary>A new empty directory under the system temp folder.</summary>
    public static string NewTempDirectory(string prefix) =>
        Directory.CreateTempSubdirectory("covshift-" + prefix + "-").FullName;

    private static string Metadata(string key) =>
        typeof(TestPaths).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value
        ?? throw new InvalidOperationException($"assembly metadata {key} is empty");
}
