using System.Formats.Tar;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Xunit;

namespace IommuKit.Tests.Oracle;

/// <summary>
/// The machines captured with the extended tools (<c>tools/oracle/</c>, names starting with <c>h_</c>): each
/// expected.json must describe exactly the tarball next to it, and the facts the extension added (IOMMU unit register
/// files, PCI slots) must be where the JSON says. Reads the tarballs with <see cref="TarReader"/> directly, so these
/// checks do not depend on the library's own snapshot source.
/// </summary>
public class NewCapturesAreWellFormedTests
{
    private const string NewPrefix = "h_";

    /// <summary>The new machines (file stems), sorted.</summary>
    public static TheoryData<string> NewMachines()
    {
        var data = new TheoryData<string>();
        foreach (var name in NewMachineNames())
            data.Add(name);
        return data;
    }

    private static List<string> NewMachineNames()
    {
        var names = new List<string>();
        foreach (var name in Fixtures.OracleMachines())
        {
            if (name.StartsWith(NewPrefix, StringComparison.Ordinal))
                names.Add(name);
        }
        return names;
    }

    [Fact]
    public void AtLeastTheRequestedNewMachinesExist()
    {
        var names = new HashSet<string>(Fixtures.OracleMachines());
        foreach (var required in new[] { "h_default_regs", "h_cachingmode_regs" })
            Assert.Contains(required, names);
        foreach (var name in names)
        {
            if (name.StartsWith(NewPrefix, StringComparison.Ordinal))
            {
                Assert.True(File.Exists(Fixtures.OracleTarball(name)), $"{name}: tarball missing");
                Assert.True(File.Exists(Path.Combine(Fixtures.Oracle, name + ".cmd")), $"{name}: .cmd missing");
            }
        }
    }

