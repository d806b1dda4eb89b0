"""Renderers: golden tests against Pillow (the reference) and NumPy == JAX, bit for bit."""

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drawing_ops.actions import Box, Line
from drawing_ops.render import render
from drawing_ops.render_geometry import (LINE_FAR, clip_primitives, ellipse_mask, line_geometry, line_guard,
                                         quad_row_spans)
from drawing_ops.render_jax import PackedPrimitives, label_extent, pack_primitives, render_batch
from drawing_ops.render_numpy import quad_spans, render_numpy

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw  # noqa: E402

from drawing_ops.render_pil import render_pil  # noqa: E402

H, W = 40, 50  # one image size for the golden tests, so the JAX backend compiles once


def background(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def pil_rectangle(img, xy, color, clamp=None):
    """Pillow's rectangle(width=4) on int corners, optionally clamped (a saturating cast)."""
    if clamp is not None:
        xy = [min(max(v, -clamp), clamp) for v in xy]
    out = Image.fromarray(img)
    ImageDraw.Draw(out).rectangle(((xy[0], xy[1]), (xy[2], xy[3])), outline=color, width=4)
    return np.asarray(out)


def ref_corners(bbox, h=H, w=W):
    x0, y0 = int(bbox[0] / w * w), int(bbox[1] / h * h)
    x1, y1 = int(bbox[2] / w * w), int(bbox[3] / h * h)
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


# Boxes within the range where Pillow's C int arithmetic is defined: compared with Pillow as is.
BOX_CASES = [
    (5, 6, 30, 25),  # normal
    (30, 25, 5, 6),  # reversed corners
    (30, 6, 5, 25),  # reversed x only
    (5, 25, 30, 6),  # reversed y only
    (-10, -5, 20, 15),  # partly outside, top-left
    (40, 30, 70, 60),  # partly outside, bottom-right
    (60, 50, 80, 70),  # wholly outside
    (-30, -30, -10, -10),  # wholly outside, negative
    (-3, 10, 20, 30), (10, -2, 30, 20), (45, 10, 52, 20), (10, 36, 30, 41),  # outline half cut
    (10, 10, 10, 30),  # zero width
    (10, 10, 30, 10),  # zero height
    (10, 10, 10, 10),  # a point: the 4-px outline overlaps itself (and spills up/left)
    (10, 10, 11, 12), (10, 10, 12, 11), (10, 10, 13, 13), (0, 0, 2, 3), (47, 37, 49, 39),  # 1-3 px
    (10, 10, 16, 16), (10, 10, 17, 17), (10, 10, 18, 18),  # around the 7/8 px bar switch
    (-0.5, -0.9, 20.7, 15.2),  # negative floats truncate toward zero
    (-1.5, 3.99, 7.01, 8.5), (0.3, 0.3, 0.7, 0.7),
    (0, 0, 49, 39), (0, 0, 50, 40), (-1, -1, 50, 40),  # the whole image
    (-100000, -100000, 100000, 100000), (-2**20, 12, 25, 2**20),  # large but int32-safe
]

# Beyond 2**31 Pillow's (int) cast is undefined (x86 gives INT_MIN); we follow a saturating cast.
HUGE_CASES = [
    (10, 10, 1e12, 30), (-1e12, 10, 20, 30), (10, -1e12, 30, 20), (10, 10, 30, 1e12),
    (-1e12, -1e12, 1e12, 1e12), (1e12, 1e12, 2e12, 2e12), (-2e12, -1e12, -1e12, 5),
    (10, 10, 2**31, 30), (-2**31 - 5.0, 10, 20, 30), (1e300, 5, -1e300, 6),
]


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("bbox", BOX_CASES, ids=str)
def test_box_matches_pillow(bbox, backend):
    img = background()
    ours = render(img, [Box(1, bbox, "b")], [], backend=backend, draw_labels=False)
    assert np.array_equal(ours, pil_rectangle(img, ref_corners(bbox), (255, 0, 0)))
    assert np.array_equal(ours, render_pil(img, [Box(1, bbox, "b")], [], draw_labels=False))


@pytest.mark.parametrize("backend", ["numpy", "jax", "pil"])
@pytest.mark.parametrize("bbox", HUGE_CASES, ids=str)
def test_huge_box_is_pillow_with_a_saturating_cast(bbox, backend):
    img = background()
    ours = render(img, [Box(1, bbox, "b")], [], backend=backend, draw_labels=False)
    assert np.array_equal(ours, pil_rectangle(img, ref_corners(bbox), (255, 0, 0), clamp=2**20))


def test_reference_truncation_uses_float_division_then_multiplication():
    # int(61 / 448 * 448) == 60 in float64: the reference's arithmetic, not int(61).
    img = background(64, 448)
    bbox = (61, 7, 90, 35)
    assert int(61 / 448 * 448) == 60
    ours = render_numpy(img, [Box(1, bbox, "b")], [], draw_labels=False)
    assert np.array_equal(ours, render_pil(img, [Box(1, bbox, "b")], [], draw_labels=False))
    assert np.array_equal(ours, pil_rectangle(img, (60, 7, 90, 35), (255, 0, 0)))


def random_box(rng, h, w, alphabet="abcxyzWAB019 _-./é中\n", max_len=14):
    def v():
        return rng.choice([rng.uniform(-30, max(h, w) + 30), rng.randint(-30, max(h, w) + 30),
                           rng.randint(-5, 5) + rng.choice([0, w, h]), -0.5, 0.9])
    x, y = v(), v()
    bbox = (x, y, x + rng.randint(-9, 9), y + rng.randint(-9, 9)) if rng.random() < 0.4 else (x, y, v(), v())
    label = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, max_len)))
    return Box(1, bbox, label.strip("\n") or "x")


