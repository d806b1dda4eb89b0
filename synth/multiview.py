"""Multi-view 3D scenes: a few primitive objects on a checkered floor (tiles 0.5 m), seen by one
camera from 2-4 poses (software renderer in `synth.render3d`), with questions

  motion         - how the camera moved between image 1 and image 2 (multiple choice);
  vci            - the same as view-change inference, answered as "move_right:0.6,rotate_left:20"
                   (docs/method.md §4 "vci": metres and degrees, net values per axis pair);
  correspondence - which box in image 2 holds the object boxed in image 1 (objects of one shape and
                   size in two colours; the camera circles the scene by 60-120 degrees);
  direction      - from the viewpoint of image k, is X left of / right of / in front of / behind Y;
  distance       - how far apart two objects stand on the floor, in metres (scored by MRA).

The options of the multiple-choice kinds alone do not give the answer away (tests/synth/
test_synth_multiview.py plays blind policies against the benchmark): the letters are shuffled, a
motion question draws its answer before the scene (not all scenes fit every motion), a direction
question its relation before the two objects, and a correspondence question's boxes are of objects
alike but for colour seen from far apart, so the asked box's place, size and outline do not point
to its match.

Camera motion is expressed in the frame of the first camera: move_right along its horizontal
right axis, move_forward along its horizontal heading, move_up along the world vertical,
rotate_right = clockwise change of heading seen from above, rotate_up = change of pitch. Motions
are drawn already rounded (0.1 m, 1 degree), so the answer recomputed from the two poses equals
the stored answer exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drawing_ops import Box, Line
from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from synth import raster, render3d, templates
from synth.records import Sample, lettered, option_letter
from synth.render3d import Camera, Mesh
from synth.rng import sample_id, sample_rng
from synth.trajectory import Item, Step, ThinkStyle, write_trajectory

FAMILY = "multiview"
QUESTION_KINDS = ("motion", "vci", "correspondence", "direction", "distance")
COLORS = {"red": (200, 45, 40), "green": (45, 150, 60), "blue": (40, 80, 190), "yellow": (225, 185, 30),
          "purple": (130, 60, 160), "white": (235, 235, 235)}
SHAPES = ("cube", "box", "cylinder", "sphere", "cone")
VCI_AXES = (("move_right", "move_left"), ("move_up", "move_down"), ("move_forward", "move_backward"),
            ("rotate_right", "rotate_left"), ("rotate_up", "rotate_down"))


@dataclass(frozen=True)
class MultiviewConfig:
    width: int = 448
    height: int = 336
    min_objects: int = 3
    max_objects: int = 5
    max_views: int = 4
    question_kinds: tuple[str, ...] = QUESTION_KINDS

    def __post_init__(self):
        if self.width < 96 or self.height < 72:
            raise ValueError(f"multi-view images need at least 96x72 px, got {self.width}x{self.height}")
        raster.check_side("a multi-view image", self.width, self.height)
        if not 3 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError("object counts must satisfy 3 <= min_objects <= max_objects <= 6")
        if not 2 <= self.max_views <= 4:
            raise ValueError(f"max_views must be 2..4, got {self.max_views}")
        bad = set(self.question_kinds) - set(QUESTION_KINDS)
        if bad or not self.question_kinds:
            raise ValueError(f"question_kinds must be a non-empty subset of {QUESTION_KINDS}, got {self.question_kinds}")


@dataclass
class Obj3D:
    name: str
    shape: str
    color: str
    xy: tuple[float, float]
    radius: float            # footprint radius
    height: float
    mesh: Mesh

    def to_json(self) -> dict:
        return {"name": self.name, "shape": self.shape, "color": self.color,
                "xy": [round(self.xy[0], 4), round(self.xy[1], 4)], "radius": round(self.radius, 4),
                "height": round(self.height, 4), "center": [round(float(v), 4) for v in self.mesh.center]}


@dataclass(frozen=True)
class Motion:
    """Camera motion in the first camera's frame; metres and degrees, already rounded."""

    right: float = 0.0
    up: float = 0.0
    forward: float = 0.0
    yaw_right: float = 0.0
    pitch_up: float = 0.0

    def apply(self, cam: Camera) -> Camera:
        heading = np.array([math.cos(cam.yaw), math.sin(cam.yaw), 0.0])
        right = np.array([math.sin(cam.yaw), -math.cos(cam.yaw), 0.0])
        pos = np.asarray(cam.position) + self.right * right + self.forward * heading + np.array([0, 0, self.up])
        return Camera(tuple(float(v) for v in pos), cam.yaw - math.radians(self.yaw_right),
                      cam.pitch + math.radians(self.pitch_up), cam.width, cam.height, cam.fov_x)

    def vci(self) -> str:
        return motion_to_vci(self.right, self.up, self.forward, self.yaw_right, self.pitch_up)