    [Fact]
    public void MachinesMdListsExactlyTheNewMachines()
    {
        var listed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in File.ReadAllLines(Path.Combine(Fixtures.Oracle, "MACHINES.md")))
        {
            if (!line.StartsWith("| " + NewPrefix, StringComparison.Ordinal))
                continue;
            var cell = line.Split('|')[1].Trim();
            Assert.True(listed.Add(cell), $"MACHINES.md lists {cell} twice");
        }
        Assert.Equal(NewMachineNames(), listed.Order(StringComparer.Ordinal));
    }

    /// <summary>The summary columns of MACHINES.md (kernel, IOMMU, devices, groups, types) are the JSON's.</summary>
    [Fact]
    public void MachinesMdRowsStateTheKernelIommuDeviceAndGroupCountsOfTheJson()
    {
        foreach (var line in File.ReadAllLines(Path.Combine(Fixtures.Oracle, "MACHINES.md")))
        {
            if (!line.StartsWith("| " + NewPrefix, StringComparison.Ordinal))
                continue;
            var cells = line.Split('|');
            var name = cells[1].Trim();
            using var json = LoadExpected(name);
            var root = json.RootElement;
            var kernel = root.GetProperty("kernel").GetString()!;
            var types = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var g in root.GetProperty("groups").EnumerateArray())
                types.Add(g.GetProperty("type").GetString()!);
            Assert.Equal(kernel.StartsWith("6.12", StringComparison.Ordinal) ? "6.12" : "6.1", cells[2].Trim());
            Assert.Equal(root.GetProperty("iommu").GetString(), cells[3].Trim());
            Assert.Equal(root.GetProperty("devices").GetArrayLength().ToString(CultureInfo.InvariantCulture), cells[4].Trim());
            Assert.Equal(root.GetProperty("groups").GetArrayLength().ToString(CultureInfo.InvariantCulture), cells[5].Trim());
            Assert.Equal(types.Count == 0 ? "-" : string.Join(',', types), cells[6].Trim());
        }
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void ExpectedDeviceListEqualsTheTarballsPciDevices(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        using var json = LoadExpected(name);
        var expected = new List<string>();
        foreach (var d in json.RootElement.GetProperty("devices").EnumerateArray())
            expected.Add(d.GetProperty("bdf").GetString()!);

        Assert.Equal(expected.Order(StringComparer.Ordinal), expected); // the JSON keeps them sorted
        Assert.Equal(expected, tar.ChildNames("sys/bus/pci/devices"));
        foreach (var d in json.RootElement.GetProperty("devices").EnumerateArray())
        {
            var bdf = d.GetProperty("bdf").GetString()!;
            var dir = tar.Resolve($"sys/bus/pci/devices/{bdf}");
            Assert.Equal(d.GetProperty("vendor").GetString() + "\n", tar.Text($"{dir}/vendor"));
            Assert.Equal(d.GetProperty("device").GetString() + "\n", tar.Text($"{dir}/device"));
            Assert.Equal(d.GetProperty("class").GetString() + "\n", tar.Text($"{dir}/class"));
            var config = tar.Bytes($"{dir}/config");
            Assert.True(config.Length is 256 or 4096, $"{name} {bdf}: config is {config.Length} bytes");

            var driver = d.GetProperty("driver");
            Assert.Equal(driver.ValueKind == JsonValueKind.Null ? null : $"sys/bus/pci/drivers/{driver.GetString()}",
                tar.TryResolve($"{dir}/driver"));
            var group = d.GetProperty("group");
            Assert.Equal(group.ValueKind == JsonValueKind.Null ? null : $"sys/kernel/iommu_groups/{group.GetInt32()}",
                tar.TryResolve($"{dir}/iommu_group"));
        }
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void ExpectedGroupsEqualTheTarballsIommuGroups(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        using var json = LoadExpected(name);
        var ids = new List<string>();
        foreach (var g in json.RootElement.GetProperty("groups").EnumerateArray())
        {
            var id = g.GetProperty("id").GetInt32().ToString(CultureInfo.InvariantCulture);
            ids.Add(id);
            var dir = $"sys/kernel/iommu_groups/{id}";
            Assert.Equal(g.GetProperty("type").GetString() + "\n", tar.Text($"{dir}/type"));
            var resv = new StringBuilder();
            foreach (var r in g.GetProperty("reserved_regions").EnumerateArray())
            {
                resv.Append(r.GetProperty("start").GetString()).Append(' ').Append(r.GetProperty("end").GetString())
                    .Append(' ').Append(r.GetProperty("type").GetString()).Append('\n');
            }
            Assert.Equal(resv.ToString(), tar.Text($"{dir}/reserved_regions"));
            var members = new List<string>();
            foreach (var m in g.GetProperty("devices").EnumerateArray())
                members.Add(m.GetString()!);
            Assert.Equal(members, tar.ChildNames($"{dir}/devices"));
        }
        var inTar = tar.ChildNames("sys/kernel/iommu_groups");
        Assert.Equal(ids.Order(StringComparer.Ordinal), inTar);
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void EveryUnitRegisterOfTheJsonIsAFileOfTheUnitAndNothingElseIs(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        using var json = LoadExpected(name);
        var units = json.RootElement.GetProperty("iommu_units");
        var unitNames = new List<string>();
        foreach (var unit in units.EnumerateArray())
        {
            var unitName = unit.GetProperty("name").GetString()!;
            unitNames.Add(unitName);
            var path = unit.GetProperty("path").GetString()!;
            Assert.Equal(path, tar.Resolve($"sys/class/iommu/{unitName}"));

            var expectedFiles = new List<string>();
            foreach (var reg in unit.GetProperty("registers").EnumerateObject())
            {
                expectedFiles.Add(reg.Name);
                // Reached through the class link, as a reader of /sys would.
                Assert.Equal(reg.Value.GetString() + "\n", tar.Text(tar.Resolve($"sys/class/iommu/{unitName}/{reg.Name}")));
            }
            var filesInUnit = new List<string>();
            foreach (var member in tar.RegularFilesUnder(path))
            {
                if (!member.StartsWith("devices/", StringComparison.Ordinal))
                    filesInUnit.Add(member);
            }
            Assert.Equal(expectedFiles.Order(StringComparer.Ordinal), filesInUnit.Order(StringComparer.Ordinal));

            var devices = new List<string>();
            foreach (var d in unit.GetProperty("devices").EnumerateArray())
                devices.Add(d.GetString()!);
            Assert.Equal(devices, tar.ChildNames($"{path}/devices"));
        }
        Assert.Equal(unitNames, tar.ChildNames("sys/class/iommu"));
        Assert.Equal(json.RootElement.GetProperty("iommu").GetString() == "none", unitNames.Count == 0);
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void EveryIntelUnitCarriesCapEcapVersionAndAddressAsHexText(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        using var json = LoadExpected(name);
        foreach (var unit in json.RootElement.GetProperty("iommu_units").EnumerateArray())
        {
            var unitName = unit.GetProperty("name").GetString()!;
            if (!unitName.StartsWith("dmar", StringComparison.Ordinal))
                continue;
            var dir = tar.Resolve($"sys/class/iommu/{unitName}/intel-iommu");
            foreach (var reg in new[] { "cap", "ecap", "address" })
            {
                var text = tar.Text($"{dir}/{reg}");
                Assert.True(ulong.TryParse(text.AsSpan().TrimEnd('\n'), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out _),
                    $"{name}: {unitName} {reg} is not hex: {text}");
            }
            Assert.Matches(@"^[0-9]+:[0-9]+\n$", tar.Text($"{dir}/version"));
        }
    }

    /// <summary>
    /// VT-d CAP bit 7 (CM, caching mode) makes the 6.1+ Intel driver disable batched invalidation
    /// (<c>iommu_set_dma_strict()</c> in <c>intel_iommu_init</c>/<c>init_dmars</c>), so every DMA default domain is
    /// strict <c>DMA</c>, never <c>DMA-FQ</c>, whatever <c>iommu.strict=</c> says. Checked on the captured data.
    /// </summary>
    [Theory]
    [MemberData(nameof(NewMachines))]
    public void CachingModeUnitsNeverGetLazyDmaFqGroups(string name)
    {
        using var json = LoadExpected(name);
        var cachingMode = false;
        foreach (var unit in json.RootElement.GetProperty("iommu_units").EnumerateArray())
        {
            if (unit.GetProperty("registers").TryGetProperty("intel-iommu/cap", out var cap))
                cachingMode |= (ulong.Parse(cap.GetString()!, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture) & (1UL << 7)) != 0;
        }
        foreach (var g in json.RootElement.GetProperty("groups").EnumerateArray())
        {
            if (cachingMode)
                Assert.NotEqual("DMA-FQ", g.GetProperty("type").GetString());
        }
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void ExpectedSlotsEqualTheTarballsSlotDirectories(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        using var json = LoadExpected(name);
        var names = new List<string>();
        foreach (var slot in json.RootElement.GetProperty("slots").EnumerateArray())
        {
            var slotName = slot.GetProperty("name").GetString()!;
            names.Add(slotName);
            Assert.Equal(slot.GetProperty("address").GetString() + "\n", tar.Text($"sys/bus/pci/slots/{slotName}/address"));
        }
        Assert.Equal(names, tar.ChildNames("sys/bus/pci/slots"));
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void EveryLinkIsRelativeAndResolvesInsideTheTarball(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        foreach (var (path, target) in tar.Links)
        {
            Assert.False(target.StartsWith('/'), $"{name}: {path} -> {target} is absolute");
            Assert.NotNull(tar.TryResolve(path));
        }
    }

    [Theory]
    [MemberData(nameof(NewMachines))]
    public void ProcFilesMatchTheExpectedKernelAndCommandLine(string name)
    {
        var tar = SnapshotTar.Load(Fixtures.OracleTarball(name));
        using var json = LoadExpected(name);
        Assert.Equal(name, json.RootElement.GetProperty("name").GetString());
        Assert.Equal(json.RootElement.GetProperty("kernel").GetString() + "\n", tar.Text("proc/sys/kernel/osrelease"));
        Assert.Equal(json.RootElement.GetProperty("cmdline").GetString() + "\n", tar.Text("proc/cmdline"));
    }

    private static JsonDocument LoadExpected(string name) => JsonDocument.Parse(File.ReadAllBytes(Fixtures.OracleExpected(name)));

    /// <summary>A gzip'd snapshot tarball held in memory: directories, files and relative symlinks by member path.</summary>
    private sealed class SnapshotTar
    {
        private const int MaxLinkDepth = 40;
        private readonly Dictionary<string, byte[]> _files = new(StringComparer.Ordinal);
        private readonly HashSet<string> _dirs = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _links = new(StringComparer.Ordinal);

        public IReadOnlyDictionary<string, string> Links => _links;

        public static SnapshotTar Load(string path)
        {
            var tar = new SnapshotTar();
            using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
            using var reader = new TarReader(gz);
            while (reader.GetNextEntry() is { } entry)
            {
                var name = entry.Name.TrimEnd('/');
                Assert.False(tar.Exists(name), $"{path}: duplicate member {name}");
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        tar._dirs.Add(name);
                        break;
                    case TarEntryType.SymbolicLink:
                        tar._links.Add(name, entry.LinkName);
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile:
                        using (var data = new MemoryStream())
                        {
                            entry.DataStream?.CopyTo(data);
                            tar._files.Add(name, data.ToArray());
                        }
                        break;
                    default:
                        Assert.Fail($"{path}: member {name} has unexpected type {entry.EntryType}");
                        break;
                }
            }
            return tar;
        }

        private bool Exists(string p) => _files.ContainsKey(p) || _dirs.Contains(p) || _links.ContainsKey(p);

        /// <summary>Physical path of <paramref name="path"/>, following links component by component.</summary>
        public string Resolve(string path) => TryResolve(path) ?? throw new Xunit.Sdk.XunitException($"{path} does not resolve inside the tarball");

        public string? TryResolve(string path) => TryResolve(path, 0);

        private string? TryResolve(string path, int depth)
        {
            if (depth > MaxLinkDepth)
                return null;
            var current = new List<string>();
            foreach (var component in path.Split('/'))
            {
                if (component is "" or ".")
                    continue;
                if (component == "..")
                {
                    if (current.Count == 0)
                        return null; // escapes the root
                    current.RemoveAt(current.Count - 1);
                    continue;
                }
                current.Add(component);
                var candidate = string.Join('/', current);
                if (_links.TryGetValue(candidate, out var target))
                {
                    if (target.StartsWith('/'))
                        return null;
                    var parent = current.Count > 1 ? string.Join('/', current.GetRange(0, current.Count - 1)) : "";
                    var resolved = TryResolve(parent.Length == 0 ? target : parent + "/" + target, depth + 1);
                    if (resolved is null)
                        return null;
                    current = resolved.Length == 0 ? [] : [.. resolved.Split('/')];
                }
                else if (!_files.ContainsKey(candidate) && !_dirs.Contains(candidate))
                {
                    return null;
                }
            }
            return string.Join('/', current);
        }

        public byte[] Bytes(string path)
        {
            var physical = Resolve(path);
            return _files.TryGetValue(physical, out var data) ? data : throw new Xunit.Sdk.XunitException($"{path} is not a file");
        }

        public string Text(string path) => Encoding.ASCII.GetString(Bytes(path));

        /// <summary>Sorted names of the direct children (any member kind) of directory <paramref name="dir"/>.</summary>
        public List<string> ChildNames(string dir)
        {
            var physical = Resolve(dir);
            Assert.True(_dirs.Contains(physical), $"{dir} is not a directory");
            var prefix = physical + "/";
            var names = new List<string>();
            foreach (var p in _files.Keys.Concat(_dirs).Concat(_links.Keys))
            {
                if (p.StartsWith(prefix, StringComparison.Ordinal) && p.IndexOf('/', prefix.Length) < 0)
                    names.Add(p[prefix.Length..]);
            }
            names.Sort(StringComparer.Ordinal);
            return names;
        }

        /// <summary>Regular files below directory <paramref name="dir"/> (any depth), relative to it.</summary>
        public List<string> RegularFilesUnder(string dir)
        {
            var prefix = dir + "/";
            var names = new List<string>();
            foreach (var p in _files.Keys)
            {
                if (p.StartsWith(prefix, StringComparison.Ordinal))
                    names.Add(p[prefix.Length..]);
            }
            return names;
        }
    }
}
