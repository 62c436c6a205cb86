using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IommuKit.Paging;

/// <summary>
/// The free IOVA space as an AVL tree of disjoint, non-adjacent free blocks [Lo, Hi] (inclusive pfns) keyed by Lo,
/// augmented so that "the highest block below a limit where an aligned run of s pages fits" is found in O(log n)
/// worst case. Not thread-safe: <see cref="IovaAllocator"/> calls it under its tree lock.
/// </summary>
/// <remarks>
/// <para>Why the augmentation is exact: for a block [lo, hi] and an alignment 2^k, an aligned run of s pages fits iff
/// the first aligned position fits, i.e. iff f_k = hi + 1 - alignUp(lo, 2^k) &gt;= s. Each node stores, for k = 0..31, the maximum f_k over
/// the blocks of its subtree (<c>aug</c>), 32 saturating uints (4 x Vector256). So a
/// subtree whose aug[k] &lt; s holds no fitting block, and one whose aug[k] &gt;= s surely holds one: the greedy descent
/// never backtracks. The kernel's rbtree (iova.c <c>__alloc_and_insert_iova_range</c>) walks gaps one by one instead,
/// which is linear in the number of allocations in the worst case.</para>
/// <para>Memory: nodes are free blocks, not allocations (a dense run of allocations costs nothing); each node is
/// 32 B of fields + 128 B of subtree maxima (a node's own f_k are recomputed with vector arithmetic when needed,
/// cheaper than reading them back from memory). Nodes live in arrays and are recycled, so steady state allocates
/// nothing.</para>
/// </remarks>
internal sealed class IovaFreeTree
{
    public const int Classes = 32;
    private const int Nil = 0;

    /// <summary>Node fields a search touches, together in 32 bytes (one cache line holds two nodes).</summary>
    private struct Node
    {
        public ulong Lo, Hi;
        public int Left, Right, Height;
    }

    private Node[] _n = new Node[64];
    private uint[] _aug = new uint[64 * Classes];
    private int _root = Nil;
    private int _nextUnused = 1; // node 0 is Nil: height 0, aug all zero
    private int _freeList = Nil; // recycled nodes chained through _left
    private readonly int[] _stack = new int[128]; // AVL height <= 1.44 log2(n) + 2 < 128
    private int _count;

    public int Count => _count;

    public ulong Lo(int n) => _n[n].Lo;
    public ulong Hi(int n) => _n[n].Hi;

    private int NewNode(ulong lo, ulong hi)
    {
        int n;
        if (_freeList != Nil)
        {
            n = _freeList;
            _freeList = _n[n].Left;
        }
        else
        {
            if (_nextUnused == _n.Length) Grow();
            n = _nextUnused++;
        }
        _n[n].Left = _n[n].Right = Nil;
        _n[n].Height = 1;
        _n[n].Lo = lo;
        _n[n].Hi = hi;
        _count++;
        return n;
    }

    private void FreeNode(int n)
    {
        _n[n].Left = _freeList;
        _freeList = n;
        _count--;
    }

    private void Grow()
    {
        int len = _n.Length * 2;
        Array.Resize(ref _n, len);
        Array.Resize(ref _aug, len * Classes);
    }

    /// <summary>(2^k - 1) for k = 0..31, four classes per vector.</summary>
    private static readonly Vector256<ulong>[] s_alignMasks = BuildMasks();

    private static Vector256<ulong>[] BuildMasks()
    {
        var m = new Vector256<ulong>[Classes / 4];
        for (int i = 0; i < m.Length; i++)
            m[i] = Vector256.Create((1UL << (4 * i)) - 1, (1UL << (4 * i + 1)) - 1, (1UL << (4 * i + 2)) - 1, (1UL << (4 * i + 3)) - 1);
        return m;
    }

