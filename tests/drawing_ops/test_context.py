"""VisualContext: every rule of docs/method.md §2, and byte equality with an independent replica of the
reference pipeline (dict-of-lists merge + PIL drawing)."""

import numpy as np
import pytest
from PIL import Image, ImageColor, ImageDraw

from drawing_ops import (Annotations, Box, Line, ToolFormatError, ToolIndexError, TooManyImages,
                         VisualContext, merge_by_label, parse_tool_calls, plan_turn, render)

REFERENCE_COLORS = ["red", "green", "blue", "yellow", "orange", "pink", "purple", "brown", "gray", "beige",
                    "turquoise", "cyan", "magenta", "lime", "navy", "maroon", "teal", "olive", "coral",
                    "lavender", "violet", "gold", "silver"] + list(ImageColor.colormap)


def scene(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def B(index, label, x1=10, y1=10, x2=50, y2=40):
    return Box(index, (x1, y1, x2, y2), label)


def L(index, label, a=(5, 5), b=(60, 70)):
    return Line(index, a, b, label)


# ---- an independent replica of the reference's bookkeeping and drawing -------------------------

def reference_draw(pixels, boxes, lines, draw_labels=True):
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for i, box in enumerate(boxes):
        color = REFERENCE_COLORS[i % len(REFERENCE_COLORS)]
        x1, y1, x2, y2 = (int(box["bbox_2d"][0] / w * w), int(box["bbox_2d"][1] / h * h),
                          int(box["bbox_2d"][2] / w * w), int(box["bbox_2d"][3] / h * h))
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
        draw.rectangle(((x1, y1), (x2, y2)), outline=color, width=4)
        if draw_labels:
            draw.text((x1 + 8, y1 + 6), box["label"], fill=color)
    for line in lines:
        (xs, ys), (xe, ye) = ([int(v) / s * s for v, s in zip(p, (w, h))]
                              for p in (line["start_point_2d"], line["end_point_2d"]))
        draw.line((xs, ys, xe, ye), fill="black", width=4)
        for (x, y), color in (((xs, ys), "red"), ((xe, ye), "blue")):
            draw.ellipse([(x - 4, y - 4), (x + 4, y + 4)], fill=color)
    return np.asarray(img)


def reference_merge(origin: dict, new: list, source: int, target: int) -> bool:
    if not new:
        return False
    by_label = {item["label"]: item for item in new}
    merged = [by_label.pop(item["label"]) if item["label"] in by_label else item for item in origin.get(source, [])]
    origin[target] = merged + list(by_label.values())
    return True


def reference_pipeline(images, turn_texts, draw_labels=True):
    images = [im.copy() for im in images]
    boxes = {i: [] for i in range(len(images))}
    lines = {i: [] for i in range(len(images))}
    for text in turn_texts:
        parsed = parse_tool_calls(text)
        groups = {}
        for act in parsed.boxes:
            groups.setdefault(act.index, ([], []))[0].append(act.to_json())
        for act in parsed.lines:
            groups.setdefault(act.index, ([], []))[1].append(act.to_json())
        first_new = len(images)
        for n, (index, (new_boxes, new_lines)) in enumerate(groups.items()):
            src, dst = index - 1, first_new + n
            got_boxes = reference_merge(boxes, new_boxes, src, dst)
            got_lines = reference_merge(lines, new_lines, src, dst)
            if not got_boxes:
                boxes[dst] = list(boxes[src])
            if not got_lines:
                lines[dst] = list(lines[src])
            images.append(reference_draw(images[src], boxes[dst], lines[dst], draw_labels))
    return images


TURNS = [
    # boxes on image 1 -> image 2
    '<think>a</think> Action: Object Mapper\n```json\n[{"index": 1, "bbox_2d": [10, 12, 60, 50], "label": "cup"},'
    ' {"index": 1, "bbox_2d": [90.7, 30.2, 70.1, 80.9], "label": "book"}]\n```',
    # a line on image 2 (inherits its boxes) and a box on image 1 in one block -> images 3 (from 1), 4 (from 2)
    '<think>b</think> Action: Path Tracer\n```json\n[{"index": 2, "start_point_2d": [20, 30], "end_point_2d": [140, 100],'
    ' "label": "route"}, {"index": 1, "bbox_2d": [100, 10, 150, 60], "label": "lamp"}]\n```',
    # reflective: redraw 'cup' on image 4 in place (keeps colour slot 0), add a new box, replace the line
    "<think>c</think> Action: Object Mapper\n```json\n[{'index': 4, 'bbox_2d': [15, 15, 55, 55], 'label': 'cup'},"
    " {'index': 4, 'bbox_2d': [0, 90, 30, 119], 'label': 'mat'},"
    " {'index': 4, 'start_point_2d': [140, 10], 'end_point_2d': [10, 110], 'label': 'route'}]\n```",
]


BOX_TURNS = [  # the same story with boxes only, for the fast backends' byte-exact comparison
    TURNS[0],
    '<think>b</think> Action: Object Mapper\n```json\n[{"index": 2, "bbox_2d": [30, 60, 140, 110], "label": "rug"},'
    ' {"index": 1, "bbox_2d": [100, 10, 150, 60], "label": "lamp"}]\n```',
    "<think>c</think> Action: Object Mapper\n```json\n[{'index': 3, 'bbox_2d': [15, 15, 55, 55], 'label': 'cup'},"
    " {'index': 3, 'bbox_2d': [0, 90, 30, 119], 'label': 'mat'}]\n```",
]


@pytest.mark.parametrize("backend", ["pil", "numpy", "jax"])
def test_context_matches_reference_pipeline(backend):
    """PIL backend: the whole reference output, labels and lines included, byte for byte.
    NumPy/JAX: byte for byte on box-only turns (their lines follow our own documented rule)."""
    inputs = [scene(seed=1)]
    turns = TURNS if backend == "pil" else BOX_TURNS
    expected = reference_pipeline(inputs, turns, draw_labels=(backend == "pil"))
    ctx = VisualContext(inputs, backend=backend, draw_labels=(backend == "pil"))
    for text in turns:
        ctx.apply(parse_tool_calls(text, num_images=len(ctx)).actions)
    assert len(ctx) == len(expected)
    for got, want in zip(ctx.images, expected):
        np.testing.assert_array_equal(got, want)


def test_turn_bookkeeping_follows_spec():
    ctx = VisualContext([scene()], backend="numpy")
    for text in TURNS:
        ctx.apply(parse_tool_calls(text).actions)
    assert [b.label for b in ctx.boxes(2)] == ["cup", "book"] and ctx.lines(2) == ()
    assert [b.label for b in ctx.boxes(3)] == ["lamp"] and ctx.lines(3) == ()          # from image 1
    assert [b.label for b in ctx.boxes(4)] == ["cup", "book"]                          # inherited boxes
    assert [ln.label for ln in ctx.lines(4)] == ["route"]
    assert [b.label for b in ctx.boxes(5)] == ["cup", "book", "mat"]                   # replaced in place
    assert ctx.boxes(5)[0].bbox_2d == (15, 15, 55, 55)
    assert ctx.lines(5)[0].start_point_2d == (140, 10)                                 # line replaced
    assert ctx.boxes(1) == () and ctx.lines(1) == ()                                   # inputs untouched


def test_one_new_image_per_source_in_order_boxes_then_lines():
    ctx = VisualContext([scene(seed=0), scene(seed=1), scene(seed=2)])
    new = ctx.apply([L(3, "l"), B(2, "a"), B(1, "b"), L(2, "m"), B(2, "c")])
    assert new == [4, 5, 6]
    # sources: boxes first by appearance (2, 1), then lines (3)
    assert [b.label for b in ctx.boxes(4)] == ["a", "c"] and [x.label for x in ctx.lines(4)] == ["m"]
    assert [b.label for b in ctx.boxes(5)] == ["b"] and ctx.lines(5) == ()
    assert ctx.boxes(6) == () and [x.label for x in ctx.lines(6)] == ["l"]


def test_drawn_on_copy_of_source_pixels_and_old_strokes_stay():
    base = scene()
    ctx = VisualContext([base], draw_labels=False)
    ctx.apply([B(1, "x", 10, 10, 50, 50)])
    ctx.apply([B(2, "x", 80, 60, 120, 100)])  # move the same label
    np.testing.assert_array_equal(ctx.images[0], base)
    moved_only = render(base, [B(1, "x", 80, 60, 120, 100)], [], draw_labels=False)
    on_drawn = render(ctx.images[1], [B(1, "x", 80, 60, 120, 100)], [], draw_labels=False)
    np.testing.assert_array_equal(ctx.images[2], on_drawn)
    assert not np.array_equal(ctx.images[2], moved_only)  # the first stroke is still in the pixels
    np.testing.assert_array_equal(ctx.images[2][10, 10:50], ctx.images[1][10, 10:50])


def test_replaced_label_keeps_its_colour_slot():
    ctx = VisualContext([np.zeros((60, 60, 3), np.uint8)], draw_labels=False)
    ctx.apply([B(1, "a", 2, 2, 20, 20), B(1, "b", 30, 30, 50, 50)])
    ctx.apply([B(2, "a", 5, 5, 25, 25)])
    assert [b.label for b in ctx.boxes(3)] == ["a", "b"]
    assert tuple(ctx.images[2][5, 10]) == (255, 0, 0)      # 'a' stays first: red
    assert tuple(ctx.images[2][30, 40]) == (0, 128, 0)     # 'b' stays second: PIL's 'green'


def test_repeated_label_in_one_turn_last_value_first_position():
    merged = merge_by_label((B(1, "k"),), [B(1, "n", 1, 1, 2, 2), B(1, "k", 3, 3, 4, 4), B(1, "n", 5, 5, 6, 6)])
    assert [(b.label, b.bbox_2d[0]) for b in merged] == [("k", 3), ("n", 5)]


def test_errors_are_atomic():
    ctx = VisualContext([scene()], max_images=3)
    with pytest.raises(ToolIndexError, match="image 2"):
        ctx.apply([B(1, "ok"), B(2, "missing")])
    assert len(ctx) == 1
    with pytest.raises(ToolFormatError):
        ctx.apply([])
    ctx.apply([B(1, "a")])
    with pytest.raises(TooManyImages):
        ctx.apply([B(1, "b"), B(2, "c")])   # would make images 3 and 4 > cap 3
    assert len(ctx) == 2 and len(ctx.annotations) == 2
    assert ctx.apply([B(2, "c")]) == [3]


def test_plan_is_pure():
    annotations = [Annotations(boxes=(B(1, "a"),))]
    jobs = plan_turn(annotations, [B(1, "b"), L(1, "l")])
    assert annotations == [Annotations(boxes=(B(1, "a"),))]
    assert len(jobs) == 1 and jobs[0].source == 1
    assert [b.label for b in jobs[0].annotations.boxes] == ["a", "b"]


def test_inputs_of_other_forms():
    gray = np.full((20, 30), 7, np.uint8)
    rgba = np.zeros((20, 30, 4), np.uint8)
    ctx = VisualContext([gray, rgba, Image.new("L", (30, 20))])
    assert all(im.shape == (20, 30, 3) and im.dtype == np.uint8 for im in ctx.images)
    with pytest.raises(ValueError, match="uint8"):
        VisualContext([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="shape"):
        VisualContext([np.zeros((4, 4, 2), np.uint8)])
    with pytest.raises(TooManyImages):
        VisualContext([gray] * 3, max_images=2)
