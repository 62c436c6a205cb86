using System.Globalization;
using System.Text;
using System.Text.Json;
using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>
/// The versioned JSON machine format (<c>"format": "iommukit-machine", "version": 1</c>, docs/machine-json.md): a
/// machine written by <c>iommu export</c> or by hand. Writing then reading gives the same machine.
/// </summary>
/// <remarks>
/// When a device carries <c>config</c> (hex), the config-space facts (ids, class, header, bridge buses, capabilities,
/// PCIe, ACS, ARI, SR-IOV) are decoded from it and the explicit fields, when present, must agree with it; without
/// <c>config</c> the explicit fields are the facts. Errors name the JSON path (<c>$.devices[3].acs.control[1]</c>) or,
/// for syntax errors, the line and byte, and the rule.
/// </remarks>
public static class MachineJson
{
    /// <summary>The value of the document's <c>format</c> field.</summary>
    public const string FormatName = "iommukit-machine";
    /// <summary>The format version this code writes, and the only one it reads.</summary>
    public const int CurrentVersion = 1;
    /// <summary>Nesting depth accepted (the format needs 5).</summary>
    public const int MaxDepth = 16;
    /// <summary>
    /// Largest JSON machine accepted and written, in bytes: the cap on any input file
    /// (<see cref="SourceLimits.MaxInputFileBytes"/>, 256 MiB; a 4,096-function export with every config space is about
    /// 40 MB). <see cref="Write"/> refuses a machine whose JSON would be larger, so everything exported loads back.
    /// </summary>
    public const int MaxBytes = (int)SourceLimits.MaxInputFileBytes;

    // ---------------------------------------------------------------- writing

