using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace IommuKit.Cli.Tests;

/// <summary>
/// One headless Chromium driven over the DevTools protocol (a WebSocket on loopback): one page that loads file after
/// file, runs a script in each and reports what went wrong while it loaded (script errors, <c>console.error</c>,
/// failed loads, requests for anything but a local file). One process serves a whole test class: starting Chromium
/// costs about a second, loading a report a few tens of milliseconds.
/// </summary>
/// <remarks>
/// Single-threaded by design: a command is sent and messages are read until its answer arrives; events read on the
/// way are recorded for the page being loaded. Every wait is bounded (<see cref="Timeout"/>).
/// </remarks>
internal sealed class DevTools : IDisposable
{
    /// <summary>The longest any one command or page load may take.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly DirectoryInfo _profile;
    private readonly ClientWebSocket _socket = new();
    private readonly Task<string> _stderr;
    private readonly string _session;
    private readonly List<string> _problems = [];
    private int _nextId;
    private bool _loaded;

    /// <summary>The page's problems since the last <see cref="Load"/> began.</summary>
    public IReadOnlyList<string> Problems => _problems;

    public DevTools(string chromium, int width = 1400, int height = 1000)
    {
        _profile = Directory.CreateTempSubdirectory("iommu-chromium-");
        var psi = new ProcessStartInfo(chromium)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                     "--disable-extensions", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                     $"--user-data-dir={_profile.FullName}", $"--window-size={width},{height}", "about:blank" })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _stderr = _process.StandardError.ReadToEndAsync();
        _ = _process.StandardOutput.ReadToEndAsync();
        try
        {
            _socket.ConnectAsync(new Uri(BrowserEndpoint()), Cancel()).GetAwaiter().GetResult();
            var target = Send("Target.createTarget", new JsonObject { ["url"] = "about:blank" }).GetProperty("targetId").GetString()!;
            _session = Send("Target.attachToTarget", new JsonObject { ["targetId"] = target, ["flatten"] = true }).GetProperty("sessionId").GetString()!;
            foreach (var domain in new[] { "Page.enable", "Runtime.enable", "Log.enable", "Network.enable" })
                Send(domain, null, _session);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The browser's WebSocket address, from the DevToolsActivePort file Chromium writes into its profile.</summary>
    private string BrowserEndpoint()
    {
        var file = Path.Combine(_profile.FullName, "DevToolsActivePort");
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < Timeout)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"chromium exited with {_process.ExitCode} before listening: {_stderr.Result}");
            try
            {
                var lines = File.ReadAllLines(file);
                if (lines.Length >= 2 && int.TryParse(lines[0], out int port))
                    return $"ws://127.0.0.1:{port}{lines[1]}";
            }
            catch (IOException) { /* not written yet */ }
            Thread.Sleep(50);
        }
        throw new TimeoutException("chromium did not open its DevTools port within a minute");
    }

    /// <summary>Navigates the page to <paramref name="file"/> and waits for its load event; clears <see cref="Problems"/> first.</summary>
    public void Load(string file)
    {
        _problems.Clear();
        _loaded = false;
        var nav = Send("Page.navigate", new JsonObject { ["url"] = new Uri(file).AbsoluteUri }, _session);
        if (nav.TryGetProperty("errorText", out var err)) _problems.Add($"navigation failed: {err.GetString()}");
        var sw = Stopwatch.StartNew();
        while (!_loaded)
        {
            if (sw.Elapsed > Timeout) throw new TimeoutException($"{file} did not finish loading within a minute");
            Handle(Receive());
        }
    }

    /// <summary>Runs <paramref name="expression"/> in the page and returns its value (which must be a string).</summary>
    public string Evaluate(string expression)
    {
        var r = Send("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true }, _session);
        if (r.TryGetProperty("exceptionDetails", out var ex))
            throw new InvalidOperationException("the script threw: " + Describe(ex));
        return r.GetProperty("result").GetProperty("value").GetString()!;
    }

    private JsonElement Send(string method, JsonObject? parameters, string? session = null)
    {
        int id = ++_nextId;
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        if (session is not null) message["sessionId"] = session;
        _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, Cancel()).GetAwaiter().GetResult();
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < Timeout)
        {
            var m = Receive();
            if (m.TryGetProperty("id", out var rid) && rid.GetInt32() == id)
            {
                if (m.TryGetProperty("error", out var e)) throw new InvalidOperationException($"{method}: {e}");
                return m.GetProperty("result").Clone();
            }
            Handle(m);
        }
        throw new TimeoutException($"{method}: no answer within a minute");
    }

    /// <summary>Records the events that mean something went wrong in the page, and the load event.</summary>
    private void Handle(JsonElement m)
    {
        if (!m.TryGetProperty("method", out var method)) return;
        var p = m.GetProperty("params");
        switch (method.GetString())
        {
            case "Page.loadEventFired":
                _loaded = true;
                break;
            case "Runtime.exceptionThrown":
                _problems.Add("uncaught: " + Describe(p.GetProperty("exceptionDetails")));
                break;
            case "Runtime.consoleAPICalled" when p.GetProperty("type").GetString() is "error" or "assert" or "warning":
                _problems.Add($"console.{p.GetProperty("type").GetString()}: " +
                              string.Join(" ", p.GetProperty("args").EnumerateArray().Select(a =>
                                  a.TryGetProperty("value", out var v) ? v.ToString() : a.TryGetProperty("description", out var d) ? d.GetString() : "?")));
                break;
            case "Log.entryAdded" when p.GetProperty("entry").GetProperty("level").GetString() is "error" or "warning":
                _problems.Add("log: " + p.GetProperty("entry").GetProperty("text").GetString());
                break;
            case "Network.requestWillBeSent":
                var url = p.GetProperty("request").GetProperty("url").GetString()!;
                if (!url.StartsWith("file:", StringComparison.Ordinal) && !url.StartsWith("data:", StringComparison.Ordinal)
                    && url != "about:blank")
                    _problems.Add("fetched: " + url);
                break;
            case "Network.loadingFailed":
                _problems.Add("load failed: " + p.GetProperty("errorText").GetString());
                break;
        }
    }

    private static string Describe(JsonElement details) =>
        details.TryGetProperty("exception", out var e) && e.TryGetProperty("description", out var d)
            ? d.GetString()!
            : details.GetProperty("text").GetString()!;

    private JsonElement Receive()
    {
        var buffer = new byte[64 * 1024];
        using var ms = new MemoryStream();
        WebSocketReceiveResult r;
        do
        {
            r = _socket.ReceiveAsync(buffer, Cancel()).GetAwaiter().GetResult();
            if (r.MessageType == WebSocketMessageType.Close)
                throw new InvalidOperationException("chromium closed the DevTools connection: " + (_process.HasExited ? _stderr.Result : ""));
            ms.Write(buffer, 0, r.Count);
        } while (!r.EndOfMessage);
        using var doc = JsonDocument.Parse(ms.ToArray());
        return doc.RootElement.Clone();
    }

    private static CancellationToken Cancel() => new CancellationTokenSource(Timeout).Token;

    public void Dispose()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
                _socket.SendAsync(Encoding.UTF8.GetBytes($$"""{"id":{{++_nextId}},"method":"Browser.close"}"""), WebSocketMessageType.Text, true, Cancel())
                    .GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException) { /* killed below */ }
        _socket.Dispose();
        if (!_process.WaitForExit(5_000)) _process.Kill(entireProcessTree: true);
        _process.Dispose();
        try { _profile.Delete(recursive: true); } catch (IOException) { /* a helper may still hold a file */ }
    }
}