def motion_between(a: Camera, b: Camera) -> tuple[float, float, float, float, float]:
    """(right, up, forward, yaw_right, pitch_up) of camera b relative to camera a."""
    d = np.asarray(b.position) - np.asarray(a.position)
    heading = np.array([math.cos(a.yaw), math.sin(a.yaw), 0.0])
    right = np.array([math.sin(a.yaw), -math.cos(a.yaw), 0.0])
    yaw = -math.degrees(b.yaw - a.yaw)
    yaw = (yaw + 180.0) % 360.0 - 180.0
    return float(d @ right), float(d[2]), float(d @ heading), yaw, math.degrees(b.pitch - a.pitch)


def _fmt(v: float) -> str:
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return text or "0"


def motion_to_vci(right, up, forward, yaw_right, pitch_up, eps: float = 1e-6) -> str:
    parts = []
    for (pos, neg), value in zip(VCI_AXES, (right, up, forward, yaw_right, pitch_up)):
        if abs(value) > eps:
            parts.append(f"{pos if value > 0 else neg}:{_fmt(abs(value))}")
    return ",".join(parts)


def parse_vci(text: str) -> dict[str, float]:
    """'move_right:0.6,rotate_left:20' -> net value per positive axis name (missing axes 0)."""
    net = {pos: 0.0 for pos, _ in VCI_AXES}
    sign = {pos: (pos, 1.0) for pos, _ in VCI_AXES} | {neg: (pos, -1.0) for pos, neg in VCI_AXES}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, value = part.split(":")
        axis, s = sign[name.strip()]
        net[axis] += s * float(value)
    return net


# -- scene sampling -------------------------------------------------------------------------------

def _make_object(shape: str, color: str, x: float, y: float, rng) -> Obj3D:
    rgb = COLORS[color]
    if shape == "cube":
        s = float(rng.uniform(0.3, 0.45))
        mesh = render3d.cuboid(x, y, s, s, s, float(rng.uniform(0, math.pi / 2)), rgb)
        return Obj3D("", shape, color, (x, y), s * 0.71, s, mesh)
    if shape == "box":
        sx, sy, sz = float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.5, 0.8))
        mesh = render3d.cuboid(x, y, sx, sy, sz, float(rng.uniform(0, math.pi / 2)), rgb)
        return Obj3D("", shape, color, (x, y), math.hypot(sx, sy) / 2, sz, mesh)
    if shape == "cylinder":
        r, h = float(rng.uniform(0.14, 0.22)), float(rng.uniform(0.3, 0.7))
        return Obj3D("", shape, color, (x, y), r, h, render3d.cylinder(x, y, r, h, rgb))
    if shape == "cone":
        r, h = float(rng.uniform(0.16, 0.24)), float(rng.uniform(0.4, 0.7))
        return Obj3D("", shape, color, (x, y), r, h, render3d.cone(x, y, r, h, rgb))
    r = float(rng.uniform(0.15, 0.25))
    return Obj3D("", "sphere", color, (x, y), r, 2 * r, render3d.sphere(x, y, r, rgb))


