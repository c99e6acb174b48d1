using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using CovariateShift.Build;

namespace CovariateShift.Packaging.Tests;

/// <summary>
/// The packages as a user gets them: packed into a folder feed, consumed by fresh projects outside the repository
/// (their own NuGet.config, their own packages folder), and the covshift tool installed with `dotnet tool install`.
/// Slow: a pack of every package and two restores and builds (minutes on 2 cores).
/// </summary>
[Collection(PackedFeedGroup.Name)]
[Trait("Category", "Slow")]
public sealed class PackageConsumerTests(PackageFeed feed)
{
    // Every src project but the CLI is a library package named like its project.
    private static readonly string[] LibraryIds = PackageFeed.SourceProjects().Where(p => p != "CovariateShift.Cli").ToArray();

    [Fact]
    public void Pack_EveryPackageHasOneVersionReadmeLicenceSymbolsAndXmlDocs()
    {
        Assert.Contains("CovariateShift", LibraryIds);
        Assert.Contains("CovariateShift.Training", LibraryIds);
        foreach (var id in LibraryIds)
        {
            var nupkg = Path.Combine(feed.Feed, $"{id}.{feed.Version}.nupkg");
            Assert.True(File.Exists(nupkg), $"{nupkg} was not packed; the feed has: {string.Join(", ", Directory.GetFiles(feed.Feed).Select(Path.GetFileName))}");
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"no symbols package for {id}");
            using var zip = ZipFile.OpenRead(nupkg);
            var names = zip.Entries.Select(e => e.FullName).ToList();
            Assert.Contains($"lib/net10.0/{id}.dll", names);
            Assert.Contains($"lib/net10.0/{id}.xml", names);
            Assert.Contains("README.md", names);
            var nuspec = ReadEntry(zip, $"{id}.nuspec");
            Assert.Contains("<license type=\"expression\">MIT</license>", nuspec, StringComparison.Ordinal);
            Assert.Contains("<readme>README.md</readme>", nuspec, StringComparison.Ordinal);
            Assert.Contains("<repository type=\"git\"", nuspec, StringComparison.Ordinal);
            Assert.DoesNotContain("TorchSharp-cpu", nuspec, StringComparison.Ordinal);
            Assert.DoesNotContain("TorchSharp-cuda", nuspec, StringComparison.Ordinal);
            Assert.DoesNotContain("libtorch", nuspec, StringComparison.Ordinal);
            // Our own packages are referenced at exactly this run's version.
            foreach (var other in LibraryIds.Where(o => nuspec.Contains($"id=\"{o}\"", StringComparison.Ordinal)))
            {
                Assert.Contains($"id=\"{other}\" version=\"{feed.Version}\"", nuspec, StringComparison.Ordinal);
            }
        }

