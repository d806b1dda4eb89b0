"""Host-side geometry shared by the NumPy and JAX renderers: from Box/Line values to small
integer descriptions of what to paint, following the reference's arithmetic exactly.

Everything here is float64/Python-int work done once per primitive; the pixel loops live in
``render_numpy`` / ``render_jax`` and use only the integer rules documented here.

Clipping (``clip_box``, ``clip_line``; ``render`` applies them before any backend, and the
geometry below applies them again for direct callers of a backend)
    Every primitive is first cut to a bounded stand-in that paints the same pixels, so each
    backend -- Pillow included, whose rectangle loops over every row of a box -- draws any input
    in time bounded by the image, and no coordinate reaches a C ``int`` cast past 2**31.
    * A box coordinate whose truncated value lies more than m px outside the image is replaced
      by one m + 1 px outside, where m covers the 4-px outline and the label's reach from the
      corner (so a moved label anchor stays off the image as well). A box side beyond m is
      invisible either way, so the result is byte for byte Pillow's wherever Pillow's own C
      arithmetic is defined (|v| < 2**31); past that it is Pillow's with a saturating cast.
    * A line is cut, as a segment, to the image grown by LINE_FAR = 2**24 px (nothing changes
      for endpoints within that: Pillow's float32 edge arithmetic is only exact up to about that
      far). The cut is exact where the truncated segment has a lattice point between the cut
      and the image (the stand-in then lies on the same line, so its quad has the same long
      edges); otherwise the cut point is rounded to the nearest pixel, which moves the line
      inside the image by well under a pixel (Pillow itself is float32-approximate that far
      out). A line that misses the image grown by VISIBLE_MARGIN is dropped.

Boxes (reference: ``x = int(v / W * W)``, corners swapped, ``rectangle(outline, width=4)``)
    The coordinate is truncated toward zero exactly as the reference does (float64 division and
    multiplication first, so ``int(61 / 448 * 448) == 60``). With (x0, y0) <= (x1, y1), Pillow paints
    * band rows  y0..y0+3 and y1-3..y1, columns x0..x1;
    * bar rows   y0+4..y1-4 if y1-y0 >= 8, none if y1-y0 == 7, y1-2..y0+4 if y1-y0 < 7
      (its 1-px vertical lines run backwards on tiny boxes), columns x0..x0+3 and x1-3..x1.
    Pixels outside the image are dropped. To keep int32 arithmetic safe the outline is clamped
    to x in [-16, W+15] and y in [-16, H+15]; this changes no visible pixel (the 4-px outline of
    a clamped side is off-image either way). The label is drawn at (x0 + 8, y0 + 6) of the
    clipped (not the clamped) corner.

Lines (reference: ``xs = int(p) / W * W`` as float, ``line(width=4)``, dots of radius 4)
    Pillow casts the float endpoints to int (truncation) and fills a parallelogram whose four
    integer vertices we compute exactly as Pillow does (``hypot``, round-half-toward-zero of
    1/L and 2/L times dx, dy). A zero-length line is one pixel. The fill rule is ours (see
    ``quad_row_spans``); it matches Pillow except where Pillow's float32 edge arithmetic lands
    on the other side of a pixel half-way point.
    Guard: if an endpoint lies more than G = (23000 - 3 - max(H, W)) // 2 pixels outside the image
    (G >= 7402 for the largest accepted image, 8192 px; 11274 at 448 px), the segment is cut to
    the guard box [-G, W-1+G] x [-G, H-1+G] the same way as above (exact where a lattice point
    allows, else rounded: pixels inside the image move by at most about max(H, W)/G px). This
    bounds every intermediate of the fill rule to int32.
    Dots: ``ellipse([(x-4, y-4), (x+4, y+4)])`` with C truncation of each bound, filled with the
    row spans of Pillow's ellipse walk (``ellipse_halfwidths``); dots entirely off-image are skipped.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import NamedTuple, Sequence

import numpy as np

from drawing_ops.actions import Box, Line
from drawing_ops.colors import box_color
from drawing_ops.font import load_atlas

OUTLINE = 4  # rectangle(width=4)
BOX_CLAMP = 16  # margin beyond which a box side is invisible anyway
LABEL_OFFSET = (8, 6)  # draw.text((x1 + 8, y1 + 6), ...)
DOT_RADIUS = 4
DOT_ROWS = 12  # a dot's bounding box is 8 +- 1 px tall; room to spare
MAX_SIDE = 8192  # largest image side we accept (the line guard below stays >= 7000 px)
LINE_FAR = 1 << 24  # line endpoints farther outside the image than this are cut (see above)
VISIBLE_MARGIN = 16  # no ink reaches farther than this past a line's endpoints (half stroke 2, dot 4+1)
GUARD_SPAN = 23000  # bound on |coordinate| and |difference| in the line rule: 4 * 23000**2 < 2**31
LINE_INK = (0, 0, 0)
DOT_START_INK = (255, 0, 0)
DOT_END_INK = (0, 0, 255)


def check_image_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"image must be non-empty, got {height}x{width}")
    if max(height, width) > MAX_SIDE:
        raise ValueError(f"image side {max(height, width)} exceeds {MAX_SIDE}px; the integer line "
                         "rasteriser is only exact below that (resize the image first)")


def require_rgb(image) -> np.ndarray:
    """`image` as a non-empty uint8 (H, W, 3) ndarray (no copy); ValueError otherwise."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be a PIL image or a uint8 array of shape (H, W, 3); "
                         f"got {arr.dtype} array of shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image must be non-empty, got shape {arr.shape}")
    return arr


