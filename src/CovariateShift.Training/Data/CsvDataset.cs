using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace CovariateShift.Training.Data;

/// <summary>
/// A tabular classification data set from a CSV file with a header line, read with ML.NET's text loader into an
/// <c>IDataView</c>: the label column (any values; the distinct values, sorted, become classes 0..K−1) and every other
/// numeric column as a feature (a column whose first row is not a number, e.g. an id, is left out). The rows are split
/// into training and test by a seeded shuffle, and the features are standardized with the training split's mean and
/// standard deviation.
/// </summary>
public static class CsvDataset
{
    /// <summary>What was read besides the two splits.</summary>
    /// <param name="Features">Names of the feature columns, in file order.</param>
    /// <param name="Skipped">Columns left out because their first value is not a number.</param>
    /// <param name="ClassNames">Label value of each class index.</param>
    /// <param name="Rows">Data rows in the file.</param>
    public sealed record Info(IReadOnlyList<string> Features, IReadOnlyList<string> Skipped, IReadOnlyList<string> ClassNames, long Rows);

    /// <summary>Reads <paramref name="path"/> and splits it.</summary>
    /// <param name="path">The CSV file (comma-separated, header line first, quoted fields allowed).</param>
    /// <param name="labelColumn">Name of the label column.</param>
    /// <param name="testFraction">Fraction of the rows in the test split, in (0, 1).</param>
    /// <param name="seed">Seed of the split.</param>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">No header, no label column, no numeric feature, a row with a non-number or the wrong number of
    /// columns, fewer than two rows per split; the message names the file, the row and line, and what was expected.</exception>
    public static (ImageDataset Train, ImageDataset Test, Info Info) Load(string path, string labelColumn, double testFraction, long seed)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(labelColumn);
        if (Directory.Exists(path)) throw new InvalidDataException($"CSV '{path}' is a directory; expected a CSV file.");
        if (!File.Exists(path)) throw new FileNotFoundException($"CSV file '{path}' does not exist.", path);
        if (!(testFraction > 0 && testFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(testFraction), testFraction, string.Create(CultureInfo.InvariantCulture, $"--test-fraction must be in (0, 1); got {testFraction}."));
        string? header;
        using (var reader = new StreamReader(path)) header = reader.ReadLine();
        if (string.IsNullOrWhiteSpace(header)) throw new InvalidDataException($"CSV '{path}' is empty; expected a header line with the column names.");
        var names = header.Split(',').Select(n => n.Trim().Trim('"')).ToArray();
        int labelIndex = Array.FindIndex(names, n => n.Equals(labelColumn, StringComparison.Ordinal));
        if (labelIndex < 0)
            throw new InvalidDataException($"CSV '{path}' has no column '{labelColumn}' (--label-column); its columns are {string.Join(", ", names.Select(n => $"'{n}'"))}.");

        var ml = new MLContext(seed: unchecked((int)seed));
        // The text loader pads short rows and ignores extra fields, so the field count of every line is checked here first.
        CheckFieldCounts(path, names.Length);

        // Every column as text: numbers are parsed here, invariantly, so that a bad cell can be named.
        var columns = names.Select((n, i) => new TextLoader.Column($"c{i}", DataKind.String, i)).ToList();
        var view = ml.Data.CreateTextLoader(new TextLoader.Options
        {
            Separators = [','],
            HasHeader = true,
            AllowQuoting = true,
            Columns = [.. columns],
        }).Load(path);

        var cells = new List<string[]>();
        using (var cursor = view.GetRowCursor(view.Schema))
        {
            var getters = Enumerable.Range(0, names.Length).Select(i => cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema[$"c{i}"])).ToArray();
            ReadOnlyMemory<char> cell = default;
            while (cursor.MoveNext())
            {
                var row = new string[names.Length];
                for (int i = 0; i < names.Length; i++)
                {
                    getters[i](ref cell);
                    row[i] = cell.ToString().Trim();
                }
                cells.Add(row);
            }
        }
        if (cells.Count < 4) throw new InvalidDataException($"CSV '{path}' has {cells.Count} data rows; expected at least 4 (two per split).");