        using var core = ZipFile.OpenRead(Path.Combine(feed.Feed, $"CovariateShift.{feed.Version}.nupkg"));
        var coreSpec = ReadEntry(core, "CovariateShift.nuspec");
        var deps = System.Text.RegularExpressions.Regex.Matches(coreSpec, "<dependency id=\"([^\"]+)\"").Select(m => m.Groups[1].Value).Order().ToList();
        Assert.Equal(["Serilog", "TorchSharp"], deps);
        Assert.Contains("buildTransitive/CovariateShift.targets", core.Entries.Select(e => e.FullName));
        Assert.Contains("buildTransitive/WeakenGlibcxxRequirement.cs", core.Entries.Select(e => e.FullName));
    }

    [Fact]
    public void MonitorPackage_InAFreshConsoleApp_RecordsEveryLayerWithTheDirectlyComputedMean()
    {
        var dir = feed.NewConsumer("monitor-app");
        WriteProject(dir, "MonitorApp", ("CovariateShift", feed.Version), ("TorchSharp-cpu", "0.107.0"));
        File.WriteAllText(Path.Combine(dir, "Program.cs"), """
            using System.Globalization;
            using CovariateShift;
            using TorchSharp;
            using static TorchSharp.torch;

            // A user's own model and loop: two linear layers and a ReLU, SGD, five steps on a fixed batch.
            torch.manual_seed(11);
            var model = nn.Sequential(("fc1", nn.Linear(6, 12)), ("act", nn.ReLU()), ("fc2", nn.Linear(12, 3)));
            var optimizer = optim.SGD(model.parameters(), 0.1);
            var x = torch.randn(32, 6);
            var y = torch.randint(0, 3, [32]);
            var fc1 = (TorchSharp.Modules.Linear)model[0];
            using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 1 });
            for (int step = 0; step < 5; step++)
            {
                using var scope = torch.NewDisposeScope();
                double direct, directRelu;
                using (torch.no_grad())
                {
                    // The same values computed without the model's modules (no hook runs for these).
                    var h = nn.functional.linear(x, fc1.weight!, fc1.bias);
                    direct = h.to_type(ScalarType.Float64).mean().item<double>();
                    directRelu = nn.functional.relu(h).to_type(ScalarType.Float64).mean().item<double>();
                }

                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                loss.backward();
                optimizer.step();
                if (monitor.Step(loss) is { } record)
                {
                    foreach (var layer in record.Layers)
                        Console.WriteLine(FormattableString.Invariant($"record {record.Step} {layer.Layer} {layer.LayerType} {layer.Statistics?.Mean:R} {layer.Statistics?.Count}"));
                }
                Console.WriteLine(FormattableString.Invariant($"direct {step} fc1 {direct:R} act {directRelu:R}"));
            }
            """);

        var output = BuildAndRun(dir, "MonitorApp", weaken: true);
        var records = Lines(output, "record");
        var direct = Lines(output, "direct");
        Assert.Equal(5, direct.Count);
        for (int step = 0; step < 5; step++)
        {
            var layers = records.Where(r => r[1] == step.ToString(CultureInfo.InvariantCulture)).ToDictionary(r => r[2]);
            Assert.Equal(["act", "fc1", "fc2"], layers.Keys.Order());
            Assert.Equal("Linear", layers["fc1"][3]);
            Assert.Equal("ReLU", layers["act"][3]);
            Assert.Equal("384", layers["fc1"][5]); // 32 x 12 values
            var d = direct[step];
            Assert.Equal(double.Parse(d[3], CultureInfo.InvariantCulture), double.Parse(layers["fc1"][4], CultureInfo.InvariantCulture), 1e-5);
            Assert.Equal(double.Parse(d[5], CultureInfo.InvariantCulture), double.Parse(layers["act"][4], CultureInfo.InvariantCulture), 1e-5);
        }

        // The buildTransitive libstdc++ step ran (forced with CovariateShiftWeakenGlibcxx=always) on the app's copy
        // of the shim, and the app above loaded that copy; the package's own copy is TorchSharp's.
        var shim = Path.Combine(dir, "bin", "Release", "net10.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.Contains(new IndependentElfReader(File.ReadAllBytes(shim)).Needs, n => n.Name == ShimElf.Version && n.Flags == ShimElf.VerFlgWeak);
        Assert.Equal(SHA256.HashData(File.ReadAllBytes(TestPaths.PackagedShim)), SHA256.HashData(File.ReadAllBytes(PackagesCopyOfShim())));
    }

    [Fact]
    public void TrainingPackage_MlNetEstimator_InAFreshConsoleApp_LearnsSeparableClasses()
    {
        var dir = feed.NewConsumer("mlnet-app");
        WriteProject(dir, "MlNetApp", ("CovariateShift.Training", feed.Version), ("TorchSharp-cpu", "0.107.0"));
        File.WriteAllText(Path.Combine(dir, "Program.cs"), """
            using CovariateShift.Nn.Normalization;
            using CovariateShift.Training.MLNet;
            using Microsoft.ML;
            using Microsoft.ML.Data;

            // Three classes, four features: class c is centred at 3 * e_c (well separated, unit noise).
            var random = new Random(5);
            Row Make(int c) => new()
            {
                Features = Enumerable.Range(0, 4).Select(i => (float)((i == c ? 3.0 : 0.0) + Gauss(random))).ToArray(),
                Label = "class" + c,
            };
            static double Gauss(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
            var ml = new MLContext(seed: 1);
            var train = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 600).Select(i => Make(i % 3)).ToList());
            var test = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 300).Select(i => Make(i % 3)).ToList());
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
                .Append(ml.MulticlassClassification.Trainers.CovariateShiftMlp(new CovariateShiftMlpOptions
                {
                    Depth = 2, Width = 16, Norm = NormKind.Batch, Epochs = 3, BatchSize = 32, LearningRate = 0.05, Seed = 3, RecordEvery = 10,
                }));
            var model = pipeline.Fit(train);
            var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
            var records = model.LastTransformer.RecordsAsDataView(ml);
            Console.WriteLine($"accuracy {metrics.MicroAccuracy.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");
            Console.WriteLine($"records {records.GetRowCount() ?? records.Preview(100000).RowView.Length}");

            sealed class Row
            {
                [VectorType(4)] public float[] Features { get; set; } = [];
                public string Label { get; set; } = "";
            }
            """);

        var output = BuildAndRun(dir, "MlNetApp", weaken: false);
        // Nearest-centre accuracy for these clusters is about 0.93 (distance 3*sqrt(2) between centres, unit noise).
        var accuracy = double.Parse(Assert.Single(Lines(output, "accuracy"))[1], CultureInfo.InvariantCulture);
        Assert.InRange(accuracy, 0.8, 1.0);
        Assert.True(long.Parse(Assert.Single(Lines(output, "records"))[1], CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public void Tool_InstalledFromTheFeed_ShowsHelpAndTrainsARunDirectory()
    {
        var dir = feed.NewConsumer("tool");
        var tools = Path.Combine(dir, "tools");
        var install = ProcessRunner.Dotnet($"tool install covshift --tool-path \"{tools}\" --add-source \"{feed.Feed}\" --version {feed.Version}", dir, PackageFeed.BuildTimeout);
        Assert.Contains("covshift", install, StringComparison.Ordinal);
        var covshift = Path.Combine(tools, "covshift");

        var help = ProcessRunner.Run(covshift, "--help", dir, TimeSpan.FromMinutes(2));
        Assert.True(help.ExitCode == 0, help.Output);
        Assert.Contains("train", help.Output, StringComparison.Ordinal);
        Assert.Contains("report", help.Output, StringComparison.Ordinal);

        var run = Path.Combine(dir, "run");
        var train = ProcessRunner.Run(covshift, $"train --dataset gaussian --model mlp --depth 2 --width 16 --steps 20 --batch-size 32 --record-every 5 --out \"{run}\"", dir, TimeSpan.FromMinutes(5));
        Assert.True(train.ExitCode == 0, train.Output);
        foreach (var file in new[] { "config.json", "metrics.jsonl", "training.jsonl", "summary.json" })
        {
            Assert.True(File.Exists(Path.Combine(run, file)), $"{file} missing in the run directory; it has {string.Join(", ", Directory.GetFileSystemEntries(run).Select(Path.GetFileName))}");
        }

        Assert.NotEmpty(File.ReadAllLines(Path.Combine(run, "metrics.jsonl")));
        // The tool carries the edited shim (a tool is installed without a build step).
        var shim = Directory.GetFiles(tools, "libLibTorchSharp.so", SearchOption.AllDirectories).Single();
        Assert.Contains(new IndependentElfReader(File.ReadAllBytes(shim)).Needs, n => n.Name == ShimElf.Version && n.Flags == ShimElf.VerFlgWeak);
    }

    private string PackagesCopyOfShim() =>
        Directory.GetFiles(feed.MachinePackages, "libLibTorchSharp.so", SearchOption.AllDirectories).Concat(
            Directory.Exists(Path.Combine(feed.Root, "packages")) ? Directory.GetFiles(Path.Combine(feed.Root, "packages"), "libLibTorchSharp.so", SearchOption.AllDirectories) : [])
        .First(p => p.Contains("0.107.0", StringComparison.Ordinal) && p.Contains("linux-x64", StringComparison.Ordinal));

    private static void WriteProject(string dir, string name, params (string Id, string Version)[] packages)
    {
        var refs = string.Concat(packages.Select(p => $"    <PackageReference Include=\"{p.Id}\" Version=\"{p.Version}\" />\n"));
        File.WriteAllText(Path.Combine(dir, name + ".csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
            {refs}  </ItemGroup>
            </Project>
            """);
    }

    private static string BuildAndRun(string dir, string name, bool weaken)
    {
        var extra = weaken ? " -p:CovariateShiftWeakenGlibcxx=always" : "";
        ProcessRunner.Dotnet($"build -c Release -v quiet -nologo{extra}", dir, PackageFeed.BuildTimeout);
        var (code, output) = ProcessRunner.Run("dotnet", Path.Combine("bin", "Release", "net10.0", name + ".dll"), dir, TimeSpan.FromMinutes(5));
        Assert.True(code == 0, $"{name} exited {code}:\n{ProcessRunner.Tail(output)}");
        return output;
    }

    private static List<string[]> Lines(string output, string tag) =>
        output.Split('\n').Select(l => l.Trim().Split(' ')).Where(p => p[0] == tag).ToList();

    private static string ReadEntry(ZipArchive zip, string name)
    {
        using var reader = new StreamReader(zip.GetEntry(name)!.Open());
        return reader.ReadToEnd();
    }
}
