using System.Text.Encodings.Web;
using System.Text.Json;

namespace IommuKit.Cli.Rendering;

/// <summary>Writes one JSON document to the console's output (indented, UTF-8, no escaping of readable characters).</summary>
internal static class JsonOut
{
    public static void Write(CliConsole console, Action<Utf8JsonWriter> body)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions
               {
                   Indented = true,
                   Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
               }))
        {
            body(w);
        }
        console.Out.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    public static void StringArray(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) w.WriteStringValue(v);
        w.WriteEndArray();
    }

    public static void NullableString(Utf8JsonWriter w, string name, string? value)
    {
        if (value is null) w.WriteNull(name); else w.WriteString(name, value);
    }
}