def test_boxes_with_labels_match_pillow_exactly():
    rng = random.Random(0)
    for trial in range(300):
        h, w = rng.randint(8, 90), rng.randint(8, 120)
        img = background(h, w, trial)
        boxes = [random_box(rng, h, w) for _ in range(rng.randint(1, 6))]
        assert np.array_equal(render_numpy(img, boxes, []), render_pil(img, boxes, [])), (trial, boxes)


def test_box_colours_cycle_past_the_base_names():
    img = background(60, 80)
    boxes = [Box(1, (i % 7 * 11, i // 7 * 9, i % 7 * 11 + 9, i // 7 * 9 + 9), f"b{i}") for i in range(30)]
    assert np.array_equal(render_numpy(img, boxes, []), render_pil(img, boxes, []))


def test_labels_of_far_boxes_are_dropped_not_crashing():
    img = background()
    boxes = [Box(1, (-1e12, -1e12, 5, 5), "far"), Box(1, (1e12, 3, 2e12, 9), "far too")]
    for backend in ("numpy", "jax", "pil"):
        ours = render(img, boxes, [], backend=backend)
        assert np.array_equal(ours, pil_rectangle(pil_rectangle(img, (-2**20, -2**20, 5, 5), (255, 0, 0)),
                                                  (2**20, 3, 2**20, 9), (0, 128, 0)))


# ------------------------------------------------------------------------------------------ lines

def pil_line_pixels(p, h, w):
    xs, ys, xe, ye = int(p[0]) / w * w, int(p[1]) / h * h, int(p[2]) / w * w, int(p[3]) / h * h
    im = Image.new("L", (w, h))
    ImageDraw.Draw(im).line((xs, ys, xe, ye), fill=255, width=4)
    return np.asarray(im) > 0


def our_line_pixels(p, h, w):
    # A lone line on white: black pixels are the line (its dots are painted red/blue).
    line = Line(1, (p[0], p[1]), (p[2], p[3]), "l")
    out = render_numpy(np.full((h, w, 3), 255, np.uint8), [], [line])
    geom = line_geometry(line, h, w)
    dots = np.zeros((h, w), bool)
    for dot in geom.dots:
        if dot is not None:
            full = np.zeros((h + 40, w + 40), bool)
            full[dot.row0 + 20:dot.row0 + 21 + dot.b, dot.col0 + 20:dot.col0 + 21 + dot.a] = ellipse_mask(dot.a, dot.b)
            dots |= full[20:20 + h, 20:20 + w]
    return (out == 0).all(-1), dots


def test_lines_agree_with_pillow_iou():
    # Measured: IoU 0.99997 and 99.7% of lines pixel-identical (the rest differ where Pillow's
    # float32 edge arithmetic rounds a half-way pixel the other way).
    rng = random.Random(1)
    h, w = 64, 80
    inter = union = identical = 0
    n = 1500
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            p = [rng.uniform(-20, 100) for _ in range(4)]
        elif r < 0.8:
            p = [rng.randint(-20, 100) for _ in range(4)]
        else:
            x, y = rng.uniform(-20, 100), rng.uniform(-20, 100)
            p = [x, y, x + rng.randint(-3, 3), y + rng.randint(-3, 3)]
        ref = pil_line_pixels(p, h, w)
        ours, dots = our_line_pixels(p, h, w)
        ref &= ~dots  # the dots are drawn over the line in both renderers
        inter += (ref & ours).sum()
        union += (ref | ours).sum()
        identical += np.array_equal(ref, ours)
    assert inter / union >= 0.9995
    assert identical / n >= 0.99


def test_lines_with_a_far_endpoint_agree_with_pillow_iou():
    # One end in the image, the other up to 1e5 px away (beyond the 11k px guard some of the
    # time). Measured: IoU 0.9991; Pillow itself works in float32 here.
    rng = random.Random(6)
    h, w = 64, 80
    inter = union = 0
    for _ in range(300):
        p = [rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-1e5, 1e5), rng.uniform(-1e5, 1e5)]
        ref = pil_line_pixels(p, h, w)
        ours, dots = our_line_pixels(p, h, w)
        ref &= ~dots
        inter += (ref & ours).sum()
        union += (ref | ours).sum()
    assert inter / union >= 0.995


def test_numpy_line_spans_follow_the_shared_integer_rule():
    # render_numpy evaluates the rule in float64 on ragged rows; the shared int version is what
    # the JAX renderer runs. They must agree wherever a pixel can be painted (lo clipped at 0).
    rng = random.Random(4)
    h = 60
    for _ in range(300):
        p = [rng.choice([rng.uniform(-80, 140), rng.randint(-80, 140)]) for _ in range(4)]
        quad = line_geometry(Line(1, p[:2], p[2:], "l"), h, 70).quad
        if quad is None:
            continue
        got = quad_spans([quad], h)[0]
        lo, hi = quad_row_spans(np.array(quad), np.arange(h))
        painted = np.maximum(lo, 0) <= hi
        if got is None:
            assert not painted.any()
            continue
        r0, glo, ghi = got
        rows = slice(r0, r0 + len(glo))
        assert not painted[:r0].any() and not painted[r0 + len(glo):].any()
        assert np.array_equal(np.maximum(glo, 0), np.maximum(lo[rows], 0))
        assert np.array_equal(ghi, hi[rows])


@pytest.mark.parametrize("side", [448, 8192])
def test_line_rule_fits_int32_at_the_guard_extremes(side):
    import jax.numpy as jnp

    far, g = 1e9, line_guard(side, side)
    ends = [(-far, -far, far, far), (-far, far, far, -far), (-far, 3, far, 5), (3, -far, 5, far),
            (0, 0, far, far * 0.999), (-g + 1, -far, -g + 3, far), (side + g - 2, far, side + g - 4, -far),
            (-far, -g + 1, far, -g + 2), (-far, side + g - 2, far, side + g - 3)]
    quads = [line_geometry(Line(1, p[:2], p[2:], "l"), side, side).quad for p in ends]
    quads = np.array([q for q in quads if q is not None])
    assert np.abs(quads).max() > side  # the guard really is reached
    rows = np.arange(side)
    lo64, hi64 = quad_row_spans(quads.astype(np.int64), rows.astype(np.int64))
    lo32, hi32 = quad_row_spans(jnp.asarray(quads, jnp.int32), jnp.asarray(rows, jnp.int32), jnp)
    assert np.array_equal(np.asarray(lo32), lo64) and np.array_equal(np.asarray(hi32), hi64)


@pytest.mark.parametrize("a", range(0, 13))
def test_dot_shapes_match_pillow_ellipse(a):
    for b in range(0, 13):
        im = Image.new("L", (20, 20))
        ImageDraw.Draw(im).ellipse([(3, 4), (3 + a, 4 + b)], fill=255)
        ref = np.asarray(im)[4:5 + b, 3:4 + a] > 0
        assert np.array_equal(ellipse_mask(a, b), ref), (a, b)
        assert (np.asarray(im) > 0).sum() == ref.sum()


def test_dots_match_pillow_exactly():
    rng = random.Random(3)
    h, w = 50, 60
    for trial in range(300):
        p = [rng.uniform(-10, 70), rng.uniform(-10, 60), rng.uniform(-10, 70), rng.uniform(-10, 60)]
        line = Line(1, (p[0], p[1]), (p[2], p[3]), "l")
        img = background(h, w, trial)
        ref, ours = render_pil(img, [], [line]), render_numpy(img, [], [line])
        for color in ((255, 0, 0), (0, 0, 255)):
            assert np.array_equal((ref == color).all(-1), (ours == color).all(-1)), (trial, p)


def test_zero_length_and_axis_aligned_lines_match_pillow():
    img = background()
    for p in [(10, 10, 10, 10), (10.7, 10.2, 10.1, 10.9), (5, 20, 45, 20), (25, 2, 25, 38), (0, 0, 49, 0),
              (-5, 3, -5, 30), (3, -7, 40, -7)]:
        line = Line(1, p[:2], p[2:], "l")
        assert np.array_equal(render_numpy(img, [], [line]), render_pil(img, [], [line])), p


def test_far_endpoints_are_clipped_not_overflowing():
    img = np.full((H, W, 3), 255, np.uint8)
    far = Line(1, (10, 10), (10 + 2e12, 10 + 1e12), "far")
    near = Line(1, (10, 10), (10 + 2000, 10 + 1000), "near")
    ours = render_numpy(img, [], [far])
    assert np.array_equal(ours, render(img, [], [far], backend="jax"))
    both = (ours == 0).all(-1), (render_numpy(img, [], [near]) == 0).all(-1)
    assert (both[0] & both[1]).sum() / (both[0] | both[1]).sum() >= 0.95
    for p in [(-1e12, -1e12, 1e12, 1e12), (1e12, 1e12, 2e12, 2e12), (-1e300, 5, 1e300, 6),
              (-1.7e308, -1.7e308, 1.7e308, 1.6e308), (20, 20, -1.7e308, 1e307)]:
        line = Line(1, p[:2], p[2:], "l")
        assert np.array_equal(render_numpy(img, [], [line]), render(img, [], [line], backend="jax"))


# ------------------------------------------------------------------ clipping before any backend

def test_far_boxes_on_the_pil_backend_are_pillow_byte_for_byte():
    # Pillow's rectangle loops over every row, so 1e6 is about as far as it goes quickly; the
    # clipped drawing must be its result exactly, labels (long, multi-line) included.
    rng = random.Random(8)
    for trial in range(12):
        img = background(seed=trial)
        far = rng.choice([1e6, -1e6, 3e5, -2e5])
        boxes = [Box(1, (rng.uniform(-60, 60), rng.uniform(-60, 60), far, rng.uniform(-60, 60)), "far right"),
                 Box(1, (far, rng.uniform(-60, 60), rng.uniform(-60, 60), -far), "spans\nthe image"),
                 random_box(rng, H, W)]
        ref = render_pil(img, boxes, [])
        for backend in ("pil", "numpy"):
            assert np.array_equal(render(img, boxes, [], backend=backend), ref), (trial, backend, boxes)


def test_a_long_label_keeps_its_box_corner_where_it_can_still_show():
    # A corner 300 px left of the image with a 120-glyph label: the label reaches into the image,
    # so the corner must not be moved to the outline's 16-px margin.
    img = background()
    boxes = [Box(1, (-300, 5, 30, 30), "x" * 120), Box(1, (-10, -150, 20, 12), "tall\n" * 12 + "end")]
    ref = render_pil(img, boxes, [])
    for box in boxes:  # each label shows
        assert not np.array_equal(render_pil(img, [box], []), render_pil(img, [box], [], draw_labels=False))
    for backend in ("pil", "numpy"):  # (jax == numpy is the property test's job)
        assert np.array_equal(render(img, boxes, [], backend=backend), ref), backend


@pytest.mark.parametrize("far", [1e12, 2.0**31, 1e300])
def test_every_backend_draws_huge_coordinates_as_their_clipped_stand_ins(far):
    # No timing assertion: Pillow's unclipped rectangle would loop over ~1e12 rows (it never returns).
    img = background()
    boxes = [Box(1, (5, 5, far, 30), "a"), Box(1, (-far, -far, far, far), "b"), Box(1, (far, 3, 2 * far, 9), "c")]
    lines = [Line(1, (10, 20), (10 + 3 * far, 20 + far), "lattice"), Line(1, (-far, 31), (far, 30), "flat"),
             Line(1, (-far, -far), (far, far), "diagonal"), Line(1, (far, far), (2 * far, 3 * far), "away")]
    cut_boxes, cut_lines = clip_primitives(boxes, lines, H, W)
    assert len(cut_lines) == 3  # the line that never comes near the image is dropped
    assert all(abs(v) <= W + 4096 for b in cut_boxes for v in b.bbox_2d)
    assert all(abs(v) <= LINE_FAR + W for ln in cut_lines for v in ln.start_point_2d + ln.end_point_2d)
    assert clip_primitives(cut_boxes, cut_lines, H, W) == (cut_boxes, cut_lines)  # idempotent
    pil = render(img, boxes, lines, backend="pil")
    assert np.array_equal(pil, render_pil(img, cut_boxes, cut_lines))
    assert np.array_equal(render(img, boxes, [], backend="pil"), render(img, boxes, [], backend="numpy"))
    assert np.array_equal(render(img, boxes, lines, backend="numpy"), render(img, boxes, lines, backend="jax"))


def test_a_far_line_with_lattice_points_is_cut_exactly():
    # (10, 20) + k (3, 1) are pixels of the line at every k: cut there, the stand-in lies on the
    # same line, so the exact renderer paints the same pixels as for a near end on that line.
    # (A 64 px image: the reference's int(v) / 64 * 64 keeps every integer, so the ends stay put.)
    img = np.full((64, 64, 3), 255, np.uint8)
    near = Line(1, (10, 20), (10 + 3 * 100, 20 + 100), "l")
    near_both = Line(1, (10 - 3 * 100, 20 - 100), (10 + 3 * 100, 20 + 100), "l")
    for k in (10**4, 10**7, 10**12, 10**30):
        far = Line(1, (10, 20), (10 + 3 * k, 20 + k), "l")
        assert np.array_equal(render(img, [], [far]), render(img, [], [near])), k
        back = Line(1, (10 - 3 * k, 20 - k), (10 + 3 * k, 20 + k), "l")
        assert np.array_equal(render(img, [], [back]), render(img, [], [near_both])), k


def test_lines_within_pillows_exact_range_reach_it_unchanged():
    rng = random.Random(9)
    for _ in range(40):
        line = Line(1, (rng.uniform(0, W), rng.uniform(0, H)), (rng.uniform(-1e7, 1e7), rng.uniform(-1e7, 1e7)), "l")
        assert clip_primitives([], [line], H, W)[1] == [line]


# ------------------------------------------------------------------------------ numpy == jax

PH, PW, PB = 36, 52, 3  # one jit shape for all property examples
MAXB, MAXL, MAXR, MAXC = 4, 4, 2, 12

coord = st.one_of(
    st.floats(-60, 120, allow_nan=False),
    st.integers(-60, 120),
    st.sampled_from([0, -0.5, 0.5, -1, PH - 1, PW - 1, PH, PW, 1e12, -1e12, 2**31, -2**31 - 1, 1e6, -3e5]),
    st.floats(-1e15, 1e15, allow_nan=False),
)
label = st.text(alphabet=st.sampled_from(list("abcWXY09 -_.é中©\n")), min_size=1, max_size=20).filter(
    lambda s: label_extent(s)[0] <= MAXR and label_extent(s)[1] <= MAXC)
boxes_st = st.lists(st.builds(lambda a, b, c, d, t: Box(1, (a, b, c, d), t), coord, coord, coord, coord, label),
                    max_size=MAXB)


@st.composite
def line_st(draw):
    x0, y0 = draw(coord), draw(coord)
    kind = draw(st.sampled_from(["any", "point", "vertical", "horizontal"]))
    x1 = x0 if kind in ("point", "vertical") else draw(coord)
    y1 = y0 if kind in ("point", "horizontal") else draw(coord)
    return Line(1, (x0, y0), (x1, y1), "l")


scene = st.tuples(boxes_st, st.lists(line_st(), max_size=MAXL))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes=st.lists(scene, min_size=PB, max_size=PB), seed=st.integers(0, 2**16), labels=st.booleans())
def test_numpy_and_jax_are_bit_identical(scenes, seed, labels):
    images = np.random.default_rng(seed).integers(0, 256, (PB, PH, PW, 3), dtype=np.uint8)
    prims = pack_primitives(scenes, MAXB, MAXL, MAXC, image_hw=(PH, PW), max_label_lines=MAXR)
    out = np.asarray(render_batch(images, prims, labels))
    for b, (boxes, lines) in enumerate(scenes):
        assert np.array_equal(out[b], render_numpy(images[b], boxes, lines, labels)), (boxes, lines)


def test_render_batch_is_vmappable_and_jittable_per_image():
    import jax

    from drawing_ops.render_jax import render_one

    rng = random.Random(5)
    scenes = [([random_box(rng, PH, PW, "ab", MAXC) for _ in range(2)],
               [Line(1, (rng.uniform(0, PW), rng.uniform(0, PH)), (rng.uniform(0, PW), rng.uniform(0, PH)), "l")])
              for _ in range(PB)]
    images = background(PH, PW)[None].repeat(PB, 0)
    prims = pack_primitives(scenes, MAXB, MAXL, MAXC, image_hw=(PH, PW), max_label_lines=MAXR)
    assert isinstance(prims, PackedPrimitives)
    # render_batch is jit(vmap(render_one)); the per-image function jits on its own too.
    one = jax.jit(render_one)(images[1], jax.tree.map(lambda a: a[1], prims))
    assert np.array_equal(np.asarray(one), render_numpy(images[1], *scenes[1]))
    assert np.array_equal(np.asarray(one), np.asarray(render_batch(images, prims))[1])


def test_pack_primitives_rejects_what_does_not_fit():
    box = Box(1, (1, 2, 3, 4), "a")
    with pytest.raises(ValueError, match="max_boxes"):
        pack_primitives([([box] * 3, [])], 2, 1, 8, image_hw=(10, 10))
    with pytest.raises(ValueError, match="max_label_len"):
        pack_primitives([([Box(1, (1, 2, 3, 4), "x" * 9)], [])], 2, 1, 8, image_hw=(10, 10))
    with pytest.raises(ValueError, match="max_label_lines"):
        pack_primitives([([Box(1, (1, 2, 3, 4), "a\nb")], [])], 2, 1, 8, image_hw=(10, 10))
    with pytest.raises(ValueError, match="images"):
        render_batch(np.zeros((2, 10, 10, 3), np.uint8), pack_primitives([([box], [])], 1, 1, 8, image_hw=(10, 10)))


# ------------------------------------------------------------------------------------ render()

def test_render_api_validates_and_never_mutates():
    img = background()
    before = img.copy()
    boxes = [Box(1, (5, 5, 30, 30), "cup")]
    lines = [Line(1, (2, 3), (40, 30), "path")]
    outs = {b: render(img, boxes, lines, backend=b) for b in ("numpy", "jax", "pil")}
    assert np.array_equal(img, before)
    assert np.array_equal(outs["numpy"], outs["jax"])
    assert all(o.dtype == np.uint8 and o.shape == img.shape for o in outs.values())
    assert np.array_equal(render(Image.fromarray(img), boxes, lines), outs["numpy"])
    with pytest.raises(ValueError, match="backend"):
        render(img, boxes, lines, backend="cairo")
    for bad in (img.astype(np.float32), img[..., :2], img[..., 0], np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(ValueError, match="image"):
            render(bad, boxes, lines)
    assert not np.array_equal(render(img, boxes, [], draw_labels=False), render(img, boxes, []))


def test_a_far_line_whose_cut_point_the_float_round_trip_skips():
    """Found by hypothesis: a cut end at x = 3,752,743 on a 52 px wide image, which no integer
    reaches through the reference's `int(v) / size * size`."""
    from drawing_ops.render_geometry import clip_line
    from drawing_ops.render_jax import pack_primitives, render_batch

    line = Line(1, (0.0, 0.0), (9261675801537.0, 41405830056059.0), "l")
    assert clip_line(line, PH, PW) is not None
    image = np.full((PH, PW, 3), 255, np.uint8)
    want = render_numpy(image, [], [line], False)
    prims = pack_primitives([([], [line])], MAXB, MAXL, MAXC, image_hw=(PH, PW), max_label_lines=MAXR)
    np.testing.assert_array_equal(np.asarray(render_batch(image[None], prims, False)[0]), want)
