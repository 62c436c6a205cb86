using System.Numerics;
using System.Runtime.CompilerServices;

namespace IommuKit.Paging;

/// <summary>
/// How per-CPU structures (the IOVA rcaches, the flush-queue rings) pick "this CPU's" slot: one slot per CPU, the count
/// rounded up to a power of two so the CPU id selects a slot with a mask instead of a division. A thread may migrate
/// right after reading its CPU id, so every slot still needs its own lock (as the kernel's per-CPU
/// <c>cpu_rcache-&gt;lock</c> and <c>fq-&gt;lock</c> do, for the same reason).
/// </summary>
/// <remarks>The CPU id is cached per thread and re-read from the OS every <see cref="RefreshEvery"/> uses.
/// <see cref="Thread.GetCurrentProcessorId"/> is a native call on Linux (<c>sched_getcpu</c>, ~3-4 ns here), paid twice
/// per DMA map+unmap (the rcache on alloc, the rcache or flush-queue ring on unmap); the cached read is a thread-static
/// load. A stale id only means a thread uses another CPU's slot for a few calls, which the slot locks already allow
/// (the kernel's own caches see the same after a preemption between <c>get_cpu_ptr</c> and the lock).</remarks>
internal static class PerCpu
{
    /// <summary>Uses of the cached CPU id between two reads of the real one.</summary>
    public const int RefreshEvery = 64;

    [ThreadStatic] private static int t_cpu;
    [ThreadStatic] private static int t_uses; // counts down; 0 = read the CPU id again

    /// <summary>Slots for <paramref name="requested"/> CPUs (0 = <see cref="Environment.ProcessorCount"/>), rounded up
    /// to a power of two.</summary>
    public static int SlotCount(int requested = 0) =>
        (int)BitOperations.RoundUpToPowerOf2((uint)(requested == 0 ? Environment.ProcessorCount : requested));

    /// <summary>This CPU's slot among <paramref name="slotMask"/> + 1 slots.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Current(int slotMask) => slotMask == 0 ? 0 : CurrentCpu() & slotMask;

    /// <summary>The CPU this thread ran on at most <see cref="RefreshEvery"/> calls ago.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int CurrentCpu()
    {
        int left = t_uses - 1;
        if (left < 0) return RefreshCpu();
        t_uses = left;
        return t_cpu;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int RefreshCpu()
    {
        int cpu = Thread.GetCurrentProcessorId();
        t_cpu = cpu;
        t_uses = RefreshEvery - 1;
        return cpu;
    }
}
