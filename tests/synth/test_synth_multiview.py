"""Multi-view scenes: camera motion recomputed from the stored poses with our own pinhole math,
boxes holding each object's projected centre, direction and distance answers recomputed, and
benchmark options that a reader who never sees the images cannot tell apart."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

from drawing_ops import Box, parse_tool_calls
from synth import multiview, render3d
from synth.benchmarks import BUILTIN, HELDOUT_SPLIT

from synth_helpers import cached_samples, chance_bound, leaks, option_texts, small_config, text_policies


def axes(cam):
    yaw, pitch = math.radians(cam["yaw_deg"]), math.radians(cam["pitch_deg"])
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    return right, np.cross(right, fwd), fwd


def project(cam, p):
    r, u, f = axes(cam)
    d = np.asarray(p) - np.asarray(cam["position"])
    x, y, z = d @ r, d @ u, d @ f
    focal = cam["width"] / (2 * math.tan(math.radians(cam["fov_x_deg"]) / 2))
    return cam["width"] / 2 + focal * x / z, cam["height"] / 2 - focal * y / z, z


def recomputed_motion(c1, c2) -> dict:
    yaw1 = math.radians(c1["yaw_deg"])
    d = np.asarray(c2["position"]) - np.asarray(c1["position"])
    heading = np.array([math.cos(yaw1), math.sin(yaw1), 0])
    right = np.array([math.sin(yaw1), -math.cos(yaw1), 0])
    turn_right = -(c2["yaw_deg"] - c1["yaw_deg"])
    turn_right = (turn_right + 180) % 360 - 180
    return {"move_right": d @ right, "move_up": d[2], "move_forward": d @ heading, "rotate_right": turn_right,
            "rotate_up": c2["pitch_deg"] - c1["pitch_deg"]}


def samples_of_kind(kind: str, want: int = 3):
    config = small_config("multiview", question_kinds=(kind,))
    return [multiview.make_sample(11, i, config) for i in range(want)]


def test_vci_answer_equals_the_motion_between_the_poses():
    for sample in samples_of_kind("vci"):
        assert sample.problem_type == "vci"
        c1, c2 = sample.meta["cameras"]
        truth = recomputed_motion(c1, c2)
        stated = multiview.parse_vci(sample.answer)
        for axis, value in truth.items():
            assert stated[axis] == pytest.approx(value, abs=1e-6), (axis, sample.answer)


def test_motion_choice_matches_the_poses():
    for sample in samples_of_kind("motion", 4):
        truth = recomputed_motion(*sample.meta["cameras"])
        chosen = sample.options["ABCD".index(sample.answer)].split(". ", 1)[1]
        if abs(truth["move_right"]) > abs(truth["move_forward"]):
            moved = "moved right" if truth["move_right"] > 0 else "moved left"
        else:
            moved = "moved forward" if truth["move_forward"] > 0 else "moved backward"
        turned = "turned right" if truth["rotate_right"] > 0 else "turned left"
        assert chosen == f"{moved} and {turned}"
        assert abs(truth["rotate_right"]) >= 10 and max(abs(truth["move_right"]), abs(truth["move_forward"])) >= 0.4 - 1e-9


def test_every_box_holds_its_objects_projected_centre():
    for sample in cached_samples("multiview", "none"):
        cams, objs = sample.meta["cameras"], sample.meta["objects"]
        by_name = {o["name"]: o for o in objs}
        assert len(sample.images) == len(cams) >= 2
        for box in sample.boxes:
            u, v, z = project(cams[box.index - 1], by_name[box.label]["center"])
            x1, y1, x2, y2 = box.bbox_2d
            assert z > 0 and x1 <= u <= x2 and y1 <= v <= y2, (box, u, v)


def test_correspondence_answer_box_holds_the_target_in_view_2():
    for sample in samples_of_kind("correspondence"):
        target = sample.meta["objects"][sample.meta["facts"]["target"]]
        chosen = sample.options["ABCD".index(sample.answer)].split(". ", 1)[1]
        x1, y1, x2, y2 = (int(v) for v in chosen.strip("[]").split(","))
        u, v, _ = project(sample.meta["cameras"][1], target["center"])
        assert x1 <= u <= x2 and y1 <= v <= y2
        u1, v1, _ = project(sample.meta["cameras"][0], target["center"])
        tx1, ty1, tx2, ty2 = sample.meta["facts"]["target_box"]
        assert tx1 <= u1 <= tx2 and ty1 <= v1 <= ty2


def test_direction_and_distance_answers():
    for sample in samples_of_kind("direction"):
        f = sample.meta["facts"]
        cam = sample.meta["cameras"][f["view"] - 1]
        a, b = sample.meta["objects"][f["a"]], sample.meta["objects"][f["b"]]
        r, _, fwd = axes(cam)
        d = np.asarray(a["center"]) - np.asarray(b["center"])
        lateral, depth = d @ r, d @ fwd
        if abs(lateral) > abs(depth):
            expected = "to the right of it" if lateral > 0 else "to the left of it"
        else:
            expected = "behind it (farther from the camera)" if depth > 0 else "in front of it (closer to the camera)"
        assert sample.options["ABCD".index(sample.answer)].split(". ", 1)[1] == expected
    for sample in samples_of_kind("distance"):
        f = sample.meta["facts"]
        a, b = sample.meta["objects"][f["a"]], sample.meta["objects"][f["b"]]
        assert sample.problem_type == "regression"
        assert float(sample.answer) == pytest.approx(math.dist(a["xy"], b["xy"]), abs=0.006)


def test_drawn_boxes_hold_object_centres_except_the_planted_mistake():
    for sample in cached_samples("multiview", "reflective", n=6):
        cams = sample.meta["cameras"]
        objs = {o["name"]: o for o in sample.meta["objects"]}
        mistake = sample.meta["mistake"]
        views_of = {}   # image index -> input view, rebuilt from the feedback turns
        n_inputs = len(sample.images)
        for k in range(1, n_inputs + 1):
            views_of[k] = k
        next_index = n_inputs + 1
        for step, text in enumerate(sample.assistant_turns(), start=1):
            acts = parse_tool_calls(text).actions
            sources = list(dict.fromkeys([a.index for a in acts if isinstance(a, Box)]
                                         + [a.index for a in acts if not isinstance(a, Box)]))
            for src in sources:
                views_of[next_index] = views_of[src]
                next_index += 1
            for act in acts:
                if not isinstance(act, Box) or act.label not in objs:
                    continue
                u, v, _ = project(cams[views_of[act.index] - 1], objs[act.label]["center"])
                x1, y1, x2, y2 = act.bbox_2d
                inside = x1 <= u <= x2 and y1 <= v <= y2
                planted = (step == mistake["step"] and act.label == mistake["label"]
                           and views_of[act.index] == mistake["view"])
                assert inside != planted, (sample.id, step, act)


def test_renderer_depth_order_and_ids():
    """A near cube in front of a far sphere: the id buffer shows the cube where they overlap."""
    cam = render3d.Camera((0.0, -4.0, 0.25), math.pi / 2, 0.0, 96, 72)
    far = render3d.sphere(0.0, 2.0, 1.0, (0, 0, 255))
    near = render3d.cuboid(0.0, -1.5, 0.5, 0.5, 0.5, 0.0, (255, 0, 0))
    out = render3d.render(cam, [far, near])
    u, v, _ = project({"position": [0, -4, 0.25], "yaw_deg": 90, "pitch_deg": 0, "width": 96, "height": 72,
                       "fov_x_deg": 60}, [0, -1.75, 0.25])
    assert out.ids[int(v), int(u)] == 1 and out.image[int(v), int(u), 0] > out.image[int(v), int(u), 2]
    assert (out.ids == 0).sum() < out.coverage[0], "the sphere is partly hidden behind the cube"
    assert (out.ids == 1).sum() == out.coverage[1], "nothing hides the cube"


# -- the options alone do not give the answer away ------------------------------------------------

@functools.lru_cache(maxsize=None)
def benchmark_questions(kind: str, n: int) -> tuple:
    """n questions of one kind made with the synth-multiview task config, at the smallest image size."""
    bench = BUILTIN["synth-multiview"]
    config = dataclasses.replace(bench.config, width=96, height=72, question_kinds=(kind,))
    samples = (multiview.make_sample(bench.seed, i, config, split=HELDOUT_SPLIT) for i in range(n))
    return tuple((s.question, option_texts(s), "ABCD".index(s.answer)) for s in samples)


def box_of(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.strip("[]").split(","))


def asked_box(question: str) -> tuple[int, ...]:
    return box_of("[" + question.split("box [", 1)[1].split("]", 1)[0] + "]")


def closest_box(gap):
    """The option whose box is closest to the box the question names, by `gap`."""
    return lambda q, opts: min(range(len(opts)), key=lambda i: gap(asked_box(q), box_of(opts[i])))


def _centre_gap(a, b) -> float:
    return math.dist(((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))


def _log_gap(a, b, size) -> float:
    return abs(math.log(size(b) / size(a)))


def _width(b) -> int:
    return b[2] - b[0] + 1


def _height(b) -> int:
    return b[3] - b[1] + 1


CORRESPONDENCE_POLICIES = {
    **text_policies(),
    "nearest box": closest_box(_centre_gap),
    "closest box area": closest_box(lambda a, b: _log_gap(a, b, lambda x: _width(x) * _height(x))),
    "closest box aspect": closest_box(lambda a, b: _log_gap(a, b, lambda x: _width(x) / _height(x))),
    "closest box width and height": closest_box(lambda a, b: _log_gap(a, b, _width) + _log_gap(a, b, _height)),
    "closest box bottom": closest_box(lambda a, b: abs(a[3] - b[3])),
}


def _picks(*phrases):
    """Always the first of `phrases` the options offer (else A)."""
    return lambda q, opts: next((opts.index(p) for p in phrases if p in opts), 0)


# a motion question offers the four (move, turn) pairs of one axis; these answer by the pair's signs
MOTION_POLICIES = {
    **text_policies(),
    **{f"moved {a}/{b} and turned {t}": _picks(f"moved {a} and turned {t}", f"moved {b} and turned {t}")
       for a, b in (("right", "forward"), ("left", "backward")) for t in ("right", "left")},
}
DIRECTION_POLICIES = {**text_policies(),
                      **{f"always {text!r}": _picks(text) for text in multiview.DIRECTION_TEXT.values()}}


# fewer questions than for the mazes (these scenes take ~20 ms each to draw), so the bound is looser
# (38 % for 120, 42.5 % for 80): the leaks they guard against reached 44-70 %
@pytest.mark.parametrize("kind, n, policies", [("correspondence", 120, CORRESPONDENCE_POLICIES),
                                               ("motion", 120, MOTION_POLICIES),
                                               ("direction", 80, DIRECTION_POLICIES)])
def test_blind_policies_stay_at_chance(kind, n, policies):
    questions = benchmark_questions(kind, n)
    assert not leaks(questions, policies), f"bound {chance_bound(n):.3f}"
