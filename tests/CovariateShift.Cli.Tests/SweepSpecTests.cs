using System.Text;
using CovariateShift.Cli.Commands;
using CovariateShift.Cli.Sweeps;

namespace CovariateShift.Cli.Tests;

/// <summary>
/// Sweep specs: parsing, expansion (grid product, explicit points, repeat seeds), point ids, and validation with the
/// train command's own parser (exit 2 naming the point and the option, nothing written). No training runs here.
/// </summary>
[Collection(nameof(TrainCommandTests))]
public sealed class SweepSpecTests : IDisposable
{
    /// <summary>The spec of the issue, exactly as written there.</summary>
    public const string IssueSpec = """{"base": {"model": "mlp", "depth": 2, "steps": 30, "record-every": 10}, "grid": {"norm": ["none", "batch"], "lr": [0.01, 0.1]}}""";

    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-sweepspec-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static SweepPlan Plan(string json) => SweepPlan.Create(SweepSpec.Parse(json));

    internal static (int Code, string Out, string Error) Run(params string[] args) => CliConsole.Run(args);

    private string WriteSpec(string json)
    {
        var path = Path.Combine(_dir, $"spec-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void The_issue_spec_expands_to_the_grid_product_with_readable_ids_and_train_arguments()
    {
        var plan = Plan(IssueSpec);
        Assert.Equal(["norm=none,lr=0.01", "norm=none,lr=0.1", "norm=batch,lr=0.01", "norm=batch,lr=0.1"], plan.Points.Select(p => p.Id));
        Assert.Equal([0, 1, 2, 3], plan.Points.Select(p => p.Index));
        Assert.Equal(["norm", "lr"], plan.AxisNames);
        Assert.Equal(["--model", "mlp", "--depth", "2", "--steps", "30", "--record-every", "10", "--norm", "batch", "--lr", "0.1"], plan.Points[3].Arguments);
        Assert.Equal("batch", plan.Points[2].AxisValues["norm"]);
        Assert.Equal("0.01", plan.Points[2].AxisValues["lr"]);
        plan.Validate();   // the train command accepts every point
        // Stable: the same spec gives the same ids and arguments.
        var again = Plan(IssueSpec);
        Assert.Equal(plan.Points.Select(p => p.Id + " " + string.Join(" ", p.Arguments)), again.Points.Select(p => p.Id + " " + string.Join(" ", p.Arguments)));
    }

    [Fact]
    public void An_axis_overrides_the_base_option_in_place_and_flags_become_present_or_absent()
    {
        var plan = Plan("""{"base": {"lr": 0.5, "steps": 7, "allow-divergence": true, "nesterov": false}, "grid": {"lr": [0.25], "log-layers": [true, false]}}""");
        Assert.Equal(["lr=0.25,log-layers=true", "lr=0.25,log-layers=false"], plan.Points.Select(p => p.Id));
        Assert.Equal(["--lr", "0.25", "--steps", "7", "--allow-divergence", "--log-layers"], plan.Points[0].Arguments);
        Assert.Equal(["--lr", "0.25", "--steps", "7", "--allow-divergence"], plan.Points[1].Arguments);
        plan.Validate();
    }

    [Fact]
    public void Explicit_points_and_repeat_seeds_give_one_point_per_seed()
    {
        var plan = Plan("""{"base": {"steps": 5}, "points": [{"norm": "batch", "lr": 0.1}, {"depth": 3}], "repeat": 2}""");
        Assert.Equal(["norm=batch,lr=0.1,seed=0", "norm=batch,lr=0.1,seed=1", "depth=3,seed=0", "depth=3,seed=1"], plan.Points.Select(p => p.Id));
        Assert.Equal(["--steps", "5", "--depth", "3", "--seed", "1"], plan.Points[3].Arguments);
        Assert.Equal(["norm", "lr", "seed", "depth"], plan.AxisNames);
        var seeds = Plan("""{"points": [{}], "repeat": [7, 3]}""");
        Assert.Equal(["seed=7", "seed=3"], seeds.Points.Select(p => p.Id));
        Assert.Equal("base", Plan("""{"base": {"steps": 5}, "points": [{}]}""").Points.Single().Id);
    }

    [Fact]
    public void Ids_are_filesystem_safe_unique_and_bounded()
    {
        var plan = Plan("""{"grid": {"model": ["models/a b.json", "models/a%20b.json", "ü"]}}""");
        Assert.Equal(["model=models%2Fa%20b.json", "model=models%2Fa%2520b.json", "model=%C3%BC"], plan.Points.Select(p => p.Id));
        // The file-name part is the whole id: no separator, and it names a directory that can be created.
        foreach (var p in plan.Points)
        {
            Assert.DoesNotContain(Path.DirectorySeparatorChar, p.Id);
            Directory.CreateDirectory(Path.Combine(_dir, "ids", p.Id));
        }
        var a = new string('a', 300);
        var b = a[..299] + "b";
        var longPlan = Plan("{\"grid\": {\"model\": [\"" + a + "\", \"" + b + "\"]}}");
        Assert.All(longPlan.Points, p => Assert.True(Encoding.UTF8.GetByteCount(p.Id) <= SweepPlan.MaxIdBytes, p.Id));
        Assert.NotEqual(longPlan.Points[0].Id, longPlan.Points[1].Id);
        Assert.Matches("~[0-9a-f]{8}$", longPlan.Points[0].Id);
    }

    [Theory]
    [InlineData("""{"grid": {"lr": [0.1]}, "points": [{}]}""", "both 'grid' and 'points'")]
    [InlineData("""{"base": {"lr": 0.1}}""", "neither 'grid' nor 'points'")]
    [InlineData("""{"grid": {"lr": 0.1}}""", "grid.lr is 0.1; expected a list")]
    [InlineData("""{"grid": {"lr": []}}""", "grid.lr is an empty list")]
    [InlineData("""{"grid": {"--lr": [0.1]}}""", "without the leading dashes ('lr')")]
    [InlineData("""{"grid": {"lr": [0.1]}, "sweep": 1}""", "unknown key 'sweep'")]
    [InlineData("""{"grid": {"lr": [{"a": 1}]}}""", "grid.lr[0] is an object")]
    [InlineData("""{"grid": {"lr": [0.1]}, "repeat": 0}""", "repeat is 0")]
    [InlineData("""{"base": {"lr": 0.1, "lr": 0.2}, "grid": {"norm": ["none"]}}""", "the key 'lr' twice")]
    [InlineData("""[1]""", "expected a JSON object")]
    [InlineData("""{"grid": """, "not valid JSON")]
    public void A_malformed_spec_is_refused_with_what_is_wrong_and_where(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => SweepSpec.Parse(json, "spec.json"));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("spec.json", e.Message);
    }

    [Theory]
    [InlineData("""{"grid": {"lrr": [0.1]}}""", "lrr=0.1", "unknown option 'lrr'", "did you mean 'lr'")]
    [InlineData("""{"grid": {"out": ["x"]}}""", "out=x", "option 'out' is set by the sweep", null)]
    [InlineData("""{"grid": {"norm": ["none", "batch"]}, "repeat": 2, "base": {"seed": 1}}""", null, "'repeat' and also sets 'seed'", null)]
    [InlineData("""{"points": [{"lr": 0.1}, {"lr": 0.1}]}""", "lr=0.1", "both get the id 'lr=0.1'", null)]
    public void Options_that_are_not_train_options_are_refused_while_planning(string json, string? point, string expected, string? hint)
    {
        var e = Assert.Throws<ArgumentException>(() => Plan(json));
        if (point is not null) Assert.Contains(point, e.Message);
        Assert.Contains(expected, e.Message);
        if (hint is not null) Assert.Contains(hint, e.Message);
    }

    [Theory]
    [InlineData("""{"base": {"steps": 5}, "grid": {"lr": [0.1, -1]}}""", "lr=-1", "--lr")]
    [InlineData("""{"base": {"steps": 5}, "grid": {"lr": ["fast"]}}""", "lr=fast", "--lr")]
    [InlineData("""{"base": {"steps": 5}, "grid": {"batch-size": [16, 0]}}""", "batch-size=0", "--batch-size")]
    [InlineData("""{"base": {"steps": 5}, "grid": {"norm": ["none", "bogus"]}}""", "norm=bogus", "--norm")]
    [InlineData("""{"base": {"steps": 5}, "grid": {"optimizer": ["adamx"]}}""", "optimizer=adamx", "--optimizer")]
    [InlineData("""{"base": {"steps": 5, "optimizer": "adam"}, "grid": {"nesterov": [true]}}""", "nesterov=true", "--nesterov")]
    [InlineData("""{"base": {"steps": 5}, "grid": {"nesterov": ["maybe"]}}""", "nesterov=maybe", "--nesterov")]
    [InlineData("""{"base": {"steps": 5}, "grid": {"norm": [["none", "batch"]]}}""", "norm=none+batch", "--norm")]
    [InlineData("""{"base": {"steps": 5, "model": "mlp"}, "grid": {"norm": ["instance"]}}""", "norm=instance", "--norm instance")]
    public void A_bad_value_fails_the_whole_sweep_with_exit_2_naming_the_point_and_the_option_before_anything_is_written(string json, string point, string option)
    {
        var outDir = Path.Combine(_dir, "out");
        var (code, _, error) = Run("sweep", WriteSpec(json), "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains($"sweep point '{point}'", error);
        Assert.Contains(option, error);
        Assert.Single(error.Trim().Split('\n'));
        Assert.False(Directory.Exists(outDir), "nothing may be written for a refused sweep");
    }

    [Fact]
    public void The_train_command_s_own_parser_decides_what_a_point_may_hold()
    {
        // Every option of covshift train is accepted under its own name (here with a value train accepts), so a sweep
        // accepts exactly what train accepts.
        var train = CliApp.CreateRoot().Subcommands.Single(c => c.Name == "train");
        var names = train.Options.Select(o => o.Name.TrimStart('-')).Where(n => !SweepPlan.ReservedOptions.Contains(n)).ToList();
        Assert.Contains("record-every", names);
        Assert.Contains("allow-divergence", names);
        foreach (var name in names)
        {
            var option = train.Options.Single(o => o.Name == "--" + name);
            var plan = Plan("{\"grid\": {\"" + name + "\": [" + (option.ValueType == typeof(bool) ? "true" : "\"x\"") + "]}}");
            Assert.Equal("--" + name, plan.Points[0].Arguments[0]);
        }
    }

    [Fact]
    public void Missing_spec_file_or_out_are_usage_errors()
    {
        var (code, _, error) = Run("sweep", Path.Combine(_dir, "nope.json"), "--out", Path.Combine(_dir, "o"));
        Assert.Equal(2, code);
        Assert.Contains("nope.json' does not exist", error);
        (code, _, error) = Run("sweep", WriteSpec(IssueSpec));
        Assert.Equal(2, code);
        Assert.Contains("'--out' is required", error);
        (code, _, error) = Run("sweep", WriteSpec(IssueSpec), "--out", Path.Combine(_dir, "o"), "--partition", "gpu");
        Assert.Equal(2, code);
        Assert.Contains("--partition apply to --engine slurm only", error);
        (code, _, error) = Run("sweep", "status", Path.Combine(_dir, "none"));
        Assert.Equal(2, code);
        Assert.Contains("does not exist", error);
    }

    [Fact]
    public void A_directory_that_is_not_a_sweep_is_refused_and_left_as_it_was()
    {
        var outDir = Path.Combine(_dir, "busy");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "notes.txt"), "mine");
        var (code, _, error) = Run("sweep", WriteSpec(IssueSpec), "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("holds no sweep.json", error);
        Assert.Equal(["notes.txt"], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).Where(n => n is not (".lock" or ".lock.pid")));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(outDir, "notes.txt")));
    }

    [Fact]
    public void Slurm_array_specs_compress_indices_into_ranges()
    {
        Assert.Equal("0-3", SlurmEngine.ArraySpec([0, 1, 2, 3], null));
        Assert.Equal("0-3%2", SlurmEngine.ArraySpec([3, 2, 1, 0], 2));
        Assert.Equal("1,3-4,9", SlurmEngine.ArraySpec([9, 1, 3, 4], null));
        var script = SlurmEngine.Script("/shared/sweeps/a", [0, 2], new SlurmOptions { Partition = "gpu", Time = "1:00:00", CpusPerTask = 4, GpusPerTask = 1, Memory = "8G", MaxRunning = 1, SignalSeconds = 90 }, ["/opt/dotnet/dotnet", "/opt/covshift/covshift.dll"]);
        var lines = script.Split('\n');
        Assert.Equal("#!/bin/bash", lines[0]);
        foreach (var expected in new[] { "#SBATCH --array=0,2%1", "#SBATCH --requeue", "#SBATCH --signal=B:TERM@90", "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-task=1", "#SBATCH --mem=8G", "#SBATCH --output=/shared/sweeps/a/logs/slurm-%A_%a.out" })
            Assert.Contains(expected, lines);
        Assert.Contains("exec /opt/dotnet/dotnet /opt/covshift/covshift.dll sweep run-point /shared/sweeps/a --index \"$SLURM_ARRAY_TASK_ID\"", lines);
        // Every #SBATCH line comes before the first command (sbatch stops reading them there).
        var firstCommand = Array.FindIndex(lines, l => l.Length > 0 && !l.StartsWith('#'));
        Assert.True(Array.FindLastIndex(lines, l => l.StartsWith("#SBATCH", StringComparison.Ordinal)) < firstCommand);
    }
}