def _scene(rng, config: MultiviewConfig, lookalikes: bool) -> list[Obj3D]:
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    if lookalikes:   # few colours and shapes, so some objects look the same
        colors = [list(COLORS)[k] for k in rng.choice(len(COLORS), 2, replace=False)]
        shapes = [SHAPES[k] for k in rng.choice(len(SHAPES), 2, replace=False)]
        kinds = [(colors[int(rng.integers(2))], shapes[int(rng.integers(2))]) for _ in range(count)]
    else:
        pool = [(c, s) for c in COLORS for s in SHAPES]
        kinds = [pool[k] for k in rng.choice(len(pool), count, replace=False)]
    return _place(rng, kinds, lambda shape, color, x, y: _make_object(shape, color, x, y, rng))


def _twin_scene(rng, config: MultiviewConfig) -> list[Obj3D]:
    """The scene of a correspondence question: objects of one shape and one size in two colours (both
    present), all placed, or [] when they do not fit. Objects that differ only in colour leave the
    size and shape of a box no hint of which object it holds (a tall box and a flat cone would keep
    their outlines from any side); the other colour gives a landmark."""
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    colors = [list(COLORS)[k] for k in rng.choice(len(COLORS), 2, replace=False)]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    size_seed = int(rng.integers(2**32))   # every object draws the same size (and turn) from it
    picks = [colors[int(rng.integers(2))] for _ in range(count)]
    if len(set(picks)) < 2:
        return []
    objs = _place(rng, [(c, shape) for c in picks],
                  lambda shape, color, x, y: _make_object(shape, color, x, y, np.random.default_rng(size_seed)))
    return objs if len(objs) == count else []


def _place(rng, kinds, make) -> list[Obj3D]:
    """Objects of the given (colour, shape) kinds at random floor spots clear of each other (one that
    finds no spot in 100 tries is left out), named "red cube", or "red cube #2" when it has twins."""
    objs: list[Obj3D] = []
    for color, shape in kinds:
        for _ in range(100):
            x, y = (float(v) for v in rng.uniform(-1.1, 1.1, size=2))
            obj = make(shape, color, x, y)
            if all(math.hypot(x - o.xy[0], y - o.xy[1]) >= obj.radius + o.radius + 0.25 for o in objs):
                objs.append(obj)
                break
    seen: dict[str, int] = {}
    for o in objs:
        base = f"{o.color} {o.shape}"
        seen[base] = seen.get(base, 0) + 1
    counter: dict[str, int] = {}
    for o in objs:
        base = f"{o.color} {o.shape}"
        counter[base] = counter.get(base, 0) + 1
        o.name = base if seen[base] == 1 else f"{base} #{counter[base]}"
    return objs


def _first_camera(rng, config: MultiviewConfig) -> Camera:
    az = float(rng.uniform(0, 2 * math.pi))
    dist = float(rng.uniform(3.4, 4.2))
    height = float(rng.uniform(1.4, 1.9))
    pos = (dist * math.cos(az), dist * math.sin(az), height)
    target = np.array([0.0, 0.0, 0.25])
    d = target - np.array(pos)
    yaw = math.atan2(d[1], d[0])
    pitch = math.atan2(d[2], math.hypot(d[0], d[1]))
    return Camera(pos, yaw, pitch, config.width, config.height)


def _random_motion(rng, kind: str) -> Motion:
    def amount(lo, hi, step):
        return round(float(rng.uniform(lo, hi)) / step) * step * (1 if rng.random() < 0.5 else -1)

    if kind == "motion":     # one clear translation and one clear turn
        t = round(amount(0.4, 0.9, 0.1), 1)
        yaw = float(round(amount(12, 25, 1)))
        if rng.random() < 0.5:
            return Motion(right=t, yaw_right=yaw)
        return Motion(forward=t, yaw_right=yaw)
    right = round(amount(0.2, 0.8, 0.1), 1)
    forward = round(amount(0.2, 0.7, 0.1), 1) if rng.random() < 0.7 else 0.0
    up = round(amount(0.1, 0.3, 0.1), 1) if rng.random() < 0.3 else 0.0
    yaw = float(round(amount(5, 25, 1)))
    pitch = float(round(amount(3, 8, 1))) if rng.random() < 0.3 else 0.0
    return Motion(right=right, up=up, forward=forward, yaw_right=yaw, pitch_up=pitch)


