"""Static 2D scenes: a few flat shapes (shape, colour, size) placed without overlap on a plain
background, with exact pixel masks and boxes, and multiple-choice questions:

  relation - is X left of / right of / above / below Y (only asked when one direction clearly
             dominates and the boxes are separated along it);
  closest  - which of the listed objects is closest to X (centre distances, clear margin);
  count    - how many objects of a shape there are;
  size     - which of the listed objects is largest / smallest (pixel area, clear margin).

Trajectories box the objects the question is about, draw helper lines (from Y to X, from X to
each candidate, across each candidate's width) and answer from the drawn coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drawing_ops import Box, Line
from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from synth import raster, templates
from synth.records import Sample, lettered, option_letter
from synth.rng import sample_id, sample_rng
from synth.trajectory import Item, Step, ThinkStyle, write_trajectory

FAMILY = "static"
QUESTION_KINDS = ("relation", "closest", "count", "size")
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
          "star": "stars", "hexagon": "hexagons"}
COLORS = {
    "red": (220, 50, 47), "green": (50, 160, 70), "blue": (40, 90, 200), "yellow": (230, 190, 30),
    "purple": (140, 70, 170), "orange": (245, 130, 40), "brown": (130, 85, 45), "pink": (235, 110, 175),
}
SIZES = {"small": 0.055, "medium": 0.08, "large": 0.115}   # radius as a share of the short side
BACKGROUNDS = ((246, 246, 246), (250, 246, 236), (236, 242, 250))
RELATIONS = ("left", "right", "above", "below")


@dataclass(frozen=True)
class StaticConfig:
    width: int = 448
    height: int = 448
    min_objects: int = 3
    max_objects: int = 6
    question_kinds: tuple[str, ...] = QUESTION_KINDS

    def __post_init__(self):
        if min(self.width, self.height) < 64:
            raise ValueError(f"static scenes need images of at least 64x64 px, got {self.width}x{self.height}")
        raster.check_side("a static scene", self.width, self.height)
        if not 3 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(f"object counts must satisfy 3 <= min_objects <= max_objects <= 8, "
                             f"got {self.min_objects}..{self.max_objects}")
        bad = set(self.question_kinds) - set(QUESTION_KINDS)
        if bad or not self.question_kinds:
            raise ValueError(f"question_kinds must be a non-empty subset of {QUESTION_KINDS}, got {self.question_kinds}")


@dataclass
class Obj:
    name: str
    shape: str
    color: str
    size: str
    center: tuple[float, float]
    radius: float
    mask: np.ndarray
    tight: tuple[int, int, int, int]       # inclusive pixel bounds of the mask

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def box_center(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.tight
        return round((x0 + x1) / 2), round((y0 + y1) / 2)

    def padded_box(self, pad: int, width: int, height: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = self.tight
        return max(0, x0 - pad), max(0, y0 - pad), min(width - 1, x1 + pad), min(height - 1, y1 + pad)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": self.shape, "color": self.color, "size": self.size,
                "center": [round(self.center[0], 2), round(self.center[1], 2)], "radius": round(self.radius, 2),
                "tight_box": list(self.tight), "area": self.area}


def circumradius(shape: str, r: float) -> float:
    """The radius of the circle around the shape's centre that holds all of it."""
    return 0.8 * math.sqrt(2) * r if shape == "square" else r


