using System.Runtime.CompilerServices;

namespace IommuKit.Paging;

/// <summary>
/// A minimal test-and-test-and-set spin lock for critical sections of a few nanoseconds (the kernel's spinlock_t in
/// the places this models: a page-table page's lock, a per-CPU rcache's <c>cpu_rcache-&gt;lock</c>, a flush queue's
/// <c>fq-&gt;lock</c>). A struct: embed it as a field of the object it guards and never copy it.
/// </summary>
/// <remarks>Contended waiters spin, then yield, but never sleep (<c>sleep1Threshold: -1</c>): a 1 ms sleep would dwarf
/// the section it waits for.</remarks>
internal struct SpinGate
{
    private int _state;

    /// <summary>True while some thread holds the lock (for <c>Debug.Assert</c> in <c>...Locked</c> helpers).</summary>
    public readonly bool IsHeld => Volatile.Read(ref Unsafe.AsRef(in _state)) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            EnterContended();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit() => Volatile.Write(ref _state, 0);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended()
    {
        var spin = new SpinWait();
        do spin.SpinOnce(sleep1Threshold: -1);
        while (Volatile.Read(ref _state) != 0 || Interlocked.CompareExchange(ref _state, 1, 0) != 0);
    }
}