@dataclass(frozen=True)
class MotionClass:
    """What a motion question asks: along which axis the camera moved, which way, and which way it turned."""

    axis: str    # "right" (sideways) or "forward"
    move: int    # +1: right / forward, -1: left / backward
    turn: int    # +1: turned right, -1: turned left


def _draw_motion_class(rng) -> MotionClass:
    axis = "right" if rng.random() < 0.5 else "forward"
    return MotionClass(axis, int(rng.choice([1, -1])), int(rng.choice([1, -1])))


def _motion_of(rng, cls: MotionClass) -> Motion:
    """A motion of the given class, with the amounts of _random_motion's "motion" kind."""
    t = round(round(float(rng.uniform(0.4, 0.9)) / 0.1) * 0.1 * cls.move, 1)
    yaw = float(round(float(rng.uniform(12, 25))) * cls.turn)
    return Motion(right=t, yaw_right=yaw) if cls.axis == "right" else Motion(forward=t, yaw_right=yaw)


def _orbit(rng, first: Camera, lo: float = 60.0, hi: float = 120.0) -> Motion:
    """The camera circles the scene centre (where the first camera aims) by lo..hi degrees either way
    and turns to keep facing it: right = d sin a, forward = d (1 - cos a), a turn of a the other way."""
    deg = float(round(float(rng.uniform(lo, hi)))) * (1 if rng.random() < 0.5 else -1)
    d = math.hypot(first.position[0], first.position[1])
    a = math.radians(deg)
    return Motion(right=round(d * math.sin(a), 1), forward=round(d * (1 - math.cos(a)), 1), yaw_right=-deg)


def _task_draws(rng, kind: str) -> dict:
    """How make_sample draws the scene and moves the camera for `kind`, as keyword arguments of
    _sample_scene_and_views (none: as the perception data draws them, synth.perception).

    A motion question fixes its answer first and then draws scenes until one fits, as the scenes that
    fit the views favour some answers (moving left while turning left sweeps the scene out of the
    picture). A correspondence question circles the scene with objects alike but for colour, as with
    a small move every object keeps its place in the picture and with different objects its box's
    outline: the boxes' numbers alone would give the answer away."""
    if kind == "motion":
        cls = _draw_motion_class(rng)
        return {"motion": lambda r, first: _motion_of(r, cls)}
    if kind == "correspondence":
        return {"motion": _orbit, "scene": _twin_scene}
    return {}


@dataclass
class View:
    camera: Camera
    rendered: render3d.Rendered
    boxes: list[tuple[int, int, int, int] | None]   # per object: tight inclusive bounds of visible pixels


def _view_ok(cam: Camera, objs: list[Obj3D], margin: float = 3.0) -> bool:
    """Every vertex of every object well in front of the camera and `margin` px inside the picture
    (all objects projected at once: scene sampling calls this many times)."""
    pix, z = cam.project(np.concatenate([o.mesh.triangles.reshape(-1, 3) for o in objs]))
    if (z < 0.5).any():
        return False
    u, v = pix[:, 0], pix[:, 1]
    return bool((u >= margin).all() and (u <= cam.width - margin).all()
                and (v >= margin).all() and (v <= cam.height - margin).all())


def _render_view(cam: Camera, objs: list[Obj3D]) -> View | None:
    rendered = render3d.render(cam, [o.mesh for o in objs])
    boxes = []
    for k, o in enumerate(objs):
        visible = rendered.ids == k
        n = int(visible.sum())
        if n < 12 or n < 0.6 * rendered.coverage[k]:
            return None
        ys, xs = np.nonzero(visible)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    return View(cam, rendered, boxes)