    /// <summary>f_k of the block [lo, hi] for one alignment class: hi + 1 - alignUp(lo, 2^k), or 0 when no aligned
    /// page fits (saturating at uint.MaxValue).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong FitOf(ulong lo, ulong hi, int k)
    {
        ulong m = (1UL << k) - 1;
        ulong a = (lo + m) & ~m; // lo < 2^63 and m < 2^31: no overflow
        ulong hi1 = hi + 1;      // hi < 2^63: no overflow
        return a >= hi1 ? 0 : hi1 - a;
    }

    /// <summary>f_k of the block [lo, hi] for classes 8j..8j+7, saturated to uint (computed, not stored: it costs
    /// fewer cycles than the cache misses of reading it back).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> SelfFits(ulong lo, ulong hi, int j)
    {
        var vlo = Vector256.Create(lo);
        var hi1 = Vector256.Create(hi + 1);
        var sat = Vector256.Create((ulong)uint.MaxValue);
        var m0 = s_alignMasks[2 * j];
        var m1 = s_alignMasks[2 * j + 1];
        var a0 = Vector256.AndNot(vlo + m0, m0);
        var a1 = Vector256.AndNot(vlo + m1, m1);
        var f0 = Vector256.AndNot(hi1 - a0, Vector256.GreaterThanOrEqual(a0, hi1));
        var f1 = Vector256.AndNot(hi1 - a1, Vector256.GreaterThanOrEqual(a1, hi1));
        return Vector256.Narrow(Vector256.Min(f0, sat), Vector256.Min(f1, sat));
    }

    /// <summary>Recomputes height and augmentation of <paramref name="n"/> from its children; true if either changed
    /// (when nothing changed, nothing above changes either, so updates stop climbing).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Pull(int n)
    {
        ref Node node = ref _n[n];
        int hl = _n[node.Left].Height, hr = _n[node.Right].Height;
        int h = 1 + (hl > hr ? hl : hr);
        bool changed = h != node.Height;
        node.Height = h;
        ref uint al = ref _aug[node.Left * Classes];
        ref uint ar = ref _aug[node.Right * Classes];
        ref uint an = ref _aug[n * Classes];
        var diff = Vector256<uint>.Zero;
        for (int j = 0; j < Classes / 8; j++)
        {
            nuint o = (nuint)(j * 8);
            var v = Vector256.Max(SelfFits(node.Lo, node.Hi, j),
                Vector256.Max(Vector256.LoadUnsafe(ref al, o), Vector256.LoadUnsafe(ref ar, o)));
            diff |= v ^ Vector256.LoadUnsafe(ref an, o);
            v.StoreUnsafe(ref an, o);
        }
        return changed || diff != Vector256<uint>.Zero;
    }

    private int RotateRight(int n)
    {
        int l = _n[n].Left;
        _n[n].Left = _n[l].Right;
        _n[l].Right = n;
        Pull(n);
        Pull(l);
        return l;
    }

    private int RotateLeft(int n)
    {
        int r = _n[n].Right;
        _n[n].Right = _n[r].Left;
        _n[r].Left = n;
        Pull(n);
        Pull(r);
        return r;
    }

    /// <summary>Set by <see cref="Balance"/>/<see cref="InsertAt"/>/<see cref="DeleteAt"/>: whether the subtree just
    /// returned changed shape, height or augmentation (if not, its ancestors need no update).</summary>
    private bool _changed;

    private int Balance(int n)
    {
        _changed = Pull(n);
        int bf = _n[_n[n].Left].Height - _n[_n[n].Right].Height;
        if (bf > 1)
        {
            int l = _n[n].Left;
            if (_n[_n[l].Left].Height < _n[_n[l].Right].Height) _n[n].Left = RotateLeft(l);
            _changed = true;
            return RotateRight(n);
        }
        if (bf < -1)
        {
            int r = _n[n].Right;
            if (_n[_n[r].Right].Height < _n[_n[r].Left].Height) _n[n].Right = RotateRight(r);
            _changed = true;
            return RotateLeft(n);
        }
        return n;
    }

    /// <summary>Adds the free block [lo, hi]; the caller guarantees it is disjoint from and not adjacent to others.</summary>
    public void Insert(ulong lo, ulong hi)
    {
        Debug.Assert(lo <= hi);
        int node = NewNode(lo, hi);
        _root = InsertAt(_root, node);
    }

