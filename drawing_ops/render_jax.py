"""JAX renderer: the NumPy renderer's rules on padded, masked primitives, jit- and vmap-able.

Two steps:

1. ``pack_primitives`` (host, NumPy): each image's boxes and lines become fixed-size int32
   arrays with validity masks, using exactly the host geometry of the NumPy renderer
   (``render_geometry``): truncated/clamped box corners and colours, label glyph ids with
   their pen columns (``font.layout``), the width-4 line quads (or single points), and the
   dots' bounding boxes with their row spans. Nothing unbounded reaches the device: far-away
   boxes are clamped, far line endpoints clipped to the guard box, invisible labels and dots
   masked out, so int32 never overflows.
2. ``render_batch`` (device, jitted, vmapped over the batch): paints in the reference order --
   box outline i, then label i (blended), for every box; then line j, its start dot, its end
   dot, for every line. Every primitive is a per-row column-span test, so the whole sequence
   without labels is one fused elementwise pass over the image (``_shade``). Each label line is
   composed into a small coverage tile from the glyph atlas; its window is then recomputed from
   the original pixels with the full sequence, labels included, and written back
   (``render_one``).

All arithmetic is integer and identical to ``render_numpy`` (same formulas, shared via
``render_geometry`` and ``font``), so the bytes match; tests check this property.
Shapes are static per (B, H, W, max_boxes, max_lines, max_label_lines, max_label_len), so
``render_batch`` compiles once per such shape (plus ``draw_labels``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from drawing_ops.actions import Box, Line
from drawing_ops.font import BLANK_GLYPH, blend, layout, load_atlas, over
from drawing_ops.render_geometry import (DOT_END_INK, DOT_ROWS, DOT_START_INK, LINE_INK, box_geometry,
                                         box_masks, check_image_size, drawable_rgb, ellipse_spans, line_geometry,
                                         quad_row_spans)


class PackedPrimitives(NamedTuple):
    """Padded drawing primitives for a batch of B images (a pytree of arrays).

    NB = max_boxes, NL = max_lines, NR = max_label_lines, NC = max_label_len.
    """

    box_rect: np.ndarray  # int32 (B, NB, 4): x0, y0, x1, y1, sorted and clamped
    box_color: np.ndarray  # int32 (B, NB, 3)
    box_valid: np.ndarray  # bool (B, NB)
    label_glyphs: np.ndarray  # int32 (B, NB, NR, NC): atlas glyph ids (0 = blank padding)
    label_cols: np.ndarray  # int32 (B, NB, NR, NC): glyph canvas column within its line tile
    label_origin: np.ndarray  # int32 (B, NB, 2): (x, y) of line 0's tile; line r is r*spacing lower
    label_valid: np.ndarray  # bool (B, NB): the label exists and may touch the image
    line_quad: np.ndarray  # int32 (B, NL, 4, 2): vertices of the width-4 quad
    line_valid: np.ndarray  # bool (B, NL): the quad is drawn
    line_point: np.ndarray  # int32 (B, NL, 2): (x, y) of a zero-length line
    point_valid: np.ndarray  # bool (B, NL)
    dot_origin: np.ndarray  # int32 (B, NL, 2, 2): (row0, col0) of the start / end dot's box
    dot_spans: np.ndarray  # int32 (B, NL, 2, DOT_ROWS, 2): per-row (lo, hi) relative to col0
    dot_valid: np.ndarray  # bool (B, NL, 2)


def _tile_width(max_label_len: int) -> int:
    atlas = load_atlas()
    return max(max_label_len - 1, 0) * atlas.max_advance_px + atlas.canvas_hw[1]


def label_extent(text: str) -> tuple[int, int]:
    """(number of lines, longest line in glyphs) of a label, for choosing pack sizes."""
    lines = layout(text)
    return len(lines), max(len(ids) for ids, _ in lines)


def pack_primitives(per_image: Sequence[tuple[Sequence[Box], Sequence[Line]]], max_boxes: int,
                    max_lines: int, max_label_len: int, *, image_hw: tuple[int, int],
                    max_label_lines: int = 1) -> PackedPrimitives:
    """Pack each image's (boxes, lines) into padded arrays for ``render_batch``.

    ``image_hw`` is the (H, W) of the images the primitives will be drawn on (the reference's
    coordinate arithmetic depends on it). Raises ValueError when an image has more boxes or lines
    than ``max_boxes``/``max_lines``, or a label more lines than ``max_label_lines`` or a line
    longer than ``max_label_len`` glyphs (``label_extent`` tells what a label needs).
    """
    height, width = (int(v) for v in image_hw)
    check_image_size(height, width)
    atlas = load_atlas()
    gh, gw = atlas.canvas_hw
    tile_w = _tile_width(max_label_len)
    n = len(per_image)
    nb, nl, nr, nc = max_boxes, max_lines, max_label_lines, max_label_len
    box_rect = np.zeros((n, nb, 4), np.int32)
    box_color = np.zeros((n, nb, 3), np.int32)
    box_valid = np.zeros((n, nb), bool)
    label_glyphs = np.full((n, nb, nr, nc), BLANK_GLYPH, np.int32)
    label_cols = np.zeros((n, nb, nr, nc), np.int32)
    label_origin = np.zeros((n, nb, 2), np.int32)
    label_valid = np.zeros((n, nb), bool)
    line_quad = np.zeros((n, nl, 4, 2), np.int32)
    line_valid = np.zeros((n, nl), bool)
    line_point = np.zeros((n, nl, 2), np.int32)
    point_valid = np.zeros((n, nl), bool)
    dot_origin = np.zeros((n, nl, 2, 2), np.int32)
    dot_spans = np.zeros((n, nl, 2, DOT_ROWS, 2), np.int32)
    dot_spans[..., 0] = 1  # empty rows: lo > hi
    dot_valid = np.zeros((n, nl, 2), bool)

    for b, (boxes, lines) in enumerate(per_image):
        if len(boxes) > nb or len(lines) > nl:
            raise ValueError(f"image {b} has {len(boxes)} boxes and {len(lines)} lines; "
                             f"max_boxes={nb}, max_lines={nl}: pack with larger maxima")
        for i, box in enumerate(boxes):
            g = box_geometry(box, i, height, width)
            box_rect[b, i] = (g.x0, g.y0, g.x1, g.y1)
            box_color[b, i] = g.color
            box_valid[b, i] = True
            text_lines = layout(box.label)
            if len(text_lines) > nr or max(len(ids) for ids, _ in text_lines) > nc:
                raise ValueError(f"label {box.label!r} needs {label_extent(box.label)} (lines, glyphs); "
                                 f"max_label_lines={nr}, max_label_len={nc}: pack with larger maxima")
            ox, oy = g.label_x + atlas.origin_x, g.label_y + atlas.origin_y
            block_h = gh + (len(text_lines) - 1) * atlas.line_spacing
            if ox + tile_w <= 0 or oy + block_h <= 0 or ox >= width or oy >= height:
                continue  # entirely off the image (coordinates may be huge): nothing to blend
            label_valid[b, i] = True
            label_origin[b, i] = (ox, oy)
            for r, (ids, cols) in enumerate(text_lines):
                label_glyphs[b, i, r, :len(ids)] = ids
                label_cols[b, i, r, :len(cols)] = cols
        for j, line in enumerate(lines):
            lg = line_geometry(line, height, width)
            if lg.quad is not None:
                line_quad[b, j] = lg.quad
                line_valid[b, j] = True
            elif lg.point is not None and 0 <= lg.point[0] < width and 0 <= lg.point[1] < height:
                line_point[b, j] = lg.point
                point_valid[b, j] = True
            for k, dot in enumerate(lg.dots):
                if dot is not None:
                    dot_origin[b, j, k] = (dot.row0, dot.col0)
                    spans = ellipse_spans(dot.a, dot.b)
                    dot_spans[b, j, k, :len(spans)] = spans
                    dot_valid[b, j, k] = True
    return PackedPrimitives(box_rect, box_color, box_valid, label_glyphs, label_cols, label_origin,
                            label_valid, line_quad, line_valid, line_point, point_valid, dot_origin,
                            dot_spans, dot_valid)


# ------------------------------------------------------------------------------------ device side

def _label_tiles(prims: PackedPrimitives, atlas_glyphs, tile_w: int):
    """Coverage tiles (NB, NR, GH, tile_w) int32: each label line's glyphs composed in order."""
    gh, gw = atlas_glyphs.shape[1:]

    def compose(glyphs, cols):
        def add_glyph(k, tile):
            piece = jax.lax.dynamic_slice(tile, (0, cols[k]), (gh, gw))
            return jax.lax.dynamic_update_slice(tile, over(piece, atlas_glyphs[glyphs[k]], jnp), (0, cols[k]))

        return jax.lax.fori_loop(0, glyphs.shape[0], add_glyph, jnp.zeros((gh, tile_w), jnp.int32))

    return jax.vmap(jax.vmap(compose))(prims.label_glyphs, prims.label_cols)


