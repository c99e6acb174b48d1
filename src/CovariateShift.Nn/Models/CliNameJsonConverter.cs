using System.Text.Json;
using System.Text.Json.Serialization;

namespace CovariateShift.Nn.Models;

/// <summary>
/// Reads and writes a value as its command-line name (a JSON string). A parse failure becomes a
/// <see cref="JsonException"/> carrying the parser's message, to which the serializer attaches the JSON path.
/// </summary>
internal sealed class CliNameJsonConverter<T>(Func<string, T> parse, Func<T, string> format) : JsonConverter<T>
{
    /// <summary>JSON null reaches <see cref="Read"/> and is refused there, rather than becoming a null reference.</summary>
    public override bool HandleNull => true;

    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonException($"Expected a string, got {reader.TokenType}.");
        }

        try
        {
            return parse(reader.GetString()!);
        }
        catch (ArgumentException ex)
        {
            throw new JsonException(ex.Message, ex);
        }
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) =>
        writer.WriteStringValue(format(value));
}