def drawable_rgb(image) -> np.ndarray:
    """`require_rgb`, plus the size limit of the integer NumPy/JAX rasterisers."""
    arr = require_rgb(image)
    check_image_size(arr.shape[0], arr.shape[1])
    return arr


def line_guard(height: int, width: int) -> int:
    """Margin G of the guard box [-G, W-1+G] x [-G, H-1+G] that line endpoints are clipped to:
    as large as int32 allows, so every vertex coordinate and difference stays <= GUARD_SPAN."""
    return (GUARD_SPAN - 3 - max(height, width)) // 2


def ref_trunc(v: float, size: int) -> int:
    """The reference's ``int(v / size * size)`` (float64, truncation toward zero)."""
    return int(v / size * size)


# ------------------------------------------------------------------------------------- clipping

def clip_primitives(boxes: Sequence[Box], lines: Sequence[Line], height: int,
                    width: int) -> tuple[list[Box], list[Line]]:
    """Bounded stand-ins for ``boxes`` and ``lines`` that paint the same pixels (see the module
    doc): every box is kept (its colour depends on its position), invisible lines are dropped."""
    clipped = (clip_line(line, height, width) for line in lines)
    return [clip_box(box, height, width) for box in boxes], [line for line in clipped if line is not None]


@functools.lru_cache(maxsize=4096)
def _label_margins(label: str) -> tuple[int, int]:
    """(x, y) distance past which a box corner's outline and label cannot reach into the image."""
    atlas = load_atlas()
    gh, gw = atlas.canvas_hw
    rows = label.split("\n")
    reach_x = LABEL_OFFSET[0] + abs(atlas.origin_x) + max(len(r) for r in rows) * atlas.max_advance_px + gw
    reach_y = LABEL_OFFSET[1] + abs(atlas.origin_y) + (len(rows) - 1) * atlas.line_spacing + gh
    return max(BOX_CLAMP, reach_x), max(BOX_CLAMP, reach_y)


def _clamp_far(v: float, size: int, margin: int):
    """``v`` itself, or a stand-in margin + 1 px outside the image if the reference's truncation
    of ``v`` lies farther out than ``margin`` (the stand-in's own truncation is at most 1 px
    nearer, so it stays out of reach too)."""
    t = ref_trunc(v, size)
    if t < -margin:
        return -(margin + 1)
    if t > size - 1 + margin:
        return size + margin
    return v


def clip_box(box: Box, height: int, width: int) -> Box:
    """``box`` with each coordinate beyond reach of the image replaced by a near stand-in."""
    b = box.bbox_2d
    if all(-BOX_CLAMP <= v <= size - 1 + BOX_CLAMP for v, size in zip(b, (width, height, width, height))):
        return box  # the common case: nothing to clip (margins are never below BOX_CLAMP)
    mx, my = _label_margins(box.label)
    new = (_clamp_far(b[0], width, mx), _clamp_far(b[1], height, my),
           _clamp_far(b[2], width, mx), _clamp_far(b[3], height, my))
    return box if new == b else Box(box.index, new, box.label)