def _box_step(img, i, rows, cols, prims: PackedPrimitives, tiles, line_spacing: int):
    """Paint box i's outline, then (given ``tiles``) blend its label lines, on pixels rows x cols."""
    x0, y0, x1, y1 = (prims.box_rect[i, k] for k in range(4))
    band_r, band_c, bar_r, bar_c = box_masks(x0, y0, x1, y1, rows, cols, jnp)
    paint = ((band_r[:, None] & band_c[None, :]) | (bar_r[:, None] & bar_c[None, :])) & prims.box_valid[i]
    img = jnp.where(paint[..., None], prims.box_color[i].astype(jnp.uint8), img)
    if tiles is not None:
        gh, tile_w = tiles.shape[2:]
        for r in range(tiles.shape[1]):
            ty = rows - (prims.label_origin[i, 1] + r * line_spacing)  # tile row / column per pixel
            tx = cols - prims.label_origin[i, 0]
            inside = ((ty >= 0) & (ty < gh))[:, None] & ((tx >= 0) & (tx < tile_w))[None, :]
            cover = tiles[i, r][jnp.clip(ty, 0, gh - 1)][:, jnp.clip(tx, 0, tile_w - 1)]
            img = blend(jnp.where(inside & prims.label_valid[i], cover, 0), img, prims.box_color[i], jnp)
    return img


