namespace IommuKit.Host.Picture;

/// <summary>A rectangle in picture units (CSS pixels): left, top, width, height.</summary>
public readonly record struct Box(double X, double Y, double Width, double Height)
{
    /// <summary>The right edge (exclusive).</summary>
    public double Right => X + Width;
    /// <summary>The bottom edge (exclusive).</summary>
    public double Bottom => Y + Height;

    /// <summary>The two rectangles share interior area (touching edges do not count).</summary>
    public bool Overlaps(Box other) => X < other.Right && other.X < Right && Y < other.Bottom && other.Y < Bottom;

    /// <summary>This rectangle grown by <paramref name="by"/> on every side.</summary>
    public Box Inflate(double by) => new(X - by, Y - by, Width + 2 * by, Height + 2 * by);
}

/// <summary>
/// A tidy left-to-right tree layout: depth is the column, every column as wide as its widest box, siblings stacked in
/// order and a parent centred on its children where its column allows. Deterministic, and no two boxes overlap: each
/// column keeps a contour (the lowest bottom placed so far) and nothing is placed above it, and a subtree never starts
/// above its parent's column contour, so the edges of one subtree stay below those of the subtrees before it.
/// </summary>
public static class TreeLayout
{
    /// <summary>Horizontal gap between columns (room for the edges), in pixels.</summary>
    public const double ColumnGap = 48;
    /// <summary>Vertical gap between two boxes of one column: more than twice the group regions' padding, so regions never overlap.</summary>
    public const double RowGap = 14;
    /// <summary>Margin around the whole picture.</summary>
    public const double Margin = 16;
    /// <summary>Depth cap: a PCI hierarchy has at most 256 buses, so no deeper tree is real input.</summary>
    public const int MaxDepth = 256;

    /// <summary>One box to place: its size in, its position out (<see cref="Arrange"/> sets <see cref="Box"/>).</summary>
    public sealed class Node(double width, double height)
    {
        /// <summary>Width of the box, in pixels.</summary>
        public double Width { get; } = width;
        /// <summary>Height of the box, in pixels.</summary>
        public double Height { get; } = height;
        /// <summary>The nodes drawn to its right, in order from top to bottom.</summary>
        public List<Node> Children { get; } = [];
        /// <summary>Its column (0 for a root), set by <see cref="Arrange"/>.</summary>
        public int Depth { get; internal set; }
        /// <summary>Where it was placed, set by <see cref="Arrange"/>.</summary>
        public Box Box { get; internal set; }
    }

    /// <summary>Places every node of the forest <paramref name="roots"/> (in order); returns the picture's width and height.</summary>
    /// <exception cref="ArgumentException">The forest is deeper than <see cref="MaxDepth"/>.</exception>
    public static (double Width, double Height) Arrange(IReadOnlyList<Node> roots)
    {
        ArgumentNullException.ThrowIfNull(roots);
        var columnWidth = new List<double>();
        var stack = new Stack<(Node Node, int Depth)>();
        foreach (var r in roots) stack.Push((r, 0));
        while (stack.Count > 0)
        {
            var (n, d) = stack.Pop();
            if (d >= MaxDepth) throw new ArgumentException($"the tree is deeper than {MaxDepth} levels", nameof(roots));
            n.Depth = d;
            while (columnWidth.Count <= d) columnWidth.Add(0);
            columnWidth[d] = Math.Max(columnWidth[d], n.Width);
            foreach (var c in n.Children) stack.Push((c, d + 1));
        }
        var columnX = new double[columnWidth.Count];
        double x = Margin;
        for (int i = 0; i < columnWidth.Count; i++) { columnX[i] = x; x += columnWidth[i] + ColumnGap; }
        var contour = new double[columnWidth.Count];
        Array.Fill(contour, Margin);
        foreach (var r in roots) Place(r, Margin, columnX, contour);
        double height = Margin;
        foreach (var c in contour) height = Math.Max(height, c);
        return (columnWidth.Count == 0 ? 2 * Margin : x - ColumnGap + Margin, height - RowGap + Margin);
    }

    /// <summary>Places <paramref name="n"/>'s subtree no higher than <paramref name="floor"/> and the column contours.</summary>
    private static void Place(Node n, double floor, double[] columnX, double[] contour)
    {
        int d = n.Depth;
        floor = Math.Max(floor, contour[d]);
        double y;
        if (n.Children.Count == 0) y = floor;
        else
        {
            foreach (var c in n.Children) Place(c, floor, columnX, contour);
            double top = n.Children[0].Box.Y, bottom = n.Children[^1].Box.Bottom;
            y = Math.Max(floor, (top + bottom - n.Height) / 2);
        }
        n.Box = new Box(columnX[d], y, n.Width, n.Height);
        contour[d] = y + n.Height + RowGap;
    }
}
