using IommuKit.Core;
using IommuKit.Dma;
using IommuKit.Grouping;
using IommuKit.Sources;
using System.Reflection;
using Xunit;

namespace IommuKit.Tests;

/// <summary>Issue 13: readers, file trees and quirk tables are implementation, not API (tests see them through
/// InternalsVisibleTo); what the docs' examples use stays public.</summary>
public class PublicSurfaceTests
{
    [Theory]
    [InlineData(typeof(FileTree))]
    [InlineData(typeof(DirectoryFileTree))]
    [InlineData(typeof(TarFileTree))]
    [InlineData(typeof(FileNodeKind))]
    [InlineData(typeof(SysfsReader))]
    [InlineData(typeof(HostUseReader))]
    [InlineData(typeof(IommuKit.Sources.Lspci.LspciReader))]
    [InlineData(typeof(IommuKit.Sources.Acpi.AcpiTableReader))]
    [InlineData(typeof(RegularFile))]
    [InlineData(typeof(AcsQuirks))]
    [InlineData(typeof(AcsQuirkEntry))]
    [InlineData(typeof(DmaAliasQuirks))]
    [InlineData(typeof(DmaAliasInfo))]
    public void ReadersFileTreesAndQuirkTablesAreInternal(Type type) => Assert.False(type.IsVisible, $"{type} is public");

    [Fact]
    public void QuirkLookupsAreInternalToo()
    {
        const BindingFlags Any = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance;
        Assert.False(typeof(PciGrouping).GetMethod(nameof(PciGrouping.QuirkAcsEnabled), Any)!.IsPublic);
        Assert.False(typeof(GroupingContext).GetMethod(nameof(GroupingContext.AliasInfo), Any)!.IsPublic);
    }

    [Theory]
    [InlineData(typeof(MachineSource))]
    [InlineData(typeof(MachineJson))]
    [InlineData(typeof(SnapshotWriter))]
    [InlineData(typeof(FileReadException))]
    [InlineData(typeof(IommuCore))]
    [InlineData(typeof(DeviceDma))]
    [InlineData(typeof(DmaApi))]
    [InlineData(typeof(AcsQuirkHook))] // named in AcsDecision.Hook, a public result
    public void TheEntryPointsTheDocsUseStayPublic(Type type) => Assert.True(type.IsVisible, $"{type} is not public");

    [Fact]
    public void TheDmaControlPathReturnsIommuResult()
    {
        foreach (var t in new[] { typeof(DmaApi), typeof(DeviceDma) })
        {
            foreach (var name in new[] { "MapSingle", "UnmapSingle", "AllocCoherent" })
                Assert.Equal(typeof(IommuResult), t.GetMethod(name)!.ReturnType);
        }
        foreach (var name in new[] { "MapSg", "UnmapSg", "FreeCoherent" })
            Assert.Equal(typeof(IommuResult), typeof(DmaApi).GetMethod(name)!.ReturnType);
    }
}