def _line_spans(rows, prims: PackedPrimitives):
    """Per-row column spans on ``rows`` of every line (quad or point) and dot: (lo, hi) each
    (NL, 3, h) for [line, start dot, end dot]; empty rows have lo > hi."""
    lo, hi = quad_row_spans(prims.line_quad, rows, jnp)  # (NL, h)
    on_point = (rows[None, :] == prims.line_point[:, 1, None]) & prims.point_valid[:, None]
    px = prims.line_point[:, 0, None]
    lo = jnp.where(prims.line_valid[:, None], lo, jnp.where(on_point, px, 1))
    hi = jnp.where(prims.line_valid[:, None], hi, jnp.where(on_point, px, 0))
    dr = rows[None, None, :] - prims.dot_origin[..., 0, None]  # (NL, 2, h): row within each dot
    in_dot = (dr >= 0) & (dr < DOT_ROWS) & prims.dot_valid[..., None]
    spans = jnp.take_along_axis(prims.dot_spans, jnp.clip(dr, 0, DOT_ROWS - 1)[..., None], axis=2)
    dot_lo = jnp.where(in_dot, spans[..., 0] + prims.dot_origin[..., 1, None], 1)
    dot_hi = jnp.where(in_dot, spans[..., 1] + prims.dot_origin[..., 1, None], 0)
    return (jnp.concatenate([lo[:, None], dot_lo], axis=1), jnp.concatenate([hi[:, None], dot_hi], axis=1))


_LINE_INKS = (LINE_INK, DOT_START_INK, DOT_END_INK)


def _line_step(img, j, cols, lo, hi):
    """Paint line j, then its start dot, then its end dot, from their row spans."""
    x = cols[None, :]
    for k, ink in enumerate(_LINE_INKS):
        on = (x >= lo[j, k][:, None]) & (x <= hi[j, k][:, None])
        img = jnp.where(on[..., None], jnp.asarray(ink, jnp.uint8), img)
    return img


def _shade(base, rows, cols, prims: PackedPrimitives, tiles=None, line_spacing: int = 0, unroll=True):
    """The whole drawing sequence on the pixels rows x cols (``base`` holds their original
    values, (h, w, 3) uint8). Without ``tiles`` labels are skipped. ``unroll`` writes the
    primitives out (XLA fuses them into one pass); otherwise they run in loops (small graph)."""
    img = base
    n_boxes, n_lines = prims.box_rect.shape[0], prims.line_quad.shape[0]

    def box(i, im):
        return _box_step(im, i, rows, cols, prims, tiles, line_spacing)

    if unroll:
        for i in range(n_boxes):
            img = box(i, img)
    elif n_boxes:
        img = jax.lax.fori_loop(0, n_boxes, box, img)
    if n_lines:
        lo, hi = _line_spans(rows, prims)
        if unroll:
            for j in range(n_lines):
                img = _line_step(img, j, cols, lo, hi)
        else:
            img = jax.lax.fori_loop(0, n_lines, lambda j, im: _line_step(im, j, cols, lo, hi), img)
    return img