def shape_mask(shape: str, h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return raster.disk_mask(h, w, cx, cy, r)
    if shape == "square":
        return raster.rect_mask(h, w, cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r)
    if shape == "diamond":
        return raster.polygon_mask(h, w, [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)])
    if shape == "triangle":
        pts = [(cx + r * math.sin(a), cy - r * math.cos(a)) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
        return raster.polygon_mask(h, w, pts)
    if shape == "hexagon":
        pts = [(cx + r * math.cos(k * math.pi / 3), cy + r * math.sin(k * math.pi / 3)) for k in range(6)]
        return raster.polygon_mask(h, w, pts)
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.45 * r
            a = k * math.pi / 5
            pts.append((cx + rad * math.sin(a), cy - rad * math.cos(a)))
        return raster.polygon_mask(h, w, pts)
    raise ValueError(f"unknown shape {shape!r}")


def _pad(config: StaticConfig) -> int:
    return 4 if min(config.width, config.height) >= 256 else 2


def place_objects(rng: np.random.Generator, config: StaticConfig) -> list[Obj]:
    w, h = config.width, config.height
    short = min(w, h)
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    kinds = [(c, s) for c in COLORS for s in SHAPES]
    chosen = [kinds[k] for k in rng.choice(len(kinds), count, replace=False)]
    objs: list[Obj] = []
    gap = 0.05 * short + 2 * _pad(config)
    for color, shape in chosen:
        size = list(SIZES)[int(rng.integers(len(SIZES)))]
        r = SIZES[size] * short
        extent = circumradius(shape, r)
        for _ in range(200):
            cx = float(rng.uniform(extent + gap / 2, w - extent - gap / 2))
            cy = float(rng.uniform(extent + gap / 2, h - extent - gap / 2))
            if all(math.hypot(cx - o.center[0], cy - o.center[1]) >= extent + circumradius(o.shape, o.radius) + gap
                   for o in objs):
                break
        else:
            return []
        mask = shape_mask(shape, h, w, cx, cy, r)
        objs.append(Obj(f"{color} {shape}", shape, color, size, (cx, cy), r, mask, raster.mask_bbox(mask)))
    return objs


def render(objs: list[Obj], config: StaticConfig, background) -> np.ndarray:
    image = raster.canvas(config.height, config.width, background)
    for o in objs:
        raster.fill(image, o.mask, COLORS[o.color])
    return image


# -- questions ------------------------------------------------------------------------------------

def relation_of(a: Obj, b: Obj) -> str | None:
    """The clearly dominant direction of a relative to b, or None when it is not clear-cut."""
    (ax, ay), (bx, by) = a.box_center, b.box_center
    dx, dy = ax - bx, ay - by
    if abs(dx) >= 2 * abs(dy):
        if dx < 0 and a.tight[2] < b.tight[0]:
            return "left"
        if dx > 0 and a.tight[0] > b.tight[2]:
            return "right"
    if abs(dy) >= 2 * abs(dx):
        if dy < 0 and a.tight[3] < b.tight[1]:
            return "above"
        if dy > 0 and a.tight[1] > b.tight[3]:
            return "below"
    return None


def _dist(a: Obj, b: Obj) -> float:
    (ax, ay), (bx, by) = a.box_center, b.box_center
    return math.hypot(ax - bx, ay - by)


def _box_area(o: Obj) -> int:
    x0, y0, x1, y1 = o.tight
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def _try_question(kind: str, objs: list[Obj], rng):
    """(question, options, answer index, facts) or None when this scene cannot ask `kind` cleanly."""
    if kind == "relation":
        pairs = [(a, b, relation_of(a, b)) for a in objs for b in objs if a is not b]
        pairs = [p for p in pairs if p[2]]
        if not pairs:
            return None
        a, b, rel = pairs[int(rng.integers(len(pairs)))]
        order = [RELATIONS[k] for k in rng.permutation(4)]
        q = f"Where is the {a.name} relative to the {b.name}?"
        opts = [{"left": "to the left of it", "right": "to the right of it", "above": "above it",
                 "below": "below it"}[r] for r in order]
        return q, opts, order.index(rel), {"a": a.name, "b": b.name, "relation": rel}
    if kind == "closest":
        for x in rng.permutation(len(objs)):
            target = objs[int(x)]
            others = sorted((o for o in objs if o is not target), key=lambda o: _dist(o, target))
            if len(others) < 3 or _dist(others[1], target) < 1.25 * _dist(others[0], target):
                continue
            cands = others[:4]
            order = [cands[k] for k in rng.permutation(len(cands))]
            q = f"Which of these objects is closest to the {target.name}?"
            return (q, [o.name for o in order], order.index(others[0]),
                    {"target": target.name, "candidates": [o.name for o in order], "closest": others[0].name})
        return None
    if kind == "count":
        shapes = sorted({o.shape for o in objs})
        shape = shapes[int(rng.integers(len(shapes)))]
        n = sum(o.shape == shape for o in objs)
        if n == len(objs):
            return None
        values = {n}
        for d in rng.permutation([-2, -1, 1, 2, 3]):
            if len(values) == 4:
                break
            if n + int(d) >= 0:
                values.add(n + int(d))
        order = [int(v) for v in rng.permutation(sorted(values))]
        q = f"How many {PLURAL[shape]} are in the image?"
        return q, [str(v) for v in order], order.index(n), {"shape": shape, "count": n}
    if kind == "size":
        largest = bool(rng.random() < 0.5)
        cands = [objs[int(k)] for k in rng.permutation(len(objs))[:4]]
        if len(cands) < 3:
            return None
        key = (lambda o: o.area) if largest else (lambda o: -o.area)
        ranked = sorted(cands, key=key, reverse=True)
        win, second = ranked[0], ranked[1]
        ratio = win.area / second.area if largest else second.area / win.area
        box_ok = all((_box_area(win) > 1.15 * _box_area(o)) if largest else (_box_area(win) * 1.15 < _box_area(o))
                     for o in ranked[1:])
        if ratio < 1.3 or not box_ok:
            return None
        word = "largest" if largest else "smallest"
        q = f"Which of these objects is the {word}?"
        return q, [o.name for o in cands], cands.index(win), {"which": word, "candidates": [o.name for o in cands],
                                                              "winner": win.name}
    raise ValueError(kind)


# -- sample ---------------------------------------------------------------------------------------

def make_sample(seed: int, index: int, config: StaticConfig = StaticConfig(), trajectory: str = "none",
                split: str = "train", backend: str = "numpy",
                template: PromptTemplate = DEFAULT_TEMPLATE, think: ThinkStyle = ThinkStyle.FULL) -> Sample:
    rng = sample_rng(FAMILY, seed, split, index)
    kinds = list(config.question_kinds)
    kind = kinds[int(rng.integers(len(kinds)))]
    for attempt in range(500):
        objs = place_objects(rng, config)
        if not objs:
            continue
        got = _try_question(kind, objs, rng)
        if got is not None:
            break
        if attempt % 20 == 19:           # this kind is hard for this config; try another
            kind = kinds[int(rng.integers(len(kinds)))]
    else:
        raise RuntimeError(f"could not make a static-scene question for {config}")
    question, options, answer_idx, facts = got
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    image = render(objs, config, background)
    pad = _pad(config)
    boxes = [Box(1, o.padded_box(pad, config.width, config.height), o.name) for o in objs]
    sample = Sample(
        id=sample_id(FAMILY, seed, split, index), family=FAMILY, question=question, options=lettered(options),
        answer=option_letter(answer_idx), problem_type="multiple choice", data_type="single_view",
        images=[image], boxes=boxes, lines=[],
        meta={"question_kind": kind, "facts": facts, "objects": [o.to_json() for o in objs],
              "width": config.width, "height": config.height, "box_pad": pad},
    )
    steps, mistake = plan_steps(sample, objs, facts, config, rng, reflective=trajectory == "reflective")
    sample.lines = [Line(1, it.start, it.end, it.label) for st in steps if not st.mistake for it in st.items
                    if it.start is not None]
    if trajectory == "none":
        return sample
    if mistake:
        sample.meta["mistake"] = mistake
    return write_trajectory(sample, steps, trajectory, backend=backend, template=template, think=think)


# -- trajectory plan ------------------------------------------------------------------------------

_BOX_THINK = {
    "relation": ["{opener} The question compares the {a} and the {b}. I box both of them.",
                 "{opener} I need the positions of the {a} and the {b}; boxes will make them explicit."],
    "closest": ["{opener} The reference is the {target}; the candidates are {cands}. I box all of them.",
                "{opener} To compare distances from the {target} I first box it and each candidate: {cands}."],
    "count": ["{opener} I scan the image for {plural} and box every one I find: {found}.",
              "{opener} Looking for {plural}, I see {found}. I box each of them."],
    "size": ["{opener} The candidates are {cands}. I box them to compare their extents.",
             "{opener} I box {cands} so their sizes can be compared directly."],
}


def _obj(objs, name) -> Obj:
    return next(o for o in objs if o.name == name)


def plan_steps(sample: Sample, objs: list[Obj], facts: dict, config: StaticConfig, rng, reflective: bool):
    kind = sample.meta["question_kind"]
    pad = _pad(config)
    W, H = config.width, config.height

    def box_item(o: Obj, label: str | None = None) -> Item:
        return Item(1, label or o.name, bbox=o.padded_box(pad, W, H))

    opener = templates.pick(rng, templates.OPENERS)
    if kind == "relation":
        a, b = _obj(objs, facts["a"]), _obj(objs, facts["b"])
        first = [box_item(a), box_item(b)]
        think1 = templates.pick(rng, _BOX_THINK[kind], opener=opener, a=a.name, b=b.name)
        lines = [Item(1, f"{b.name} to {a.name}", start=b.box_center, end=a.box_center)]
        (ax, ay), (bx, by) = a.box_center, b.box_center
        think2 = (f"The {a.name} is centred near {templates.fmt_point(a.box_center)} and the {b.name} near "
                  f"{templates.fmt_point(b.box_center)}. A line from the {b.name} to the {a.name} will show the "
                  "direction between them.")
        dx, dy = ax - bx, ay - by
        horiz = f"{abs(dx)} px to the {'right' if dx > 0 else 'left'}"
        vert = f"{abs(dy)} px {'down' if dy > 0 else 'up'}"
        body = (f"The line runs {horiz} and {vert}, so the dominant direction is "
                f"{'horizontal' if abs(dx) > abs(dy) else 'vertical'}: the {a.name} is "
                f"{ {'left': 'to the left of', 'right': 'to the right of', 'above': 'above', 'below': 'below'}[facts['relation']] } "
                f"the {b.name}.")
    elif kind == "closest":
        target = _obj(objs, facts["target"])
        cands = [_obj(objs, n) for n in facts["candidates"]]
        first = [box_item(target)] + [box_item(c) for c in cands]
        think1 = templates.pick(rng, _BOX_THINK[kind], opener=opener, target=target.name,
                                cands=", ".join(c.name for c in cands))
        lines = [Item(1, f"to {c.name}", start=target.box_center, end=c.box_center) for c in cands]
        think2 = (f"Now I connect the centre of the {target.name} {templates.fmt_point(target.box_center)} with the "
                  "centre of each candidate, to compare the lengths.")
        lengths = ", ".join(f"{c.name} {round(_dist(target, c))} px" for c in cands)
        body = f"The line lengths are: {lengths}. The shortest one goes to the {facts['closest']}."
    elif kind == "count":
        shape = facts["shape"]
        hits = sorted((o for o in objs if o.shape == shape), key=lambda o: o.box_center[0])
        rest = [o for o in objs if o.shape != shape]
        first = [box_item(o) for o in hits]
        think1 = templates.pick(rng, _BOX_THINK[kind], opener=opener, plural=PLURAL[shape],
                                found=", ".join(f"the {o.name}" for o in hits))
        lines = []
        second = [box_item(o, f"other: {o.name}") for o in rest]
        think2 = ("To be sure nothing is missed, I also box the remaining objects and check their shapes: "
                  + ", ".join(f"the {o.name}" for o in rest) + f" - none of them is a {shape}.")
        body = f"The boxed {PLURAL[shape]} are {', '.join(o.name for o in hits)}: {len(hits)} in total."
    else:  # size
        cands = [_obj(objs, n) for n in facts["candidates"]]
        first = [box_item(c) for c in cands]
        think1 = templates.pick(rng, _BOX_THINK[kind], opener=opener, cands=", ".join(c.name for c in cands))
        lines = [Item(1, f"width of {c.name}", start=(c.tight[0], c.box_center[1]), end=(c.tight[2], c.box_center[1]))
                 for c in cands]
        think2 = "I measure each candidate with a horizontal line across its widest part."
        sizes = ", ".join(f"{c.name} {c.tight[2] - c.tight[0] + 1}x{c.tight[3] - c.tight[1] + 1} px"
                          for c in cands)
        body = f"The boxes measure {sizes}. The {facts['which']} of them is the {facts['winner']}."

    steps: list[Step] = []
    mistake = None
    if reflective:
        k = int(rng.integers(len(first)))
        wrong_box, why = _misplaced(first[k], objs, W, H, rng)
        wrong = list(first)
        wrong[k] = Item(1, first[k].label, bbox=wrong_box)
        steps.append(Step(think1, tuple(wrong), mistake=True))
        fix = templates.pick(rng, templates.MISTAKE_SPOTTED, img="{prev[1]}", what="box", label=first[k].label, why=why)
        steps.append(Step(fix + " I redraw the boxes on image {src[1]}.", tuple(first), correction=True))
        mistake = {"step": 1, "label": first[k].label, "kind": "box", "wrong_box": list(wrong_box)}
    else:
        steps.append(Step(think1, tuple(first)))
    check = templates.pick(rng, templates.CHECK_OK, img="{prev[1]}")
    if kind == "count":
        steps.append(Step(check + " " + think2, tuple(second)))
    else:
        steps.append(Step(check + " " + think2, tuple(lines)))
    close = templates.pick(rng, templates.ANSWER_CLOSERS, answer=sample.answer)
    letter_text = sample.options["ABCD".index(sample.answer)]
    steps.append(Step(f"{templates.pick(rng, templates.CHECK_OK, img='{prev[1]}')} {body} That is option "
                      f"{letter_text}. {close}", answer=sample.answer))
    return steps, mistake


def _misplaced(item: Item, objs: list[Obj], W: int, H: int, rng) -> tuple[tuple[int, int, int, int], str]:
    """The item's box moved off its object (clipped to the image), and why that is wrong."""
    x0, y0, x1, y1 = item.bbox
    bw, bh = x1 - x0, y1 - y0
    name = item.label.removeprefix("other: ")
    moves = [(bw + 6, 0, "right"), (-(bw + 6), 0, "left"), (0, bh + 6, "below"), (0, -(bh + 6), "above")]
    for k in rng.permutation(len(moves)):
        dx, dy, side = moves[int(k)]
        nx0, ny0 = x0 + dx, y0 + dy
        if 0 <= nx0 and nx0 + bw <= W - 1 and 0 <= ny0 and ny0 + bh <= H - 1:
            box = (nx0, ny0, nx0 + bw, ny0 + bh)
            hit = [o.name for o in objs if o.name != name and _overlaps(box, o.tight)]
            where = f"it lies on the {hit[0]}" if hit else "it covers empty background"
            return box, f"{where}, {side} of the {name}"
    # no room to move it whole: shrink it into one corner instead
    box = (x0, y0, x0 + max(2, bw // 4), y0 + max(2, bh // 4))
    return box, f"it is far too small and covers only the corner of the {name}"


def _overlaps(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])