def _sample_scene_and_views(rng, config: MultiviewConfig, kind: str, motion=None, scene=None, tries: int = 400,
                            cameras: int = 1):
    """Objects and views that show every object well. `scene(rng, config)` draws the objects (default:
    _scene, with look-alikes for a correspondence question) and `motion(rng, first_camera)` moves the
    camera from the first view to each other one (default: _random_motion for `kind`); each of up to
    `tries` scenes gets up to `cameras` draws of the cameras."""
    n_views = 2 if kind in ("motion", "vci", "correspondence") else int(rng.integers(2, config.max_views + 1))
    for _ in range(tries):
        objs = _scene(rng, config, lookalikes=kind == "correspondence") if scene is None else scene(rng, config)
        if len(objs) < 3:
            continue
        for _ in range(cameras):
            cams = [_first_camera(rng, config)]
            motions = []
            for _ in range(n_views - 1):
                m = _random_motion(rng, kind) if motion is None else motion(rng, cams[0])
                motions.append(m)
                cams.append(m.apply(cams[0]))
            if not all(_view_ok(c, objs) for c in cams):
                continue
            views = [_render_view(c, objs) for c in cams]
            if all(v is not None for v in views):
                return objs, views, motions
    raise RuntimeError(f"could not place a multi-view scene for {config}")


# -- questions ------------------------------------------------------------------------------------

def _pad(config: MultiviewConfig) -> int:
    return 3 if min(config.width, config.height) >= 200 else 1


def _padded(box, config: MultiviewConfig):
    p = _pad(config)
    x0, y0, x1, y1 = box
    return max(0, x0 - p), max(0, y0 - p), min(config.width - 1, x1 + p), min(config.height - 1, y1 + p)


def _center(box) -> tuple[int, int]:
    return round((box[0] + box[2]) / 2), round((box[1] + box[3]) / 2)


MOTION_WORDS = {"right": "moved right", "left": "moved left", "forward": "moved forward", "backward": "moved backward"}


def _motion_phrase(t_dir: str, yaw_right: float) -> str:
    return f"{MOTION_WORDS[t_dir]} and turned {'right' if yaw_right > 0 else 'left'}"


def direction_of(objs, cam: Camera, a: int, b: int) -> str | None:
    """Where object a is relative to object b, seen from `cam`: left/right (camera x) or in
    front/behind (camera depth), only when one clearly dominates."""
    ca = cam.to_camera(objs[a].mesh.center)
    cb = cam.to_camera(objs[b].mesh.center)
    dx, dz = ca[0] - cb[0], ca[2] - cb[2]
    if abs(dx) >= 2 * abs(dz) and abs(dx) >= 0.3:
        return "right" if dx > 0 else "left"
    if abs(dz) >= 2 * abs(dx) and abs(dz) >= 0.3:
        return "behind" if dz > 0 else "in front"
    return None


DIRECTION_TEXT = {"left": "to the left of it", "right": "to the right of it",
                  "in front": "in front of it (closer to the camera)", "behind": "behind it (farther from the camera)"}


def make_sample(seed: int, index: int, config: MultiviewConfig = MultiviewConfig(), trajectory: str = "none",
                split: str = "train", backend: str = "numpy",
                template: PromptTemplate = DEFAULT_TEMPLATE, think: ThinkStyle = ThinkStyle.FULL) -> Sample:
    rng = sample_rng(FAMILY, seed, split, index)
    kinds = list(config.question_kinds)
    for _ in range(50):
        kind = kinds[int(rng.integers(len(kinds)))]
        objs, views, motions = _sample_scene_and_views(rng, config, kind, **_task_draws(rng, kind), cameras=10)
        got = _question(kind, objs, views, motions, config, rng)
        if got is not None:
            break
    else:
        raise RuntimeError(f"could not make a multi-view question for {config}")
    question, options, answer, problem_type, facts = got
    images = [v.rendered.image for v in views]
    boxes = [Box(k + 1, _padded(v.boxes[i], config), o.name) for k, v in enumerate(views) for i, o in enumerate(objs)]
    meta = {"question_kind": kind, "facts": facts, "objects": [o.to_json() for o in objs],
            "cameras": [v.camera.to_json() for v in views],
            "motions": [m.__dict__ for m in motions], "tile_m": render3d.TILE,
            "visible_boxes": [[list(b) for b in v.boxes] for v in views]}
    sample = Sample(id=sample_id(FAMILY, seed, split, index), family=FAMILY, question=question,
                    options=lettered(options) if options else [], answer=answer, problem_type=problem_type,
                    data_type="multi_view", images=images, boxes=boxes, lines=[], meta=meta)
    steps, mistake = plan_steps(sample, objs, views, facts, config, rng, reflective=trajectory == "reflective")
    sample.lines = [Line(it.view, it.start, it.end, it.label) for st in steps if not st.mistake
                    for it in st.items if it.start is not None]
    if trajectory == "none":
        return sample
    if mistake:
        sample.meta["mistake"] = mistake
    return write_trajectory(sample, steps, trajectory, backend=backend, template=template, think=think)


