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
/// the first aligned position fits, i.e. iff f_k = hi + 1 - alignUp(lo, 2^k) &gt;= s. Each node stores f_k of its own
/// block for k = 0..31 and the maximum over its subtree (<c>aug</c>), as 32 saturating uints (4 x Vector256). So a
/// subtree whose aug[k] &lt; s holds no fitting block, and one whose aug[k] &gt;= s surely holds one: the greedy descent
/// never backtracks. The kernel's rbtree (iova.c <c>__alloc_and_insert_iova_range</c>) walks gaps one by one instead,
/// which is linear in the number of allocations in the worst case.</para>
/// <para>Memory: nodes are free blocks, not allocations (a dense run of allocations costs nothing); each node is
/// 2 x 128 B of augmentation + 40 B. Nodes live in arrays and are recycled, so steady state allocates nothing.</para>
/// </remarks>
internal sealed class IovaFreeTree
{
    public const int Classes = 32;
    private const int Nil = 0;

    private int[] _left = new int[64];
    private int[] _right = new int[64];
    private int[] _height = new int[64];
    private ulong[] _lo = new ulong[64];
    private ulong[] _hi = new ulong[64];
    private uint[] _self = new uint[64 * Classes];
    private uint[] _aug = new uint[64 * Classes];
    private int _root = Nil;
    private int _nextUnused = 1; // node 0 is Nil: height 0, aug all zero
    private int _freeList = Nil; // recycled nodes chained through _left
    private readonly int[] _stack = new int[128]; // AVL height <= 1.44 log2(n) + 2 < 128
    private int _count;

    public int Count => _count;

    public ulong Lo(int n) => _lo[n];
    public ulong Hi(int n) => _hi[n];

    private int NewNode(ulong lo, ulong hi)
    {
        int n;
        if (_freeList != Nil)
        {
            n = _freeList;
            _freeList = _left[n];
        }
        else
        {
            if (_nextUnused == _lo.Length) Grow();
            n = _nextUnused++;
        }
        _left[n] = _right[n] = Nil;
        _height[n] = 1;
        _lo[n] = lo;
        _hi[n] = hi;
        ComputeSelf(n);
        _count++;
        return n;
    }

    private void FreeNode(int n)
    {
        _left[n] = _freeList;
        _freeList = n;
        _count--;
    }

    private void Grow()
    {
        int len = _lo.Length * 2;
        Array.Resize(ref _left, len);
        Array.Resize(ref _right, len);
        Array.Resize(ref _height, len);
        Array.Resize(ref _lo, len);
        Array.Resize(ref _hi, len);
        Array.Resize(ref _self, len * Classes);
        Array.Resize(ref _aug, len * Classes);
    }

