using System.Text.Json.Serialization;

namespace CovariateShift.Schema;

/// <summary>
/// The source-generated System.Text.Json context of the metrics file: snake_case names derived from the record
/// property names (the one place the names are defined), non-finite numbers as the named literals "NaN",
/// "Infinity" and "-Infinity" (written and read), nulls written.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(MetricsLine))]
[JsonSerializable(typeof(MetricsLineV1))]
internal sealed partial class MetricsJsonContext : JsonSerializerContext;