        var featureIndex = new List<int>();
        var skipped = new List<string>();
        for (int i = 0; i < names.Length; i++)
        {
            if (i == labelIndex) continue;
            if (TryNumber(cells[0][i], out _)) featureIndex.Add(i);
            else skipped.Add(names[i]);
        }
        if (featureIndex.Count == 0)
            throw new InvalidDataException($"CSV '{path}' has no numeric column besides the label '{labelColumn}'; expected at least one feature column of numbers.");
        int n = cells.Count, f = featureIndex.Count;
        var x = new float[n * f];
        for (int r = 0; r < n; r++)
        {
            for (int j = 0; j < f; j++)
            {
                var text = cells[r][featureIndex[j]];
                if (!TryNumber(text, out var v))
                {
                    throw new InvalidDataException(text.Length == 0
                        ? $"CSV '{path}', data row {r + 1} (line {r + 2}), column '{names[featureIndex[j]]}': empty; expected a number (does the row have fewer than the header's {names.Length} columns?)."
                        : $"CSV '{path}', data row {r + 1} (line {r + 2}), column '{names[featureIndex[j]]}': '{text}' is not a number; expected a number (invariant culture, '.' as the decimal point).");
                }
                x[r * f + j] = v;
            }
        }
        var labelTexts = cells.Select(c => c[labelIndex]).ToArray();
        for (int r = 0; r < n; r++)
        {
            if (labelTexts[r].Length == 0) throw new InvalidDataException($"CSV '{path}', data row {r + 1} (line {r + 2}): the label '{labelColumn}' is empty; expected a class value.");
        }
        bool numericLabels = labelTexts.All(t => TryNumber(t, out _));
        var classNames = numericLabels
            ? labelTexts.Distinct().OrderBy(t => double.Parse(t, NumberStyles.Float, CultureInfo.InvariantCulture)).ToList()
            : labelTexts.Distinct().Order(StringComparer.Ordinal).ToList();
        if (classNames.Count < 2) throw new InvalidDataException($"CSV '{path}': the label column '{labelColumn}' has a single value '{classNames[0]}'; expected at least two classes.");
        var classOf = classNames.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => (long)p.i, StringComparer.Ordinal);
        var y = labelTexts.Select(t => classOf[t]).ToArray();

        // Seeded split, then standardization with the training rows' statistics.
        var order = Enumerable.Range(0, n).ToArray();
        new Random(unchecked((int)seed)).Shuffle(order);
        int testCount = Math.Clamp((int)Math.Round(n * testFraction), 2, n - 2);
        var testRows = order[..testCount].Order().ToArray();
        var trainRows = order[testCount..].Order().ToArray();
        var mean = new double[f];
        var std = new double[f];
        for (int j = 0; j < f; j++)
        {
            double sum = 0, sumSq = 0;
            foreach (var r in trainRows)
            {
                double v = x[r * f + j];
                sum += v;
                sumSq += v * v;
            }
            mean[j] = sum / trainRows.Length;
            double variance = sumSq / trainRows.Length - mean[j] * mean[j];
            std[j] = variance > 1e-12 ? Math.Sqrt(variance) : 1;
        }
        ImageDataset Make(int[] rows, string split)
        {
            var data = new float[rows.Length * f];
            for (int i = 0; i < rows.Length; i++)
            {
                for (int j = 0; j < f; j++) data[i * f + j] = (float)((x[rows[i] * f + j] - mean[j]) / std[j]);
            }
            return new ImageDataset($"csv:{Path.GetFileName(path)}/{split}", tensor(data, [rows.Length, f]), tensor(rows.Select(r => y[r]).ToArray(), [rows.Length]), classNames.Count);
        }
        var train = Make(trainRows, "train");
        try
        {
            return (train, Make(testRows, "test"), new Info(featureIndex.Select(i => names[i]).ToList(), skipped, classNames, n));
        }
        catch
        {
            train.Dispose();
            throw;
        }
    }

    private static void CheckFieldCounts(string path, int expected)
    {
        int lineNumber = 0, row = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (lineNumber == 1 || line.Length == 0) continue;
            row++;
            int fields = 1;
            bool quoted = false;
            foreach (var ch in line)
            {
                if (ch == '"') quoted = !quoted;
                else if (ch == ',' && !quoted) fields++;
            }
            if (fields != expected)
                throw new InvalidDataException($"CSV '{path}', data row {row} (line {lineNumber}): {fields} columns; expected {expected} as in the header.");
        }
    }

    private static bool TryNumber(string text, out float value)
    {
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d) && Math.Abs(d) <= float.MaxValue)
        {
            value = (float)d;
            return true;
        }
        value = 0;
        return false;
    }
}