    /// <summary>Writes <paramref name="machine"/> to <paramref name="stream"/> as indented UTF-8 JSON.</summary>
    /// <param name="includeConfig">
    /// Write each device's raw config space as hex when known: a sparse one (a live host loaded with
    /// <see cref="ConfigRead.Needed"/>, <see cref="ConfigSpace.IsComplete"/> false) has no raw bytes and is left out;
    /// load with <see cref="ConfigRead.Whole"/> to write them (<c>iommu export</c> does).
    /// </param>
    /// <exception cref="InputException">The JSON would be larger than <see cref="MaxBytes"/> (it could not be read back).</exception>
    public static void Write(Machine machine, Stream stream, bool includeConfig = true)
    {
        using var capped = new WriteLimitStream(stream, MaxBytes, () => InputException.At(machine.Origin,
            $"the machine's JSON would be larger than the {SourceLimits.Mib(MaxBytes)} JSON machine cap, so it could not be read back; export it with --no-config, or a part of it"));
        using var w = new Utf8JsonWriter(capped, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        w.WriteStartObject();
        w.WriteString("format", FormatName);
        w.WriteNumber("version", CurrentVersion);
        w.WriteString("source", machine.Origin);
        WriteStringOrNull(w, "kernel_release", machine.KernelRelease);
        WriteStringOrNull(w, "cmdline", machine.CommandLine);

        w.WriteStartArray("iommu_units");
        foreach (var u in machine.IommuUnits)
        {
            w.WriteStartObject();
            w.WriteString("name", u.Name);
            w.WriteString("kind", KindName(u.Kind));
            w.WriteStartArray("devices");
            foreach (var d in u.Devices) w.WriteStringValue(d.ToString());
            w.WriteEndArray();
            w.WriteStartObject("registers");
            foreach (var (k, v) in u.Registers.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();

        if (machine.KernelGroups is null) w.WriteNull("kernel_groups");
        else
        {
            w.WriteStartArray("kernel_groups");
            foreach (var g in machine.KernelGroups)
            {
                w.WriteStartObject();
                w.WriteNumber("id", g.Id);
                WriteStringOrNull(w, "type", g.Type);
                if (g.Name is not null) w.WriteString("name", g.Name);
                w.WriteStartArray("reserved_regions");
                foreach (var r in g.ReservedRegions)
                {
                    w.WriteStartObject();
                    w.WriteString("start", $"0x{r.Start:x16}");
                    w.WriteString("end", $"0x{r.End:x16}");
                    w.WriteString("type", r.Type);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("devices");
                foreach (var d in g.Devices) w.WriteStringValue(d.ToString());
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }

        w.WriteStartObject("slots");
        foreach (var (k, v) in machine.Slots.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
        w.WriteEndObject();

        w.WriteStartArray("warnings");
        foreach (var s in machine.Warnings) w.WriteStringValue(s);
        w.WriteEndArray();

        w.WriteStartArray("devices");
        foreach (var d in machine.Topology.Devices.OrderBy(d => d.Address)) WriteDevice(w, d.Facts, includeConfig);
        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
    }

    /// <summary>The JSON text of <paramref name="machine"/>.</summary>
    public static string ToJson(Machine machine, bool includeConfig = true)
    {
        using var ms = new MemoryStream();
        Write(machine, ms, includeConfig);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void WriteDevice(Utf8JsonWriter w, PciDeviceFacts f, bool includeConfig)
    {
        w.WriteStartObject();
        w.WriteString("address", f.Address.ToString());
        w.WriteString("vendor", $"0x{f.VendorId:x4}");
        w.WriteString("device", $"0x{f.DeviceId:x4}");
        w.WriteString("subsystem_vendor", $"0x{f.SubsystemVendorId:x4}");
        w.WriteString("subsystem_device", $"0x{f.SubsystemDeviceId:x4}");
        w.WriteString("class", $"0x{f.ClassCode:x6}");
        w.WriteString("revision", $"0x{f.Revision:x2}");
        w.WriteNumber("header_type", f.HeaderLayout);
        if (f.MultifunctionBit is { } mf) w.WriteBoolean("multifunction", mf); else w.WriteNull("multifunction");
        w.WriteString("visibility", VisibilityName(f.Visibility));
        WriteBridgeBuses(w, f.BridgeBuses);
        if (f.Visibility == ConfigVisibility.HeaderOnly && f.Pcie is null) w.WriteNull("pcie_type");
        else w.WriteString("pcie_type", (f.Pcie?.Type ?? PcieType.None).ToJsonName());
        if (f.Pcie is { } p)
        {
            w.WriteStartObject("pcie");
            w.WriteNumber("offset", p.Offset);
            w.WriteNumber("version", p.Version);
            w.WriteBoolean("slot_implemented", p.SlotImplemented);
            w.WriteString("device_capabilities", $"0x{p.DeviceCapabilities:x8}");
            w.WriteString("link_capabilities", $"0x{p.LinkCapabilities:x8}");
            w.WriteString("link_status", $"0x{p.LinkStatus:x4}");
            w.WriteString("slot_capabilities", $"0x{p.SlotCapabilities:x8}");
            w.WriteEndObject();
        }
        if (f.Acs is { } acs)
        {
            w.WriteStartObject("acs");
            w.WriteNumber("offset", acs.Offset);
            WriteNames(w, "capability", acs.Capability);
            WriteNames(w, "control", acs.Control);
            w.WriteEndObject();
        }
        else w.WriteNull("acs");
        if (f.Ari is { } ari)
        {
            w.WriteStartObject("ari");
            w.WriteNumber("offset", ari.Offset);
            w.WriteNumber("next_function", ari.NextFunction);
            w.WriteEndObject();
        }
        if (f.Sriov is { } sr)
        {
            w.WriteStartObject("sriov");
            w.WriteNumber("offset", sr.Offset);
            w.WriteNumber("total_vfs", sr.TotalVfs);
            w.WriteNumber("num_vfs", sr.NumVfs);
            w.WriteNumber("first_vf_offset", sr.FirstVfOffset);
            w.WriteNumber("vf_stride", sr.VfStride);
            w.WriteString("vf_device", $"0x{sr.VfDeviceId:x4}");
            w.WriteEndObject();
        }
        if (f.Capabilities.Count > 0)
        {
            w.WriteStartArray("capabilities");
            foreach (var c in f.Capabilities)
            {
                w.WriteStartObject();
                w.WriteString("id", c.Extended ? $"0x{c.Id:x4}" : $"0x{c.Id:x2}");
                w.WriteNumber("offset", c.Offset);
                w.WriteBoolean("extended", c.Extended);
                if (c.Extended) w.WriteNumber("version", c.Version);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        WriteStringOrNull(w, "driver", f.Driver);
        if (f.KernelModules.Count > 0)
        {
            w.WriteStartArray("kernel_modules");
            foreach (var m in f.KernelModules) w.WriteStringValue(m);
            w.WriteEndArray();
        }
        if (f.KernelGroup is { } g) w.WriteNumber("kernel_group", g); else w.WriteNull("kernel_group");
        WriteStringOrNull(w, "iommu_unit", f.IommuUnit);
        WriteStringOrNull(w, "parent", f.ParentHint?.ToString());
        w.WriteBoolean("external_facing", f.ExternalFacing);
        w.WriteBoolean("untrusted", f.Untrusted);
        if (f.PhysicalSlot is not null) w.WriteString("physical_slot", f.PhysicalSlot);
        if (f.Description is not null) w.WriteString("description", f.Description);
        // A sparse config (a live host read for the model only) has no raw bytes to write: the facts carry the device.
        if (includeConfig && f.Config is { IsComplete: true } cfg && ConfigCarriesFacts(f, cfg)) w.WriteString("config", Convert.ToHexStringLower(cfg.Bytes));
        w.WriteEndObject();
    }

    /// <summary>
    /// True when reading <paramref name="cfg"/> back gives the capability facts of <paramref name="f"/>. A source can know
    /// more than its bytes (lspci <c>-vv</c> text showing ACS next to a 256-byte <c>-xxx</c> dump, or text and hex that
    /// disagree): such a device is written with its facts and without <c>config</c>, so the export loads back to the
    /// same machine instead of failing the reader's "disagrees with the config bytes" check.
    /// </summary>
    private static bool ConfigCarriesFacts(PciDeviceFacts f, ConfigSpace cfg)
    {
        var d = PciDeviceFacts.FromConfig(f.Address, cfg, out var error);
        return error is null && d.HeaderLayout == f.HeaderLayout && d.BridgeBuses == f.BridgeBuses && d.MultifunctionBit == f.MultifunctionBit
            && d.Pcie == f.Pcie && d.Acs == f.Acs && d.Ari == f.Ari && d.Sriov == f.Sriov && d.Capabilities.SequenceEqual(f.Capabilities)
            && (f.Visibility == ConfigVisibility.HeaderOnly || cfg.Length >= ConfigSpace.ConventionalSize);
    }

    private static void WriteNames(Utf8JsonWriter w, string name, AcsFlags flags)
    {
        w.WriteStartArray(name);
        foreach (var n in flags.ToNames()) w.WriteStringValue(n);
        w.WriteEndArray();
    }

    private static void WriteStringOrNull(Utf8JsonWriter w, string name, string? value)
    {
        if (value is null) w.WriteNull(name); else w.WriteString(name, value);
    }

    /// <summary>The JSON name of an IOMMU kind: intel, amd, virtio, arm-smmu, unknown.</summary>
    public static string KindName(IommuKind k) => k switch
    {
        IommuKind.Intel => "intel",
        IommuKind.Amd => "amd",
        IommuKind.Virtio => "virtio",
        IommuKind.ArmSmmu => "arm-smmu",
        _ => "unknown",
    };

    /// <summary>
    /// Writes a bridge's bus numbers as the <c>bridge_buses</c> object (<c>primary</c>, <c>secondary</c>,
    /// <c>subordinate</c>), or null for a device that is not a bridge: the one writer of that key, for the machine format
    /// and every device object of the CLI.
    /// </summary>
    public static void WriteBridgeBuses(Utf8JsonWriter w, (byte Primary, byte Secondary, byte Subordinate)? buses)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (buses is not { } b) { w.WriteNull("bridge_buses"); return; }
        w.WriteStartObject("bridge_buses");
        w.WriteNumber("primary", b.Primary);
        w.WriteNumber("secondary", b.Secondary);
        w.WriteNumber("subordinate", b.Subordinate);
        w.WriteEndObject();
    }

    /// <summary>The JSON name of a visibility: full, no_extended, header_only.</summary>
    public static string VisibilityName(ConfigVisibility v) => v switch
    {
        ConfigVisibility.Full => "full",
        ConfigVisibility.NoExtended => "no_extended",
        _ => "header_only",
    };

    // ---------------------------------------------------------------- reading

    /// <summary>Reads a JSON machine from a stream (read to the end, at most <see cref="MaxBytes"/>).</summary>
    /// <exception cref="InputException">Not JSON, not our format, an unknown version, or a field that breaks a rule.</exception>
    public static Machine Read(Stream stream, string origin) =>
        Read(SourceLimits.ReadAllCapped(stream, MaxBytes, origin, "JSON machine"), origin);

    /// <summary>Reads a JSON machine from UTF-8 bytes (at most <see cref="MaxBytes"/>).</summary>
    public static Machine Read(ReadOnlyMemory<byte> utf8, string origin)
    {
        if (utf8.Length > MaxBytes)
            throw InputException.At(origin, $"JSON machine of {utf8.Length} bytes is larger than the {SourceLimits.Mib(MaxBytes)} cap");
        // A UTF-8 byte order mark (editors on Windows write one) is not JSON but says what JSON is in: skip it, as
        // MachineSource.Detect does.
        if (utf8.Span.StartsWith((ReadOnlySpan<byte>)[0xef, 0xbb, 0xbf])) utf8 = utf8[3..];
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, new JsonDocumentOptions
            {
                MaxDepth = MaxDepth,
                CommentHandling = JsonCommentHandling.Skip,
                AllowTrailingCommas = true,
            });
        }
        catch (JsonException ex)
        {
            long line = (ex.LineNumber ?? 0) + 1;
            string msg = ex.Message;
            int cut = msg.IndexOf(" Path:", StringComparison.Ordinal);
            if (cut > 0) msg = msg[..cut];
            throw new InputException($"{origin}:{line}: byte {(ex.BytePositionInLine ?? 0) + 1}: not valid JSON: {msg.ReplaceLineEndings(" ").TrimEnd('.', ' ')}");
        }
        catch (ArgumentException ex)
        {
            throw InputException.At(origin, $"not valid JSON: {ex.Message.ReplaceLineEndings(" ")}");
        }
        catch (InvalidOperationException ex)
        {
            throw InputException.At(origin, $"not valid JSON: {ex.Message.ReplaceLineEndings(" ")}");
        }
        using (doc)
        {
            return new Reader(origin).ReadMachine(doc.RootElement);
        }
    }

    private sealed class Reader(string origin)
    {
        private InputException Error(string path, string rule) => new($"{origin}: {path}: {rule}");

        public Machine ReadMachine(JsonElement root)
        {
            const string P = "$";
            if (root.ValueKind != JsonValueKind.Object) throw Error(P, "the top level must be an object");
            string format = Str(root, P, "format") ?? throw Error(P, $"missing \"format\": \"{FormatName}\"");
            if (format != FormatName) throw Error($"{P}.format", $"is \"{format}\", expected \"{FormatName}\"");
            if (!root.TryGetProperty("version", out var ver) || ver.ValueKind != JsonValueKind.Number || !ver.TryGetInt32(out int version))
                throw Error($"{P}.version", "missing or not an integer");
            if (version != CurrentVersion) throw Error($"{P}.version", $"version {version} is not supported (this build reads version {CurrentVersion})");

            var builder = new PciTopologyBuilder { Origin = origin };
            var devices = Arr(root, P, "devices", required: true)!.Value;
            int i = 0;
            foreach (var d in devices.EnumerateArray())
            {
                string dp = $"{P}.devices[{i++}]";
                var facts = ReadDevice(d, dp);
                if (builder.Contains(facts.Address)) throw Error($"{dp}.address", $"{facts.Address} appears twice");
                builder.Add(facts);
            }

            var units = new List<IommuUnit>();
            if (Arr(root, P, "iommu_units", required: false) is { } ua)
            {
                i = 0;
                foreach (var u in ua.EnumerateArray())
                {
                    string up = $"{P}.iommu_units[{i++}]";
                    Obj(u, up);
                    string name = TextSafety.Escape(Str(u, up, "name") ?? throw Error(up, "missing \"name\""));
                    var kind = (Str(u, up, "kind") ?? "unknown") switch
                    {
                        "intel" => IommuKind.Intel,
                        "amd" => IommuKind.Amd,
                        "virtio" => IommuKind.Virtio,
                        "arm-smmu" => IommuKind.ArmSmmu,
                        "unknown" => IommuKind.Unknown,
                        var k => throw Error($"{up}.kind", $"\"{k}\" is not one of intel, amd, virtio, arm-smmu, unknown"),
                    };
                    var regs = new Dictionary<string, string>(StringComparer.Ordinal);
                    if (u.TryGetProperty("registers", out var r) && r.ValueKind != JsonValueKind.Null)
                    {
                        Obj(r, $"{up}.registers");
                        foreach (var prop in r.EnumerateObject())
                        {
                            string key = Name(prop, $"{up}.registers");
                            if (prop.Value.ValueKind != JsonValueKind.String) throw Error($"{up}.registers.{key}", "must be a string");
                            regs[TextSafety.Escape(key)] = TextSafety.Escape(Text(prop.Value, $"{up}.registers.{key}"));
                        }
                    }
                    units.Add(new IommuUnit(name, kind, Addresses(u, up, "devices"), regs));
                }
            }

            List<KernelGroup>? groups = null;
            if (root.TryGetProperty("kernel_groups", out var ga) && ga.ValueKind != JsonValueKind.Null)
            {
                if (ga.ValueKind != JsonValueKind.Array) throw Error($"{P}.kernel_groups", "must be an array or null");
                groups = new List<KernelGroup>();
                var seen = new HashSet<int>();
                var inGroup = new HashSet<PciAddress>();
                i = 0;
                foreach (var g in ga.EnumerateArray())
                {
                    string gp = $"{P}.kernel_groups[{i++}]";
                    Obj(g, gp);
                    if (!g.TryGetProperty("id", out var idEl) || !TryInt32(idEl, out int id) || id < 0)
                        throw Error($"{gp}.id", "missing or not a non-negative integer");
                    if (!seen.Add(id)) throw Error($"{gp}.id", $"group {id} appears twice");
                    var regions = new List<ReservedRegionText>();
                    if (Arr(g, gp, "reserved_regions", required: false) is { } ra)
                    {
                        int j = 0;
                        foreach (var rr in ra.EnumerateArray())
                        {
                            string rp = $"{gp}.reserved_regions[{j++}]";
                            Obj(rr, rp);
                            ulong start = Hex(rr, rp, "start", ulong.MaxValue) ?? throw Error(rp, "missing \"start\"");
                            ulong end = Hex(rr, rp, "end", ulong.MaxValue) ?? throw Error(rp, "missing \"end\"");
                            if (end < start) throw Error($"{rp}.end", "is below start (ends are inclusive)");
                            regions.Add(new ReservedRegionText(start, end, TextSafety.Escape(Str(rr, rp, "type") ?? throw Error(rp, "missing \"type\""))));
                        }
                    }
                    var members = Addresses(g, gp, "devices");
                    // The kernel puts a device in at most one group (iommu_group_add_device): a device listed twice,
                    // in one group or in two, is not a machine the kernel can make.
                    foreach (var a in members)
                        if (!inGroup.Add(a)) throw Error($"{gp}.devices", $"{a} is in more than one place of kernel_groups");
                    groups.Add(new KernelGroup(id, TextSafety.EscapeOrNull(Str(g, gp, "type")), regions, members, TextSafety.EscapeOrNull(Str(g, gp, "name"))));
                }
                groups.Sort((a, b) => a.Id.CompareTo(b.Id));
            }

            var slots = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.TryGetProperty("slots", out var so) && so.ValueKind != JsonValueKind.Null)
            {
                Obj(so, $"{P}.slots");
                foreach (var prop in so.EnumerateObject())
                {
                    string key = Name(prop, $"{P}.slots");
                    if (prop.Value.ValueKind != JsonValueKind.String) throw Error($"{P}.slots.{key}", "must be a string");
                    slots[TextSafety.Escape(key)] = TextSafety.Escape(Text(prop.Value, $"{P}.slots.{key}"));
                }
            }
            var warnings = new List<string>();
            if (Arr(root, P, "warnings", required: false) is { } wa)
            {
                i = 0;
                foreach (var s in wa.EnumerateArray())
                {
                    if (s.ValueKind != JsonValueKind.String) throw Error($"{P}.warnings[{i}]", "must be a string");
                    warnings.Add(TextSafety.Escape(Text(s, $"{P}.warnings[{i}]")));
                    i++;
                }
            }

            return new Machine
            {
                Provenance = MachineProvenance.Json,
                Topology = builder.Build(),
                Origin = origin,
                KernelRelease = TextSafety.EscapeOrNull(Str(root, P, "kernel_release")),
                CommandLine = TextSafety.EscapeOrNull(Str(root, P, "cmdline")),
                IommuUnits = units,
                KernelGroups = groups,
                Slots = slots,
                Warnings = warnings,
            };
        }

        private PciDeviceFacts ReadDevice(JsonElement d, string dp)
        {
            Obj(d, dp);
            string addrText = Str(d, dp, "address") ?? throw Error(dp, "missing \"address\"");
            if (!PciAddress.TryParse(addrText, out var address)) throw Error($"{dp}.address", $"\"{addrText}\" is not a PCI address (dddd:bb:dd.f)");

            PciDeviceFacts facts;
            string? configHex = Str(d, dp, "config");
            if (configHex is not null)
            {
                byte[] bytes;
                try { bytes = Convert.FromHexString(configHex); }
                catch (FormatException) { throw Error($"{dp}.config", "is not an even-length hex string"); }
                if (bytes.Length < ConfigSpace.UnprivilegedSize || bytes.Length > ConfigSpace.ExtendedSize)
                    throw Error($"{dp}.config", $"holds {bytes.Length} bytes; config space is 64 to 4096 bytes");
                facts = PciDeviceFacts.FromConfig(address, ConfigSpace.FromOwned(bytes), out var err);
                if (err is not null) throw Error($"{dp}.config", err);
                // The source knew whether the bytes were all there was (a sysfs read as root) or a cut (lspci -xxx of a
                // PCIe function): keep what it said, as long as the bytes can carry it.
                if (Str(d, dp, "visibility") is { } vis)
                {
                    var v = ParseVisibility(vis, $"{dp}.visibility");
                    if (v != ConfigVisibility.HeaderOnly && bytes.Length < ConfigSpace.ConventionalSize)
                        throw Error($"{dp}.visibility", $"\"{vis}\" needs at least 256 config bytes, \"config\" has {bytes.Length}");
                    facts = facts with { Visibility = v };
                }
                // The ids are the kernel's view, which may differ from the bytes (an SR-IOV VF reads 0xffff): the
                // explicit fields win. Capability facts below must agree with the bytes.
                facts = facts with
                {
                    VendorId = (ushort)(Hex(d, dp, "vendor", 0xffff) ?? facts.VendorId),
                    DeviceId = (ushort)(Hex(d, dp, "device", 0xffff) ?? facts.DeviceId),
                    SubsystemVendorId = (ushort)(Hex(d, dp, "subsystem_vendor", 0xffff) ?? facts.SubsystemVendorId),
                    SubsystemDeviceId = (ushort)(Hex(d, dp, "subsystem_device", 0xffff) ?? facts.SubsystemDeviceId),
                    ClassCode = (uint)(Hex(d, dp, "class", 0xffffff) ?? facts.ClassCode),
                    Revision = (byte)(Hex(d, dp, "revision", 0xff) ?? facts.Revision),
                };
                if (Str(d, dp, "pcie_type") is { } pt && facts.Visibility != ConfigVisibility.HeaderOnly && pt != (facts.Pcie?.Type ?? PcieType.None).ToJsonName())
                    throw Error($"{dp}.pcie_type", $"\"{pt}\" disagrees with the config bytes ({(facts.Pcie?.Type ?? PcieType.None).ToJsonName()}); remove \"config\" to override decoded facts");
                if (d.TryGetProperty("acs", out var acsEl) && acsEl.ValueKind == JsonValueKind.Object)
                {
                    var (cap, ctl) = ReadAcsNames(acsEl, $"{dp}.acs");
                    if (facts.Acs is null || facts.Acs.Capability != cap || facts.Acs.Control != ctl)
                        throw Error($"{dp}.acs", "disagrees with the config bytes; remove \"config\" to override decoded facts");
                }
            }
            else
            {
                facts = ReadExplicitFacts(d, dp, address);
            }

            PciAddress? parent = null;
            if (Str(d, dp, "parent") is { } ps)
            {
                if (!PciAddress.TryParse(ps, out var pa)) throw Error($"{dp}.parent", $"\"{ps}\" is not a PCI address");
                parent = pa;
            }
            int? group = null;
            if (d.TryGetProperty("kernel_group", out var ge) && ge.ValueKind != JsonValueKind.Null)
            {
                if (!TryInt32(ge, out int gv) || gv < 0) throw Error($"{dp}.kernel_group", "must be a non-negative integer or null");
                group = gv;
            }
            string? driver = Str(d, dp, "driver");
            if (driver is not null && SourceText.DriverNameProblem(driver) is { } bad)
                throw Error($"{dp}.driver", bad);
            var modules = new List<string>();
            if (Arr(d, dp, "kernel_modules", required: false) is { } ma)
            {
                int k = 0;
                foreach (var m in ma.EnumerateArray())
                {
                    string mp = $"{dp}.kernel_modules[{k++}]";
                    if (m.ValueKind != JsonValueKind.String) throw Error(mp, "must be a string");
                    if (k > Lspci.LspciReader.MaxKernelModules) throw Error($"{dp}.kernel_modules", $"more than {Lspci.LspciReader.MaxKernelModules} modules");
                    string name = Text(m, mp);
                    if (SourceText.DriverNameProblem(name) is { } mbad) throw Error(mp, mbad.Replace("driver", "module", StringComparison.Ordinal));
                    modules.Add(name);
                }
            }
            return facts with
            {
                Driver = driver,
                KernelModules = modules,
                KernelGroup = group,
                IommuUnit = TextSafety.EscapeOrNull(Str(d, dp, "iommu_unit")),
                ParentHint = parent,
                ExternalFacing = Bool(d, dp, "external_facing") ?? false,
                Untrusted = Bool(d, dp, "untrusted") ?? false,
                PhysicalSlot = TextSafety.EscapeOrNull(Str(d, dp, "physical_slot")),
                Description = TextSafety.EscapeOrNull(Str(d, dp, "description")),
            };
        }

        private PciDeviceFacts ReadExplicitFacts(JsonElement d, string dp, PciAddress address)
        {
            ushort vendor = (ushort)(Hex(d, dp, "vendor", 0xffff) ?? throw Error(dp, "missing \"vendor\" (or \"config\")"));
            ushort device = (ushort)(Hex(d, dp, "device", 0xffff) ?? throw Error(dp, "missing \"device\" (or \"config\")"));
            uint cls = (uint)(Hex(d, dp, "class", 0xffffff) ?? throw Error(dp, "missing \"class\" (or \"config\")"));
            int header = 0;
            if (d.TryGetProperty("header_type", out var ht) && ht.ValueKind != JsonValueKind.Null)
            {
                if (!TryInt32(ht, out header) || header is < 0 or > 2) throw Error($"{dp}.header_type", "must be 0, 1 or 2");
            }
            else if ((cls >> 8) == 0x0604 || (cls >> 8) == 0x0609) header = 1; // PCI-to-PCI bridge class: type 1 header
            else if ((cls >> 8) == 0x0607) header = 2;

            (byte, byte, byte)? buses = null;
            if (d.TryGetProperty("bridge_buses", out var bb) && bb.ValueKind != JsonValueKind.Null)
            {
                string bp = $"{dp}.bridge_buses";
                Obj(bb, bp);
                buses = ((byte)Int(bb, bp, "primary", 255), (byte)Int(bb, bp, "secondary", 255), (byte)Int(bb, bp, "subordinate", 255));
                if (header == 0) throw Error(bp, "a type 0 header (header_type 0) has no bridge buses");
            }

            var visibility = ParseVisibility(Str(d, dp, "visibility") ?? "full", $"{dp}.visibility");

            PcieInfo? pcie = null;
            string? ptName = Str(d, dp, "pcie_type");
            if (ptName is null)
            {
                if (d.TryGetProperty("pcie_type", out var pte) && pte.ValueKind == JsonValueKind.Null && visibility == ConfigVisibility.Full && !d.TryGetProperty("visibility", out _))
                    visibility = ConfigVisibility.HeaderOnly; // "pcie_type": null without a visibility means unknown
            }
            else
            {
                if (!PcieTypeNames.TryParseJsonName(ptName, out var pt))
                    throw Error($"{dp}.pcie_type", $"\"{ptName}\" is not a PCIe type (pci, endpoint, legacy_endpoint, root_port, upstream_port, downstream_port, pcie_to_pci_bridge, pci_to_pcie_bridge, rc_integrated_endpoint, rc_event_collector)");
                if (pt != PcieType.None)
                {
                    int offset = -1, version = 2;
                    bool slot = false;
                    uint devcap = 0, linkcap = 0, slotcap = 0;
                    ushort linksta = 0;
                    if (d.TryGetProperty("pcie", out var pe) && pe.ValueKind != JsonValueKind.Null)
                    {
                        string pp = $"{dp}.pcie";
                        Obj(pe, pp);
                        offset = pe.TryGetProperty("offset", out _) ? Int(pe, pp, "offset", 4095, min: -1) : -1;
                        version = pe.TryGetProperty("version", out _) ? Int(pe, pp, "version", 15) : 2;
                        slot = Bool(pe, pp, "slot_implemented") ?? false;
                        devcap = (uint)(Hex(pe, pp, "device_capabilities", uint.MaxValue) ?? 0);
                        linkcap = (uint)(Hex(pe, pp, "link_capabilities", uint.MaxValue) ?? 0);
                        linksta = (ushort)(Hex(pe, pp, "link_status", ushort.MaxValue) ?? 0);
                        slotcap = (uint)(Hex(pe, pp, "slot_capabilities", uint.MaxValue) ?? 0);
                    }
                    pcie = new PcieInfo(offset, version, pt, slot, devcap, linkcap, linksta, slotcap);
                }
            }

            AcsInfo? acs = null;
            if (d.TryGetProperty("acs", out var ae) && ae.ValueKind != JsonValueKind.Null)
            {
                string ap = $"{dp}.acs";
                Obj(ae, ap);
                var (cap, ctl) = ReadAcsNames(ae, ap);
                int off = ae.TryGetProperty("offset", out _) ? Int(ae, ap, "offset", 4095, min: -1) : -1;
                acs = new AcsInfo(off, cap, ctl);
            }
            AriInfo? ari = null;
            if (d.TryGetProperty("ari", out var are) && are.ValueKind != JsonValueKind.Null)
            {
                Obj(are, $"{dp}.ari");
                ari = new AriInfo(are.TryGetProperty("offset", out _) ? Int(are, $"{dp}.ari", "offset", 4095, min: -1) : -1,
                    (byte)Int(are, $"{dp}.ari", "next_function", 255));
            }
            SriovInfo? sriov = null;
            if (d.TryGetProperty("sriov", out var se) && se.ValueKind != JsonValueKind.Null)
            {
                string sp = $"{dp}.sriov";
                Obj(se, sp);
                sriov = new SriovInfo(se.TryGetProperty("offset", out _) ? Int(se, sp, "offset", 4095, min: -1) : -1,
                    (ushort)Int(se, sp, "total_vfs", 0xffff), (ushort)Int(se, sp, "num_vfs", 0xffff),
                    (ushort)Int(se, sp, "first_vf_offset", 0xffff), (ushort)Int(se, sp, "vf_stride", 0xffff),
                    (ushort)(Hex(se, sp, "vf_device", 0xffff) ?? 0));
            }
            var caps = new List<PciCapability>();
            if (Arr(d, dp, "capabilities", required: false) is { } ca)
            {
                int j = 0;
                foreach (var c in ca.EnumerateArray())
                {
                    string cp = $"{dp}.capabilities[{j++}]";
                    Obj(c, cp);
                    bool ext = Bool(c, cp, "extended") ?? false;
                    ushort id = (ushort)(Hex(c, cp, "id", ext ? 0xffffUL : 0xffUL) ?? throw Error(cp, "missing \"id\""));
                    caps.Add(new PciCapability(id, Int(c, cp, "offset", 4095), ext, (byte)(ext && c.TryGetProperty("version", out _) ? Int(c, cp, "version", 15) : 0)));
                }
            }
            bool? mf = null;
            if (d.TryGetProperty("multifunction", out var me) && me.ValueKind != JsonValueKind.Null) mf = Bool(d, dp, "multifunction");
            return new PciDeviceFacts
            {
                Address = address,
                VendorId = vendor,
                DeviceId = device,
                SubsystemVendorId = (ushort)(Hex(d, dp, "subsystem_vendor", 0xffff) ?? 0),
                SubsystemDeviceId = (ushort)(Hex(d, dp, "subsystem_device", 0xffff) ?? 0),
                ClassCode = cls,
                Revision = (byte)(Hex(d, dp, "revision", 0xff) ?? 0),
                HeaderLayout = header,
                MultifunctionBit = mf,
                BridgeBuses = buses,
                Pcie = pcie,
                Acs = acs,
                Ari = ari,
                Sriov = sriov,
                Capabilities = caps,
                Visibility = visibility,
            };
        }

        private ConfigVisibility ParseVisibility(string text, string path) => text switch
        {
            "full" => ConfigVisibility.Full,
            "no_extended" => ConfigVisibility.NoExtended,
            "header_only" => ConfigVisibility.HeaderOnly,
            _ => throw Error(path, $"\"{text}\" is not one of full, no_extended, header_only"),
        };

        private (AcsFlags Cap, AcsFlags Ctl) ReadAcsNames(JsonElement acs, string ap) =>
            (Flags(acs, ap, "capability"), Flags(acs, ap, "control"));

        private AcsFlags Flags(JsonElement obj, string path, string name)
        {
            if (!obj.TryGetProperty(name, out var arr) || arr.ValueKind == JsonValueKind.Null) return AcsFlags.None;
            if (arr.ValueKind != JsonValueKind.Array) throw Error($"{path}.{name}", "must be a list of ACS bit names");
            AcsFlags flags = AcsFlags.None;
            int i = 0;
            foreach (var e in arr.EnumerateArray())
            {
                string ep = $"{path}.{name}[{i++}]";
                if (e.ValueKind != JsonValueKind.String) throw Error(ep, "must be a string");
                string s = Text(e, ep);
                AcsFlags? f = null;
                foreach (var (flag, lname) in AcsFlagsNames.LspciNames)
                {
                    if (lname == s || flag.ToString() == s) { f = flag; break; }
                }
                flags |= f ?? throw Error(ep, $"\"{s}\" is not an ACS bit (SrcValid TransBlk ReqRedir CmpltRedir UpstreamFwd EgressCtrl DirectTrans, or SV TB RR CR UF EC DT)");
            }
            return flags;
        }

        private void Obj(JsonElement e, string path)
        {
            if (e.ValueKind != JsonValueKind.Object) throw Error(path, "must be an object");
        }

        private JsonElement? Arr(JsonElement obj, string path, string name, bool required)
        {
            if (!obj.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null)
                return required ? throw Error(path, $"missing \"{name}\" (a list)") : null;
            if (e.ValueKind != JsonValueKind.Array) throw Error($"{path}.{name}", "must be a list");
            return e;
        }

        private string? Str(JsonElement obj, string path, string name)
        {
            if (!obj.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return null;
            if (e.ValueKind != JsonValueKind.String) throw Error($"{path}.{name}", "must be a string or null");
            return Text(e, $"{path}.{name}");
        }

        /// <summary>
        /// The string value of <paramref name="e"/>: invalid UTF-8 or a lone surrogate escape (<c>"\ud800"</c>) is bad
        /// input naming the path (<see cref="JsonElement.GetString"/> throws InvalidOperationException for both).
        /// </summary>
        private string Text(JsonElement e, string path)
        {
            try { return e.GetString()!; }
            catch (InvalidOperationException) { throw Error(path, "is not valid UTF-8 text (invalid bytes or a lone surrogate escape)"); }
        }

        /// <summary>A property name, with the same check as <see cref="Text"/>.</summary>
        private string Name(JsonProperty p, string path)
        {
            try { return p.Name; }
            catch (InvalidOperationException) { throw Error(path, "has a property name that is not valid UTF-8 text (invalid bytes or a lone surrogate escape)"); }
        }

        private bool? Bool(JsonElement obj, string path, string name)
        {
            if (!obj.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return null;
            return e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error($"{path}.{name}", "must be true or false"),
            };
        }

        /// <summary>
        /// <see cref="JsonElement.TryGetInt32"/> that answers false for a non-number instead of throwing
        /// InvalidOperationException (a string where a number belongs is bad input, not a bug).
        /// </summary>
        private static bool TryInt32(JsonElement e, out int value)
        {
            value = 0;
            return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out value);
        }

        private int Int(JsonElement obj, string path, string name, int max, int min = 0)
        {
            if (!obj.TryGetProperty(name, out var e)) throw Error(path, $"missing \"{name}\"");
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v) || v < min || v > max)
                throw Error($"{path}.{name}", $"must be an integer from {min} to {max}");
            return v;
        }

        /// <summary>A hex string "0x8086" (or a plain number) up to <paramref name="max"/>; null when absent.</summary>
        private ulong? Hex(JsonElement obj, string path, string name, ulong max)
        {
            if (!obj.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return null;
            ulong v;
            if (e.ValueKind == JsonValueKind.Number)
            {
                if (!e.TryGetUInt64(out v)) throw Error($"{path}.{name}", "must be a non-negative integer or a \"0x…\" hex string");
            }
            else if (e.ValueKind == JsonValueKind.String)
            {
                string s = Text(e, $"{path}.{name}");
                if (!HexText.TryParsePrefixed(s, out v))
                    throw Error($"{path}.{name}", $"\"{(s.Length > 40 ? s[..40] + "…" : s)}\" is not a \"0x…\" hex number");
            }
            else throw Error($"{path}.{name}", "must be a \"0x…\" hex string");
            if (v > max) throw Error($"{path}.{name}", $"0x{v:x} is above the maximum 0x{max:x}");
            return v;
        }

        private List<PciAddress> Addresses(JsonElement obj, string path, string name)
        {
            var list = new List<PciAddress>();
            if (Arr(obj, path, name, required: false) is not { } arr) return list;
            int i = 0;
            foreach (var e in arr.EnumerateArray())
            {
                string ep = $"{path}.{name}[{i++}]";
                if (e.ValueKind != JsonValueKind.String || !PciAddress.TryParse(Text(e, ep), out var a))
                    throw Error(ep, "must be a PCI address string (dddd:bb:dd.f)");
                list.Add(a);
            }
            return list;
        }
    }
}