def ref_line_end(v: float, size: int) -> int:
    """The pixel Pillow puts a line end at: C truncation of the reference's ``int(v) / size * size``
    (past 2**52 the float round trip is skipped: such a point is cut away anyway)."""
    iv = int(v)
    return iv if abs(iv) > 1 << 52 else int(iv / size * size)


def _segment_params(x0, y0, x1, y1, xmin, ymin, xmax, ymax):
    """Liang-Barsky in exact arithmetic (ints in, Fractions out): the parameters (t0, t1) of the
    part of the segment inside the box, or None if it misses the box."""
    t0, t1 = Fraction(0), Fraction(1)
    dx, dy = x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = Fraction(q, p)
        if p < 0:
            if t > t1:
                return None
            t0 = max(t0, t)
        else:
            if t < t0:
                return None
            t1 = min(t1, t)
    return t0, t1


def clip_segment(p0: tuple[int, int], p1: tuple[int, int], margin: int, height: int,
                 width: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The integer segment p0-p1 cut to the image grown by ``margin`` px, with integer ends.

    None if it misses the image grown by VISIBLE_MARGIN (nothing of it shows). A cut end is the
    segment's own lattice point nearest the cut if that still lies outside the visible margin
    (then the stand-in lies on the same line: exact), else the cut point rounded to a pixel.
    """
    lo_x, lo_y, hi_x, hi_y = -margin, -margin, width - 1 + margin, height - 1 + margin

    def inside(p):
        return lo_x <= p[0] <= hi_x and lo_y <= p[1] <= hi_y

    if inside(p0) and inside(p1):
        return p0, p1
    (x0, y0), (x1, y1) = p0, p1
    seen = _segment_params(x0, y0, x1, y1, -VISIBLE_MARGIN, -VISIBLE_MARGIN,
                           width - 1 + VISIBLE_MARGIN, height - 1 + VISIBLE_MARGIN)
    if seen is None:
        return None
    t_in, t_out = _segment_params(x0, y0, x1, y1, lo_x, lo_y, hi_x, hi_y)  # contains `seen`
    dx, dy = x1 - x0, y1 - y0
    g = math.gcd(dx, dy)  # > 0: an endpoint is outside, the segment reaches inside
    sx, sy = dx // g, dy // g

    def end(t, k, exact):  # k: the lattice point p0 + k (sx, sy) nearest the cut, inward
        if exact:
            return x0 + k * sx, y0 + k * sy
        return round(x0 + t * dx), round(y0 + t * dy)

    q0 = p0 if t_in == 0 else end(t_in, math.ceil(t_in * g), math.ceil(t_in * g) <= seen[0] * g)
    q1 = p1 if t_out == 1 else end(t_out, math.floor(t_out * g), math.floor(t_out * g) >= seen[1] * g)
    return q0, q1


def _line_stand_in(q: int, size: int) -> int:
    """An integer whose ``ref_line_end`` is ``q`` (the reference's float round trip can move an
    integer one pixel toward zero; its neighbour away from zero then lands on ``q``). Far out the
    round trip can skip ``q`` altogether; then the nearest pixel it reaches stands in (the cut
    point was already off by rounding there)."""
    return min((q, q + 1, q - 1, q + 2, q - 2), key=lambda c: (abs(ref_line_end(c, size) - q), abs(c - q)))


def clip_line(line: Line, height: int, width: int) -> Line | None:
    """``line`` with ends farther than LINE_FAR outside the image cut back (``clip_segment``), or
    None if nothing of it can show. Ends that are not cut keep their values (their dots)."""
    if all(-LINE_FAR <= v <= size - 1 + LINE_FAR for v, size in
           zip(line.start_point_2d + line.end_point_2d, (width, height, width, height))):
        return line  # the common case (the reference's truncation only moves a value toward zero)
    ends = (ref_line_end(line.start_point_2d[0], width), ref_line_end(line.start_point_2d[1], height),
            ref_line_end(line.end_point_2d[0], width), ref_line_end(line.end_point_2d[1], height))
    cut = clip_segment(ends[:2], ends[2:], LINE_FAR, height, width)
    if cut is None:
        return None
    if cut == (ends[:2], ends[2:]):
        return line
    (a, b), (c, d) = cut
    start = line.start_point_2d if cut[0] == ends[:2] else (_line_stand_in(a, width), _line_stand_in(b, height))
    end = line.end_point_2d if cut[1] == ends[2:] else (_line_stand_in(c, width), _line_stand_in(d, height))
    return Line(line.index, start, end, line.label)


# ---------------------------------------------------------------------------------------- boxes

class BoxGeom(NamedTuple):
    x0: int  # sorted, clamped corners of the outline
    y0: int
    x1: int
    y1: int
    label_x: int  # text anchor (x0 + 8, y0 + 6) of the clipped, unclamped corner
    label_y: int
    color: tuple[int, int, int]


def box_geometry(box: Box, position: int, height: int, width: int) -> BoxGeom:
    b = clip_box(box, height, width).bbox_2d
    x0, y0 = ref_trunc(b[0], width), ref_trunc(b[1], height)
    x1, y1 = ref_trunc(b[2], width), ref_trunc(b[3], height)
    if x0 > x1:
        x0, x1 = x1, x0
    if y0 > y1:
        y0, y1 = y1, y0

    def cx(v):
        return min(max(v, -BOX_CLAMP), width - 1 + BOX_CLAMP)

    def cy(v):
        return min(max(v, -BOX_CLAMP), height - 1 + BOX_CLAMP)

    return BoxGeom(cx(x0), cy(y0), cx(x1), cy(y1), x0 + LABEL_OFFSET[0], y0 + LABEL_OFFSET[1],
                   box_color(position))


def box_bar_rows(y0: int, y1: int) -> tuple[int, int]:
    """Inclusive row range of a box's side bars (empty when lo > hi)."""
    if y1 - y0 >= 2 * OUTLINE:
        return y0 + OUTLINE, y1 - OUTLINE
    if y1 - y0 == 2 * OUTLINE - 1:
        return 1, 0
    return y1 - 2, y0 + OUTLINE


def box_masks(x0, y0, x1, y1, rows, cols, xp=np):
    """The outline as two separable products: painted = band_r & band_c | bar_r & bar_c, for
    row indices ``rows`` and column indices ``cols`` (numpy or jax.numpy vectors)."""
    band_r = ((rows >= y0) & (rows <= y0 + OUTLINE - 1)) | ((rows >= y1 - OUTLINE + 1) & (rows <= y1))
    bar_lo, bar_hi = box_bar_rows_xp(y0, y1, xp)
    bar_r = (rows >= bar_lo) & (rows <= bar_hi)
    band_c = (cols >= x0) & (cols <= x1)
    bar_c = ((cols >= x0) & (cols <= x0 + OUTLINE - 1)) | ((cols >= x1 - OUTLINE + 1) & (cols <= x1))
    return band_r, band_c, bar_r, bar_c


def box_bar_rows_xp(y0, y1, xp=np):
    """``box_bar_rows`` for traced/array values."""
    h = y1 - y0
    lo = xp.where(h >= 2 * OUTLINE, y0 + OUTLINE, xp.where(h == 2 * OUTLINE - 1, 1, y1 - 2))
    hi = xp.where(h >= 2 * OUTLINE, y1 - OUTLINE, xp.where(h == 2 * OUTLINE - 1, 0, y0 + OUTLINE))
    return lo, hi


# ---------------------------------------------------------------------------------------- lines

def _round_down(f: float) -> int:
    """Pillow's ROUND_DOWN: round half toward zero."""
    return int(math.ceil(f - 0.5)) if f >= 0.0 else -int(math.ceil(abs(f) - 0.5))


def wide_line_quad(x0: int, y0: int, x1: int, y1: int) -> tuple[tuple[int, int], ...]:
    """The four vertices Pillow's ImagingDrawWideLine fills for width 4 (needs a non-zero length)."""
    dx, dy = x1 - x0, y1 - y0
    hyp = math.hypot(dx, dy)
    ratio_max = 2 / hyp  # ROUND_UP((4 - 1) / 2) / hyp
    ratio_min = 1 / hyp  # ROUND_DOWN((4 - 1) / 2) / hyp
    dxmin, dxmax = _round_down(ratio_min * dy), _round_down(ratio_max * dy)
    dymin, dymax = _round_down(ratio_min * dx), _round_down(ratio_max * dx)
    return ((x0 - dxmin, y0 + dymax), (x1 - dxmin, y1 + dymax),
            (x1 + dxmax, y1 - dymin), (x0 + dxmax, y0 - dymin))


def quad_row_spans(quads, rows, xp=np):
    """Inclusive column span (lo, hi) of each filled quadrilateral on each row in ``rows``.

    Rule: every non-horizontal edge (xa, ya)-(xb, yb) covering row y (inclusive of both ends)
    meets it at the exact rational X = xa + (y - ya)(xb - xa) / (yb - ya). The row's span runs
    from ROUND_UP(min X) to ROUND_DOWN(max X), Pillow's symmetric roundings (ties away from /
    toward zero), i.e. the pixel centres strictly between X_left - 1/2 and X_right + 1/2, plus
    the tie cases as Pillow rounds them in exact arithmetic. This is Pillow's scanline fill for
    our convex quads, done exactly (Pillow uses float32, which can land on the other side of a
    half-way point). Horizontal edges are skipped: in a quad of positive area their endpoints
    are met by the neighbouring edges on the same row. Rows no edge covers get lo > hi.
    ``lo`` is ROUND_UP except at a tie with X < 0, where it is one more; both are <= 0 there
    and callers clip lo at 0, so the painted pixels are the same.

    ``quads``: integer array (..., 4, 2) of vertices of non-degenerate quads (a zero-length line
    is drawn as a point instead); ``rows``: integer vector (R,); returns two arrays (..., R).
    Works with numpy and jax.numpy alike (int32 suffices under ``render_geometry``'s guard).
    """
    big = 1 << 30
    shape = quads.shape[:-2] + rows.shape
    lo = xp.full(shape, big, rows.dtype)
    hi = xp.full(shape, -big, rows.dtype)
    for e in range(4):
        xa, ya = quads[..., e, 0, None], quads[..., e, 1, None]
        xb, yb = quads[..., (e + 1) % 4, 0, None], quads[..., (e + 1) % 4, 1, None]
        flat = yb == ya
        sign = xp.where(yb < ya, -1, 1)
        den = xp.where(flat, 1, (yb - ya) * sign)
        # 2X + 1 = t / den. Under the guard each product is <= GUARD_SPAN**2, so |t| < 2**31.
        t = 2 * (xa * (yb - ya) + (rows - ya) * (xb - xa)) * sign + den
        up = t // (2 * den)  # floor(X + 1/2): ROUND_UP for X >= 0
        tie = (t - up * (2 * den)) == 0  # X + 1/2 is an integer
        rd = up - (tie & (t >= den))  # ceil(X - 1/2) for X >= 0, floor(X + 1/2) below
        covered = (rows >= xp.where(flat, 1, xp.minimum(ya, yb))) & (rows <= xp.where(flat, 0, xp.maximum(ya, yb)))
        lo = xp.where(covered, xp.minimum(lo, up), lo)
        hi = xp.where(covered, xp.maximum(hi, rd), hi)
    return lo, hi


@functools.lru_cache(maxsize=None)
def ellipse_halfwidths(a: int, b: int) -> tuple[int, ...]:
    """Half-widths of Pillow's filled ellipse in a bounding box a x b pixels (inclusive, so
    a+1 columns): entry k is for the rows at doubled distance Y = b % 2 + 2k from the centre.

    Pillow traces the quarter ellipse a^2 Y^2 + b^2 X^2 = a^2 b^2 on the doubled grid (X = 2i - a,
    Y = 2j - b) from (a, b % 2) to (a % 2, b), each step taking whichever of (X, Y+2), (X-2, Y+2),
    (X-2, Y) has the smallest |a^2 Y^2 + b^2 X^2 - a^2 b^2| (earlier candidates win ties, and the
    X steps are only tried while X > 1). A row's half-width is the first X the walk reaches on it.
    """
    if a < 0 or b < 0 or a + b < 1:  # Pillow fills with a ring as wide as a + b: none at 0 x 0
        return ()

    def dev(x, y):
        return abs(a * a * y * y + b * b * x * x - a * a * b * b)

    x, y = a, b % 2
    widths = [x]
    while not (x == a % 2 and y == b):
        nx, ny = x, y + 2
        best = dev(nx, ny)
        if x > 1:
            cand = dev(x - 2, y + 2)
            if best > cand:
                nx, ny, best = x - 2, y + 2, cand
            cand = dev(x - 2, y)
            if best > cand:
                nx, ny = x - 2, y
        if ny != y:
            widths.append(nx)
        x, y = nx, ny
    return tuple(widths)


@functools.lru_cache(maxsize=None)
def ellipse_spans(a: int, b: int) -> tuple[tuple[int, int], ...]:
    """Inclusive column spans (relative to the box's left) of each of the b+1 rows."""
    rows = [(1, 0)] * (b + 1)
    for k, r in enumerate(ellipse_halfwidths(a, b)):
        yy = b % 2 + 2 * k
        span = ((a - r) // 2, (a + r) // 2)
        rows[(b + yy) // 2] = span
        rows[(b - yy) // 2] = span
    return tuple(rows)


class DotGeom(NamedTuple):
    row0: int  # top-left of the dot's bounding box (Pillow's truncated x - 4, y - 4)
    col0: int
    a: int  # bounding box extent: columns col0..col0+a, rows row0..row0+b
    b: int
    color: tuple[int, int, int]

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """Absolute inclusive column span of each row row0..row0+b."""
        return tuple((self.col0 + lo, self.col0 + hi) for lo, hi in ellipse_spans(self.a, self.b))


@functools.lru_cache(maxsize=None)
def ellipse_mask(a: int, b: int) -> np.ndarray:
    """Boolean (b+1, a+1) mask of Pillow's filled ellipse in an a x b bounding box."""
    cols = np.arange(a + 1)
    mask = np.array([(cols >= lo) & (cols <= hi) for lo, hi in ellipse_spans(a, b)], dtype=bool)
    mask.setflags(write=False)
    return mask


class LineGeom(NamedTuple):
    quad: tuple[tuple[int, int], ...] | None  # the width-4 quad; None if clipped away or a point
    point: tuple[int, int] | None  # (x, y) of a zero-length line, which Pillow draws as one pixel
    dots: tuple[DotGeom | None, DotGeom | None]  # start (red), end (blue); None if off-image


def _dot(x: float, y: float, color, height: int, width: int) -> DotGeom | None:
    r = DOT_RADIUS
    bx0, by0, bx1, by1 = int(x - r), int(y - r), int(x + r), int(y + r)  # C (int) casts
    if bx1 < 0 or by1 < 0 or bx0 >= width or by0 >= height:
        return None
    assert by1 - by0 < DOT_ROWS, (bx0, by0, bx1, by1)
    return DotGeom(by0, bx0, bx1 - bx0, by1 - by0, color)


def line_geometry(line: Line, height: int, width: int) -> LineGeom:
    clipped = clip_line(line, height, width)
    if clipped is None:
        return LineGeom(None, None, (None, None))
    line = clipped
    xs = int(line.start_point_2d[0]) / width * width
    ys = int(line.start_point_2d[1]) / height * height
    xe = int(line.end_point_2d[0]) / width * width
    ye = int(line.end_point_2d[1]) / height * height
    ends = ((int(xs), int(ys)), (int(xe), int(ye)))  # C (int) casts truncate toward zero
    seg = clip_segment(*ends, line_guard(height, width), height, width)
    quad = point = None
    if seg is not None:
        (x0, y0), (x1, y1) = seg
        if x0 == x1 and y0 == y1:
            point = (x0, y0)
        else:
            quad = wide_line_quad(x0, y0, x1, y1)
    dots = (_dot(xs, ys, DOT_START_INK, height, width), _dot(xe, ye, DOT_END_INK, height, width))
    return LineGeom(quad, point, dots)