    private int InsertAt(int n, int node)
    {
        if (n == Nil)
        {
            Pull(node);
            _changed = true;
            return node;
        }
        if (_n[node].Lo < _n[n].Lo) _n[n].Left = InsertAt(_n[n].Left, node);
        else _n[n].Right = InsertAt(_n[n].Right, node);
        return _changed ? Balance(n) : n;
    }

    /// <summary>Removes the block whose Lo is <paramref name="lo"/> (it must exist).</summary>
    public void Delete(ulong lo) => _root = DeleteAt(_root, lo);

    private int DeleteAt(int n, ulong key)
    {
        Debug.Assert(n != Nil, "deleting a block that is not in the tree");
        if (key < _n[n].Lo) _n[n].Left = DeleteAt(_n[n].Left, key);
        else if (key > _n[n].Lo) _n[n].Right = DeleteAt(_n[n].Right, key);
        else
        {
            int l = _n[n].Left, r = _n[n].Right;
            FreeNode(n);
            _changed = true;
            if (l == Nil) return r;
            if (r == Nil) return l;
            r = RemoveMin(r, out int m);
            _n[m].Left = l;
            _n[m].Right = r;
            int root = Balance(m);
            _changed = true; // the subtree root is another node now: Pull(m) compared against m's old values only
            return root;
        }
        return _changed ? Balance(n) : n;
    }

    private int RemoveMin(int n, out int min)
    {
        if (_n[n].Left == Nil)
        {
            min = n;
            return _n[n].Right;
        }
        _n[n].Left = RemoveMin(_n[n].Left, out min);
        return Balance(n);
    }

    /// <summary>
    /// Changes the bounds of the block keyed <paramref name="key"/> to [newLo, newHi] in place; the caller guarantees
    /// the order of blocks is unchanged (the block only shrinks, or grows into free space next to it).
    /// </summary>
    public void Update(ulong key, ulong newLo, ulong newHi)
    {
        int depth = 0, n = _root;
        while (true)
        {
            Debug.Assert(n != Nil, "updating a block that is not in the tree");
            _stack[depth++] = n;
            if (key < _n[n].Lo) n = _n[n].Left;
            else if (key > _n[n].Lo) n = _n[n].Right;
            else break;
        }
        _n[n].Lo = newLo;
        _n[n].Hi = newHi;
        // Climb only while something changes: most updates shrink a block that is not any ancestor's maximum.
        while (depth > 0 && Pull(_stack[--depth])) { }
    }

    /// <summary>The block with the largest Lo &lt;= <paramref name="pfn"/>, or Nil (0).</summary>
    public int Floor(ulong pfn)
    {
        int n = _root, best = Nil;
        while (n != Nil)
        {
            if (_n[n].Lo <= pfn) { best = n; n = _n[n].Right; }
            else n = _n[n].Left;
        }
        return best;
    }

    /// <summary>Both neighbours of <paramref name="pfn"/> in one descent: the block with the largest Lo &lt;= pfn
    /// (<paramref name="floor"/>) and the one with the smallest Lo &gt; pfn (<paramref name="above"/>); Nil when absent.</summary>
    public void Neighbours(ulong pfn, out int floor, out int above)
    {
        int n = _root;
        floor = above = Nil;
        while (n != Nil)
        {
            if (_n[n].Lo <= pfn) { floor = n; n = _n[n].Right; }
            else { above = n; n = _n[n].Left; }
        }
    }

    /// <summary>The block with the smallest Lo &gt; <paramref name="pfn"/>, or Nil (0).</summary>
    public int Above(ulong pfn)
    {
        int n = _root, best = Nil;
        while (n != Nil)
        {
            if (_n[n].Lo > pfn) { best = n; n = _n[n].Left; }
            else n = _n[n].Right;
        }
        return best;
    }

