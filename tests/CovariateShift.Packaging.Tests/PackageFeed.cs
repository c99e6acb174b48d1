using System.Globalization;

namespace CovariateShift.Packaging.Tests;

/// <summary>
/// Packs this repository's packages once per test run into a temporary folder feed, with a version of its own
/// (VersionSuffix test.TIMESTAMP) so no package of an earlier run or from a cache can stand in for it. The build goes
/// to the same temporary folder (CovariateShiftPackRoot), never to the repository's bin/obj. Consumers restore with
/// their own NuGet.config: the feed, nuget.org, an isolated packages folder, and this machine's packages folder as a
/// read-only fallback (so TorchSharp is not downloaded again).
/// </summary>
public sealed class PackageFeed : IDisposable
{
    public static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(12);

    public PackageFeed()
    {
        Root = TestPaths.NewTempDirectory("feed");
        Feed = Directory.CreateDirectory(Path.Combine(Root, "feed")).FullName;
        var stamp = DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
        var repo = TestPaths.RepositoryRoot;
        var filter = Path.Combine(Root, "packages.slnf");
        // Every project under src/ is a package (the CLI is the tool).
        var projects = string.Join(", ", SourceProjects().Select(p => $"\"src/{p}/{p}.csproj\""));
        File.WriteAllText(filter, $$"""
            { "solution": { "path": "{{Path.Combine(repo, "CovariateShift.sln")}}", "projects": [ {{projects}} ] } }
            """);
        var started = DateTime.UtcNow;
        ProcessRunner.Dotnet(
            $"pack \"{filter}\" -c Release -o \"{Feed}\" -p:TorchBackend=cpu -p:VersionSuffix=test.{stamp} -p:CovariateShiftPackRoot=\"{Path.Combine(Root, "build")}\" -v quiet -nologo",
            repo, BuildTimeout);
        PackSeconds = (DateTime.UtcNow - started).TotalSeconds;
        Version = $"{VersionPrefix()}-test.{stamp}";

        var locals = ProcessRunner.Dotnet("nuget locals global-packages --list", Root, TimeSpan.FromMinutes(1));
        MachinePackages = locals.Split(':', 2)[1].Trim();
    }

    /// <summary>The project names under src/ (one folder and one .csproj of the same name each).</summary>
    public static IReadOnlyList<string> SourceProjects() =>
        Directory.GetDirectories(Path.Combine(TestPaths.RepositoryRoot, "src"))
            .Select(Path.GetFileName)
            .Where(n => File.Exists(Path.Combine(TestPaths.RepositoryRoot, "src", n!, n + ".csproj")))
            .Select(n => n!)
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>The temporary folder of this run (feed, build, consumers).</summary>
    public string Root { get; }

    /// <summary>The folder feed with every .nupkg/.snupkg of this run.</summary>
    public string Feed { get; }

    /// <summary>The version every package of this run has.</summary>
    public string Version { get; }

    /// <summary>This machine's NuGet packages folder (consumers use it read-only, as a fallback).</summary>
    public string MachinePackages { get; }

    /// <summary>How long the pack took.</summary>
    public double PackSeconds { get; }

    /// <summary>A new consumer folder with a NuGet.config of its own (feed + nuget.org, isolated packages folder).</summary>
    public string NewConsumer(string name)
    {
        var dir = Directory.CreateDirectory(Path.Combine(Root, name)).FullName;
        File.WriteAllText(Path.Combine(dir, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="{Path.Combine(Root, "packages")}" />
              </config>
              <packageSources>
                <clear />
                <add key="feed" value="{Feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <fallbackPackageFolders>
                <add key="machine" value="{MachinePackages}" />
              </fallbackPackageFolders>
            </configuration>
            """);
        // Nothing of the repository's MSBuild files above the consumer applies (it lives under the temp folder).
        File.WriteAllText(Path.Combine(dir, "Directory.Build.props"), "<Project />\n");
        File.WriteAllText(Path.Combine(dir, "Directory.Build.targets"), "<Project />\n");
        File.WriteAllText(Path.Combine(dir, "Directory.Packages.props"), "<Project />\n");
        return dir;
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private static string VersionPrefix()
    {
        var props = File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot, "Directory.Build.props"));
        var start = props.IndexOf("<VersionPrefix>", StringComparison.Ordinal) + "<VersionPrefix>".Length;
        return props[start..props.IndexOf("</VersionPrefix>", start, StringComparison.Ordinal)];
    }
}

[CollectionDefinition(Name)]
public sealed class PackedFeedGroup : ICollectionFixture<PackageFeed>
{
    public const string Name = "Packed feed";
}
