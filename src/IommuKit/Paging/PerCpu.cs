using System.Numerics;
using System.Runtime.CompilerServices;

namespace IommuKit.Paging;

/// <summary>
/// How per-CPU structures (the IOVA rcaches, the flush-queue rings) pick "this CPU's" slot: one slot per CPU, the count
/// rounded up to a power of two so <see cref="Thread.GetCurrentProcessorId"/> selects a slot with a mask instead of a
/// division. A thread may migrate right after reading its CPU id, so every slot still needs its own lock (as the
/// kernel's per-CPU <c>cpu_rcache-&gt;lock</c> and <c>fq-&gt;lock</c> do, for the same reason).
/// </summary>
internal static class PerCpu
{
    /// <summary>Slots for <paramref name="requested"/> CPUs (0 = <see cref="Environment.ProcessorCount"/>), rounded up
    /// to a power of two.</summary>
    public static int SlotCount(int requested = 0) =>
        (int)BitOperations.RoundUpToPowerOf2((uint)(requested == 0 ? Environment.ProcessorCount : requested));

    /// <summary>This CPU's slot among <paramref name="slotMask"/> + 1 slots.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Current(int slotMask) => slotMask == 0 ? 0 : Thread.GetCurrentProcessorId() & slotMask;
}