    /// <summary>
    /// Top-down search: the highest pfn x, aligned to 2^<paramref name="k"/>, with [x, x+size-1] inside one free
    /// block and x+size-1 &lt;= <paramref name="limit"/>. Returns the block (Nil when nothing fits) and x.
    /// O(log n): one walk down the limit's search path, then at most one greedy descent.
    /// </summary>
    public int FindHighest(ulong size, int k, ulong limit, out ulong pfn)
    {
        Debug.Assert(size <= uint.MaxValue && k < Classes);
        pfn = 0;
        ulong align = 1UL << k;
        int depth = 0, n = _root;
        while (n != Nil)
        {
            if (_n[n].Lo > limit) n = _n[n].Left;
            else { _stack[depth++] = n; n = _n[n].Right; }
        }
        // Path nodes, deepest first, are in descending order of Lo; each one's left subtree lies between it and the
        // previous path node, entirely below the limit.
        while (depth > 0)
        {
            n = _stack[--depth];
            if (TryFit(_n[n].Lo, Math.Min(_n[n].Hi, limit), size, align, out pfn)) return n;
            int l = _n[n].Left;
            if (_aug[l * Classes + k] >= size)
            {
                n = l;
                while (true)
                {
                    int r = _n[n].Right;
                    if (_aug[r * Classes + k] >= size) { n = r; continue; }
                    if (FitOf(_n[n].Lo, _n[n].Hi, k) >= size) break;
                    n = _n[n].Left;
                    if (n == Nil) throw new InvalidOperationException("IOVA tree augmentation is stale (bug)");
                }
                bool ok = TryFit(_n[n].Lo, _n[n].Hi, size, align, out pfn);
                Debug.Assert(ok);
                return n;
            }
        }
        return Nil;
    }

    /// <summary>Highest aligned start of <paramref name="size"/> pages inside [lo, hi] (the kernel picks
    /// <c>(high_pfn - size) &amp; align_mask</c>, the top of the gap).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryFit(ulong lo, ulong hi, ulong size, ulong align, out ulong pfn)
    {
        pfn = 0;
        if (hi < lo || hi - lo + 1 < size) return false;
        ulong x = (hi + 1 - size) & ~(align - 1);
        if (x < lo) return false;
        pfn = x;
        return true;
    }

    /// <summary>Visits every free block in ascending order (tests, invariant checks, diagnostics).</summary>
    public void ForEach(Action<ulong, ulong> visit) => Walk(_root, visit);

    private void Walk(int n, Action<ulong, ulong> visit)
    {
        if (n == Nil) return;
        Walk(_n[n].Left, visit);
        visit(_n[n].Lo, _n[n].Hi);
        Walk(_n[n].Right, visit);
    }

    /// <summary>Checks AVL balance, ordering, disjointness and the augmentation; throws on a broken invariant.</summary>
    public void Validate()
    {
        ulong prevHi = 0;
        bool first = true;
        Check(_root, ref prevHi, ref first);
    }

    private int Check(int n, ref ulong prevHi, ref bool first)
    {
        if (n == Nil) return 0;
        int hl = Check(_n[n].Left, ref prevHi, ref first);
        if (!first && _n[n].Lo <= prevHi + 1) throw new InvalidOperationException($"free blocks overlap or touch at pfn 0x{_n[n].Lo:x}");
        if (_n[n].Hi < _n[n].Lo) throw new InvalidOperationException("inverted free block");
        first = false;
        prevHi = _n[n].Hi;
        int hr = Check(_n[n].Right, ref prevHi, ref first);
        if (Math.Abs(hl - hr) > 1 || _n[n].Height != 1 + Math.Max(hl, hr)) throw new InvalidOperationException("AVL balance broken");
        for (int k = 0; k < Classes; k++)
        {
            uint self = (uint)Math.Min(FitOf(_n[n].Lo, _n[n].Hi, k), uint.MaxValue);
            uint want = Math.Max(self, Math.Max(_aug[_n[n].Left * Classes + k], _aug[_n[n].Right * Classes + k]));
            if (_aug[n * Classes + k] != want) throw new InvalidOperationException("augmentation stale");
        }
        return _n[n].Height;
    }
}