def _question(kind, objs, views, motions, config, rng):
    n_views = len(views)
    intro = (f"The {n_views} images show the same scene from different camera positions; the floor tiles are "
             f"0.5 m squares. ")
    if kind == "motion":
        m = motions[0]
        t_dir = ("right" if m.right > 0 else "left") if m.right else ("forward" if m.forward > 0 else "backward")
        pair = ("right", "left") if m.right else ("forward", "backward")
        opts = [_motion_phrase(d, y) for d in pair for y in (1, -1)]
        correct = _motion_phrase(t_dir, m.yaw_right)
        order = [opts[k] for k in rng.permutation(4)]
        q = intro + "How did the camera move from image 1 to image 2?"
        return q, order, option_letter(order.index(correct)), "multiple choice", {"motion": m.__dict__}
    if kind == "vci":
        m = motions[0]
        q = intro + ("Infer the camera's motion from image 1 to image 2: how far did it move right/left, up/down "
                     "and forward/backward (metres), and how much did it rotate right/left and up/down (degrees)?")
        return q, [], m.vci(), "vci", {"motion": m.__dict__}
    if kind == "correspondence":
        if len(objs) < 3:
            return None
        target = int(rng.integers(len(objs)))
        others = [k for k in rng.permutation(len(objs)) if k != target][:3]
        cands = [target] + [int(k) for k in others]
        order = [cands[k] for k in rng.permutation(len(cands))]
        tbox = _padded(views[0].boxes[target], config)
        q = intro + (f"The object inside the box {templates.fmt_box(tbox)} of image 1 also appears in image 2. "
                     "Which box of image 2 holds it?")
        opts = [templates.fmt_box(_padded(views[1].boxes[k], config)) for k in order]
        if len(set(opts)) < len(opts):   # two objects with one box: no single right option
            return None
        return q, opts, option_letter(order.index(target)), "multiple choice", {
            "target": target, "candidates": order, "target_box": list(tbox)}
    if kind == "direction":
        k = int(rng.integers(n_views))
        pairs = [(a, b) for a in range(len(objs)) for b in range(len(objs)) if a != b
                 and "#" not in objs[a].name and "#" not in objs[b].name]
        pairs = [(a, b, direction_of(objs, views[k].camera, a, b)) for a, b in pairs]
        pairs = [p for p in pairs if p[2]]
        if not pairs:
            return None
        # the relation first, uniform among those the view shows, so that none is the likely answer
        present = [r for r in DIRECTION_TEXT if any(p[2] == r for p in pairs)]
        rel = present[int(rng.integers(len(present)))]
        pairs = [p for p in pairs if p[2] == rel]
        a, b, rel = pairs[int(rng.integers(len(pairs)))]
        order = [list(DIRECTION_TEXT)[j] for j in rng.permutation(4)]
        q = intro + f"Seen from the camera of image {k + 1}, where is the {objs[a].name} relative to the {objs[b].name}?"
        return q, [DIRECTION_TEXT[r] for r in order], option_letter(order.index(rel)), "multiple choice", {
            "view": k + 1, "a": a, "b": b, "relation": rel}
    # distance
    pairs = [(a, b) for a in range(len(objs)) for b in range(a + 1, len(objs))
             if "#" not in objs[a].name and "#" not in objs[b].name]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    d = math.hypot(objs[a].xy[0] - objs[b].xy[0], objs[a].xy[1] - objs[b].xy[1])
    q = intro + (f"How far apart are the {objs[a].name} and the {objs[b].name}, measured between their centres "
                 "along the floor, in metres?")
    return q, [], f"{d:.2f}", "regression", {"a": a, "b": b, "distance_m": d}


# -- trajectory plan ------------------------------------------------------------------------------