def render_one(image, prims: PackedPrimitives, draw_labels: bool = True):
    """Render one image (H, W, 3) uint8 with its unbatched primitives (vmap this over a batch).

    One dense pass evaluates every outline, line and dot at every pixel; labels only touch small
    windows, so each label line's window is then recomputed from the original pixels with the
    full sequence (labels included) and written back. Windows may overlap: each holds the final
    values, so the order of the write-backs does not matter.
    """
    height, width = image.shape[:2]
    rows = jnp.arange(height, dtype=jnp.int32)
    cols = jnp.arange(width, dtype=jnp.int32)
    out = _shade(image, rows, cols, prims)
    n_boxes, n_label_lines = prims.label_glyphs.shape[:2]
    if not draw_labels or n_boxes * n_label_lines == 0:
        return out
    atlas = load_atlas()
    tiles = _label_tiles(prims, jnp.asarray(atlas.glyphs, jnp.int32), _tile_width(prims.label_glyphs.shape[-1]))
    gh, tile_w = tiles.shape[2:]
    h, w = min(gh, height), min(tile_w, width)

    def window(n, out):
        i, r = n // n_label_lines, n % n_label_lines
        # A static-size window covering every in-image pixel of the tile: start clamped inside.
        top = jnp.clip(prims.label_origin[i, 1] + r * atlas.line_spacing, 0, height - h)
        left = jnp.clip(prims.label_origin[i, 0], 0, width - w)
        base = jax.lax.dynamic_slice(image, (top, left, 0), (h, w, 3))
        patch = _shade(base, top + jnp.arange(h, dtype=jnp.int32), left + jnp.arange(w, dtype=jnp.int32),
                       prims, tiles, atlas.line_spacing, unroll=False)
        return jax.lax.dynamic_update_slice(out, patch, (top, left, 0))

    return jax.lax.fori_loop(0, n_boxes * n_label_lines, window, out)


@functools.partial(jax.jit, static_argnames=("draw_labels",))
def _render_batch(images, prims, draw_labels):
    return jax.vmap(lambda im, p: render_one(im, p, draw_labels))(images, prims)


def render_batch(images, prims: PackedPrimitives, draw_labels: bool = True):
    """Render a batch: ``images`` uint8 (B, H, W, 3) (jax or numpy), ``prims`` from
    ``pack_primitives`` with the same B and image size. Returns a jax uint8 (B, H, W, 3)."""
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
    if prims.box_rect.shape[0] != images.shape[0]:
        raise ValueError(f"primitives were packed for {prims.box_rect.shape[0]} images, got {images.shape[0]}")
    check_image_size(images.shape[1], images.shape[2])
    return _render_batch(images, prims, bool(draw_labels))


def bucket(n: int, floor: int = 1) -> int:
    """``n`` rounded up to a power of two (at least ``floor``), so padded shapes -- hence
    compilations -- repeat across calls."""
    return max(int(floor), 1 << max(0, int(n) - 1).bit_length())


def chunk_bucket(length: int) -> int:
    """A length rounded up for padding: a power of two up to 64, then a multiple of an
    eighth of the next power of two (at most ~25% padding, four widths per octave)."""
    width = bucket(length)
    if width <= 64:
        return width
    step = width // 8
    return -(-length // step) * step


def pack_bucketed(per_image: Sequence[tuple[Sequence[Box], Sequence[Line]]], *,
                  image_hw: tuple[int, int]) -> PackedPrimitives:
    """``pack_primitives`` with every maximum taken from the data and rounded up to a power of two
    (boxes and lines at least 4, label glyphs at least 16): batches of similar drawings share one
    compiled renderer."""
    per_image = [(tuple(boxes), tuple(lines)) for boxes, lines in per_image]
    extents = [label_extent(b.label) for boxes, _ in per_image for b in boxes] or [(1, 1)]
    return pack_primitives(per_image, max_boxes=bucket(max(len(b) for b, _ in per_image), 4),
                           max_lines=bucket(max(len(ln) for _, ln in per_image), 4),
                           max_label_len=bucket(max(c for _, c in extents), 16), image_hw=image_hw,
                           max_label_lines=bucket(max(r for r, _ in extents), 1))


def render_jax(image, boxes: Sequence[Box], lines: Sequence[Line], draw_labels: bool = True) -> np.ndarray:
    """Single-image convenience over ``render_batch``; returns a new uint8 (H, W, 3) numpy array."""
    img = drawable_rgb(image)
    prims = pack_bucketed([(boxes, lines)], image_hw=img.shape[:2])
    return np.asarray(render_batch(img[None], prims, draw_labels)[0])