    private void ComputeSelf(int n)
    {
        ulong lo = _lo[n], hi1 = _hi[n] + 1; // hi < 2^63: no overflow
        var self = _self.AsSpan(n * Classes, Classes);
        for (int k = 0; k < Classes; k++)
        {
            ulong m = (1UL << k) - 1;
            ulong a = (lo + m) & ~m; // lo < 2^63 and m < 2^31: no overflow
            ulong f = a >= hi1 ? 0 : hi1 - a;
            self[k] = f > uint.MaxValue ? uint.MaxValue : (uint)f;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Pull(int n)
    {
        int l = _left[n], r = _right[n];
        int hl = _height[l], hr = _height[r];
        _height[n] = 1 + (hl > hr ? hl : hr);
        ref uint self = ref _self[n * Classes];
        ref uint al = ref _aug[l * Classes];
        ref uint ar = ref _aug[r * Classes];
        ref uint an = ref _aug[n * Classes];
        for (nuint j = 0; j < Classes; j += 8)
        {
            var v = Vector256.Max(Vector256.LoadUnsafe(ref self, j),
                Vector256.Max(Vector256.LoadUnsafe(ref al, j), Vector256.LoadUnsafe(ref ar, j)));
            v.StoreUnsafe(ref an, j);
        }
    }

    private int RotateRight(int n)
    {
        int l = _left[n];
        _left[n] = _right[l];
        _right[l] = n;
        Pull(n);
        Pull(l);
        return l;
    }

    private int RotateLeft(int n)
    {
        int r = _right[n];
        _right[n] = _left[r];
        _left[r] = n;
        Pull(n);
        Pull(r);
        return r;
    }

    private int Balance(int n)
    {
        Pull(n);
        int bf = _height[_left[n]] - _height[_right[n]];
        if (bf > 1)
        {
            int l = _left[n];
            if (_height[_left[l]] < _height[_right[l]]) _left[n] = RotateLeft(l);
            return RotateRight(n);
        }
        if (bf < -1)
        {
            int r = _right[n];
            if (_height[_right[r]] < _height[_left[r]]) _right[n] = RotateRight(r);
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
            return node;
        }
        if (_lo[node] < _lo[n]) _left[n] = InsertAt(_left[n], node);
        else _right[n] = InsertAt(_right[n], node);
        return Balance(n);
    }

    /// <summary>Removes the block whose Lo is <paramref name="lo"/> (it must exist).</summary>
    public void Delete(ulong lo) => _root = DeleteAt(_root, lo);

    private int DeleteAt(int n, ulong key)
    {
        Debug.Assert(n != Nil, "deleting a block that is not in the tree");
        if (key < _lo[n]) _left[n] = DeleteAt(_left[n], key);
        else if (key > _lo[n]) _right[n] = DeleteAt(_right[n], key);
        else
        {
            int l = _left[n], r = _right[n];
            FreeNode(n);
            if (l == Nil) return r;
            if (r == Nil) return l;
            r = RemoveMin(r, out int m);
            _left[m] = l;
            _right[m] = r;
            n = m;
        }
        return Balance(n);
    }

    private int RemoveMin(int n, out int min)
    {
        if (_left[n] == Nil)
        {
            min = n;
            return _right[n];
        }
        _left[n] = RemoveMin(_left[n], out min);
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
            if (key < _lo[n]) n = _left[n];
            else if (key > _lo[n]) n = _right[n];
            else break;
        }
        _lo[n] = newLo;
        _hi[n] = newHi;
        ComputeSelf(n);
        while (depth > 0) Pull(_stack[--depth]);
    }

    /// <summary>The block with the largest Lo &lt;= <paramref name="pfn"/>, or Nil (0).</summary>
    public int Floor(ulong pfn)
    {
        int n = _root, best = Nil;
        while (n != Nil)
        {
            if (_lo[n] <= pfn) { best = n; n = _right[n]; }
            else n = _left[n];
        }
        return best;
    }

    /// <summary>The block with the smallest Lo &gt; <paramref name="pfn"/>, or Nil (0).</summary>
    public int Above(ulong pfn)
    {
        int n = _root, best = Nil;
        while (n != Nil)
        {
            if (_lo[n] > pfn) { best = n; n = _left[n]; }
            else n = _right[n];
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
            if (_lo[n] > limit) n = _left[n];
            else { _stack[depth++] = n; n = _right[n]; }
        }
        // Path nodes, deepest first, are in descending order of Lo; each one's left subtree lies between it and the
        // previous path node, entirely below the limit.
        while (depth > 0)
        {
            n = _stack[--depth];
            if (TryFit(_lo[n], Math.Min(_hi[n], limit), size, align, out pfn)) return n;
            int l = _left[n];
            if (_aug[l * Classes + k] >= size)
            {
                n = l;
                while (true)
                {
                    int r = _right[n];
                    if (_aug[r * Classes + k] >= size) { n = r; continue; }
                    if (_self[n * Classes + k] >= size) break;
                    n = _left[n];
                    Debug.Assert(n != Nil && _aug[n * Classes + k] >= size, "augmentation promised a fit");
                }
                bool ok = TryFit(_lo[n], _hi[n], size, align, out pfn);
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
        Walk(_left[n], visit);
        visit(_lo[n], _hi[n]);
        Walk(_right[n], visit);
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
        int hl = Check(_left[n], ref prevHi, ref first);
        if (!first && _lo[n] <= prevHi + 1) throw new InvalidOperationException($"free blocks overlap or touch at pfn 0x{_lo[n]:x}");
        if (_hi[n] < _lo[n]) throw new InvalidOperationException("inverted free block");
        first = false;
        prevHi = _hi[n];
        int hr = Check(_right[n], ref prevHi, ref first);
        if (Math.Abs(hl - hr) > 1 || _height[n] != 1 + Math.Max(hl, hr)) throw new InvalidOperationException("AVL balance broken");
        for (int k = 0; k < Classes; k++)
        {
            uint want = Math.Max(_self[n * Classes + k], Math.Max(_aug[_left[n] * Classes + k], _aug[_right[n] * Classes + k]));
            if (_aug[n * Classes + k] != want) throw new InvalidOperationException("augmentation stale");
        }
        return _height[n];
    }
}