def plan_steps(sample: Sample, objs, views, facts, config, rng, reflective: bool):
    kind = sample.meta["question_kind"]
    W, H = config.width, config.height

    def box(view: int, k: int, label: str | None = None) -> Item:
        return Item(view, label or objs[k].name, bbox=_padded(views[view - 1].boxes[k], config))

    def center(view: int, k: int):
        return _center(views[view - 1].boxes[k])

    opener = templates.pick(rng, templates.OPENERS)
    if kind in ("motion", "vci"):
        # landmarks: the nearest and the farthest object from camera 1
        depth = [float(views[0].camera.to_camera(o.mesh.center)[2]) for o in objs]
        near, far = int(np.argmin(depth)), int(np.argmax(depth))
        first = [box(1, near), box(1, far), box(2, near), box(2, far)]
        think1 = (f"{opener} I use two landmarks visible in both images, the {objs[near].name} (near the camera) "
                  f"and the {objs[far].name} (farther away), and box them in image 1 and image 2.")
        lines = [Item(2, f"shift of {objs[k].name}", start=center(1, k), end=center(2, k)) for k in (near, far)]
        think2 = ("To see how the view changed I draw, on image {src[2]}, a line from where each landmark was in "
                  "image 1 to where it is in image 2.")
        shifts = []
        for k in (near, far):
            (x1, y1), (x2, y2) = center(1, k), center(2, k)
            shifts.append(f"the {objs[k].name} moved {abs(x2 - x1)} px {'right' if x2 > x1 else 'left'} and "
                          f"{abs(y2 - y1)} px {'down' if y2 > y1 else 'up'}")
        m = facts["motion"]
        parts = []
        if m["right"]:
            parts.append(f"a sideways move of about {_fmt(abs(m['right']))} m to the {'right' if m['right'] > 0 else 'left'}")
        if m["forward"]:
            parts.append(f"{_fmt(abs(m['forward']))} m {'forward' if m['forward'] > 0 else 'backward'}")
        if m["up"]:
            parts.append(f"{_fmt(abs(m['up']))} m {'up' if m['up'] > 0 else 'down'}")
        if m["yaw_right"]:
            parts.append(f"a turn of about {_fmt(abs(m['yaw_right']))} degrees to the "
                         f"{'right' if m['yaw_right'] > 0 else 'left'}")
        if m["pitch_up"]:
            parts.append(f"a tilt of {_fmt(abs(m['pitch_up']))} degrees {'up' if m['pitch_up'] > 0 else 'down'}")
        joined = "; ".join(shifts)
        body = (joined[0].upper() + joined[1:] + ". The near and far landmarks shift by different amounts, which "
                "separates translation (parallax) from rotation (a common shift). Together with the floor tiles "
                "as a scale this fits " + ", ".join(parts) + ".")
    elif kind == "correspondence":
        target, order = facts["target"], facts["candidates"]
        first = [Item(1, "target", bbox=tuple(facts["target_box"]))]
        first += [box(2, k, f"option {option_letter(j)}") for j, k in enumerate(order)]
        think1 = (f"{opener} I box the object from the question in image 1 and each candidate box in image 2, "
                  "so both can be compared side by side.")
        # landmark: an object that is not a candidate look-alike of the target if possible
        others = [k for k in range(len(objs)) if k != target]
        landmark = min(others, key=lambda k: (objs[k].name.split(" #")[0] == objs[target].name.split(" #")[0], k))
        lines = [Item(1, "landmark to target", start=center(1, landmark), end=center(1, target)),
                 Item(2, "landmark to match", start=center(2, landmark), end=center(2, target))]
        think2 = (f"Appearance alone may not decide it, so I use the {objs[landmark].name} as a landmark: a line "
                  "from it to the target in image 1, and from it to the object that keeps the same spatial "
                  "relation in image 2.")
        letter = sample.answer
        body = (f"In both views the line from the {objs[landmark].name} reaches an object of the same look at the "
                f"matching place in the layout; in image 2 that object is the one in option {letter}.")
    elif kind == "direction":
        v, a, b = facts["view"], facts["a"], facts["b"]
        first = [box(v, a), box(v, b)]
        think1 = f"{opener} The question is about image {v}. I box the {objs[a].name} and the {objs[b].name} there."
        lines = [Item(v, f"{objs[b].name} to {objs[a].name}", start=center(v, b), end=center(v, a))]
        think2 = f"Now a line from the {objs[b].name} to the {objs[a].name} in image {{src[{v}]}}."
        xa, xb = center(v, a)[0], center(v, b)[0]
        base_a, base_b = views[v - 1].boxes[a][3], views[v - 1].boxes[b][3]
        rel = facts["relation"]
        if rel in ("left", "right"):
            body = (f"The line runs {abs(xa - xb)} px to the {'right' if xa > xb else 'left'} while the two objects "
                    f"stand at a similar distance from the camera, so the {objs[a].name} is {DIRECTION_TEXT[rel].replace(' it', '')} "
                    f"the {objs[b].name}.")
        else:
            body = (f"The {objs[a].name} stands with its base at y={base_a} and the {objs[b].name} at y={base_b}; "
                    f"a base lower in the image is closer to the camera, so the {objs[a].name} is "
                    f"{DIRECTION_TEXT[rel].replace(' it', '')} the {objs[b].name}.")
    else:  # distance
        a, b = facts["a"], facts["b"]
        first = [box(1, a), box(1, b)]
        think1 = f"{opener} I box the {objs[a].name} and the {objs[b].name} in image 1."
        ba, bb = views[0].boxes[a], views[0].boxes[b]
        foot_a, foot_b = (_center(ba)[0], ba[3]), (_center(bb)[0], bb[3])
        lines = [Item(1, "floor distance", start=foot_a, end=foot_b)]
        think2 = ("I connect the points where the two objects stand on the floor, to count the 0.5 m tiles "
                  "the line crosses.")
        d = facts["distance_m"]
        body = (f"The line between the two bases spans roughly {d / render3d.TILE:.1f} floor tiles of 0.5 m, "
                f"so the objects are about {d:.2f} m apart.")

    steps: list[Step] = []
    mistake = None
    if reflective:
        k = int(rng.integers(len(first)))
        wrong_box, why = _misplaced(first[k], W, H, rng)
        wrong = list(first)
        wrong[k] = Item(first[k].view, first[k].label, bbox=wrong_box)
        steps.append(Step(think1, tuple(wrong), mistake=True))
        fix = templates.pick(rng, templates.MISTAKE_SPOTTED, img="{prev[%d]}" % first[k].view, what="box",
                             label=first[k].label, why=why)
        steps.append(Step(fix + " I draw this step's boxes again.", tuple(first), correction=True))
        mistake = {"step": 1, "label": first[k].label, "view": first[k].view, "kind": "box",
                   "wrong_box": list(wrong_box)}
    else:
        steps.append(Step(think1, tuple(first)))
    check_view = lines[0].view
    check = templates.pick(rng, templates.CHECK_OK, img="{prev[%d]}" % first[0].view)
    steps.append(Step(check + " " + think2, tuple(lines)))
    close = templates.pick(rng, templates.ANSWER_CLOSERS, answer=sample.answer)
    head = templates.pick(rng, templates.CHECK_OK, img="{prev[%d]}" % check_view)
    steps.append(Step(f"{head} {body} {close}", answer=sample.answer))
    return steps, mistake


def _misplaced(item: Item, W: int, H: int, rng):
    x0, y0, x1, y1 = item.bbox
    bw, bh = x1 - x0, y1 - y0
    moves = [(bw + 4, 0, "right"), (-(bw + 4), 0, "left"), (0, bh + 4, "below"), (0, -(bh + 4), "above")]
    for k in rng.permutation(len(moves)):
        dx, dy, side = moves[int(k)]
        nx0, ny0 = x0 + dx, y0 + dy
        if 0 <= nx0 and nx0 + bw <= W - 1 and 0 <= ny0 and ny0 + bh <= H - 1:
            return (nx0, ny0, nx0 + bw, ny0 + bh), f"it sits {side} of the object it should hold"
    box = (x0, y0, x0 + max(2, bw // 4), y0 + max(2, bh // 4))
    return box, "it is far too small and covers only a corner of the object"
