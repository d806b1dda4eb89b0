"""Mazes: the reference geometry, walls drawn where the maze has them, answers checked by an
independent search, drawn coordinates on the cell centres of docs/method.md §6, and benchmark
options that a reader who never sees the maze cannot tell apart."""

from __future__ import annotations

import dataclasses
import functools
from collections import deque

import numpy as np
import pytest

from drawing_ops import Box, Line, parse_tool_calls
from synth import maze
from synth.benchmarks import BUILTIN, HELDOUT_SPLIT
from synth.maze import MazeConfig, make_sample

from synth_helpers import (cached_samples, chance_bound, edit_distance, kth_smallest, leaks, medoid,
                           option_texts, text_policies)

STEP = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def spec_center(n: int, i: int, j: int) -> tuple[float, float]:
    """docs/method.md §6 at 616 px: x in [77, 555], y in [73, 549]."""
    cw, ch = 478 / n, 476 / n
    return 77 + cw / 2 + j * cw, 73 + ch / 2 + i * ch


def scaled_center(size: int, n: int, i: int, j: int) -> tuple[float, float]:
    x0, y0 = int(size * 0.125), int(size * 0.12)
    x1, y1 = size - int(size * 0.1), size - int(size * 0.11)
    cw, ch = (x1 - x0) / n, (y1 - y0) / n
    return x0 + cw / 2 + j * cw, y0 + ch / 2 + i * ch


def is_open(meta: dict, a, b) -> bool:
    (i, j), (k, m) = a, b
    n = meta["maze"]["n"]
    if not (0 <= k < n and 0 <= m < n):
        return False
    if i == k and abs(j - m) == 1:
        return bool(meta["maze"]["open_right"][i][min(j, m)])
    if j == m and abs(i - k) == 1:
        return bool(meta["maze"]["open_down"][min(i, k)][j])
    return False


def walk(meta: dict, moves: list[str]):
    cell = tuple(meta["start"])
    for mv in moves:
        nxt = (cell[0] + STEP[mv][0], cell[1] + STEP[mv][1])
        if not is_open(meta, cell, nxt):
            return None
        cell = nxt
    return cell


def all_shortest(meta: dict):
    """(length, number of shortest paths, cells on every shortest path) by a BFS of our own."""
    n = meta["maze"]["n"]
    start, goal = tuple(meta["start"]), tuple(meta["goal"])
    dist, ways = {start: 0}, {start: 1}
    queue = deque([start])
    while queue:
        c = queue.popleft()
        for d in STEP.values():
            nb = (c[0] + d[0], c[1] + d[1])
            if not is_open(meta, c, nb):
                continue
            if nb not in dist:
                dist[nb], ways[nb] = dist[c] + 1, 0
                queue.append(nb)
            if dist[nb] == dist[c] + 1:
                ways[nb] += ways[c]
    assert len(dist) == n * n, "every cell of the maze is reachable"
    return dist[goal], ways[goal]


def test_geometry_matches_the_reference_at_616():
    for n in range(3, 9):
        geo = maze.Geometry.of(616, n)
        assert (geo.x0, geo.y0, geo.x1, geo.y1) == (77, 73, 555, 549)
        for i in range(n):
            for j in range(n):
                assert geo.center((i, j)) == pytest.approx(spec_center(n, i, j), abs=1e-9)


@pytest.mark.parametrize("n", range(3, 9))
def test_616_images_draw_walls_on_the_reference_grid(n):
    sample = make_sample(3, n, MazeConfig(min_n=n, max_n=n, size=616))
    meta, image = sample.meta, sample.images[0]
    assert image.shape == (616, 616, 3) and meta["grid_size"] == n
    cw, ch = 478 / n, 476 / n
    black = lambda x, y: bool((image[int(round(y)), int(round(x))] < 60).all())  # noqa: E731
    for i in range(n):
        for j in range(n - 1):   # the wall between (i, j) and (i, j+1): x = 77 + (j+1) cw, at the cell's mid height
            x, y = 77 + (j + 1) * cw, 73 + (i + 0.5) * ch
            assert black(x, y) == (not meta["maze"]["open_right"][i][j]), (i, j)
    for i in range(n - 1):
        for j in range(n):
            x, y = 77 + (j + 0.5) * cw, 73 + (i + 1) * ch
            assert black(x, y) == (not meta["maze"]["open_down"][i][j]), (i, j)
    # the outer frame
    assert black(77, 300) and black(555, 300) and black(300, 73) and black(300, 549)
    # start (green) and goal (red) discs at their cell centres (off-centre, clear of the letter)
    for key, channel in (("start", 1), ("goal", 0)):
        x, y = spec_center(n, *meta[key])
        px = image[int(y + 0.22 * ch), int(x)]
        assert px[channel] > 150 and px[channel] == px.max(), (key, px)


def test_answers_are_right_by_independent_search():
    seen = set()
    for sample in cached_samples("maze", "none", n=24):
        meta = sample.meta
        kind = meta["question_kind"]
        seen.add(kind)
        length, ways = all_shortest(meta)
        assert ways == 1, "the shortest route is unique, so every question has one answer"
        moves = meta["moves"]
        assert walk(meta, moves) == tuple(meta["goal"]) and len(moves) == length
        chosen = sample.options["ABCD".index(sample.answer)].split(". ", 1)[1]
        assert len(sample.options) == 4 and len(set(sample.options)) == 4
        if kind == "route":
            for opt in sample.options:
                text = opt.split(". ", 1)[1]
                reaches = walk(meta, maze.parse_route(text)) == tuple(meta["goal"])
                assert reaches == (text == chosen), (text, chosen)
        elif kind == "length":
            assert int(chosen) == length
        elif kind == "turns":
            turns = sum(a != b for a, b in zip(moves, moves[1:]))
            assert int(chosen) == turns
        else:
            path = {tuple(meta["start"])}
            cell = tuple(meta["start"])
            for mv in moves:
                cell = (cell[0] + STEP[mv][0], cell[1] + STEP[mv][1])
                path.add(cell)
            on = [d for d, c in meta["marks"].items() if tuple(c) in path]
            assert len(on) == 1 and chosen == f"cell {on[0]}"
    assert seen == set(maze.QUESTION_KINDS)


def test_loops_option_makes_cycles_and_keeps_answers_unique():
    for i in range(6):
        sample = make_sample(5, i, MazeConfig(size=160, min_n=5, max_n=7, loop_fraction=0.3))
        meta = sample.meta
        n = meta["grid_size"]
        passages = np.sum(meta["maze"]["open_right"]) + np.sum(meta["maze"]["open_down"])
        assert passages > n * n - 1, "a loop maze has more passages than a spanning tree"
        assert all_shortest(meta)[1] == 1


def _check_line_on_route(meta, size, line: Line):
    n = meta["grid_size"]
    centers = {(i, j): scaled_center(size, n, i, j) for i in range(n) for j in range(n)}

    def cell_at(p):
        c = min(centers, key=lambda c: (centers[c][0] - p[0]) ** 2 + (centers[c][1] - p[1]) ** 2)
        assert abs(centers[c][0] - p[0]) <= 0.5 and abs(centers[c][1] - p[1]) <= 0.5, (p, centers[c])
        return c

    a, b = cell_at(line.start_point_2d), cell_at(line.end_point_2d)
    assert a[0] == b[0] or a[1] == b[1], "a traced stretch is straight"
    step = (np.sign(b[0] - a[0]), np.sign(b[1] - a[1]))
    cell = a
    while cell != b:   # every wall it crosses is open
        nxt = (cell[0] + int(step[0]), cell[1] + int(step[1]))
        assert is_open(meta, cell, nxt), (cell, nxt)
        cell = nxt
    return a, b


@pytest.mark.parametrize("trajectory", ["cold", "reflective"])
def test_drawn_coordinates_land_on_cell_centres(trajectory):
    for sample in cached_samples("maze", trajectory):
        meta, size = sample.meta, sample.meta["size"]
        n = meta["grid_size"]
        mistake = meta.get("mistake", {}).get("step")
        assistant = sample.assistant_turns()
        traced = []
        for step, text in enumerate(assistant, start=1):
            for act in parse_tool_calls(text).actions:
                if step == mistake:
                    continue
                if isinstance(act, Line):
                    traced.append(_check_line_on_route(meta, size, act))
                else:
                    target = {"start": meta["start"], "goal": meta["goal"]}.get(act.label)
                    if target is None:
                        target = meta["marks"][act.label.split()[-1]]
                    cx, cy = scaled_center(size, n, *target)
                    x1, y1, x2, y2 = act.bbox_2d
                    assert x1 < cx < x2 and y1 < cy < y2, (act, target)
                    # the box holds the whole marker: every pixel of the start / goal disc
                    if act.label in ("start", "goal"):
                        colour = maze.START if act.label == "start" else maze.GOAL
                        ys, xs = np.nonzero((sample.images[0] == colour).all(axis=-1))
                        near = (abs(xs - cx) < 0.5 * (x2 - x1)) & (abs(ys - cy) < 0.5 * (y2 - y1))
                        assert near.any()
                        assert xs[near].min() >= x1 and xs[near].max() <= x2
                        assert ys[near].min() >= y1 and ys[near].max() <= y2
        # the traced stretches chain from start to goal
        assert traced[0][0] == tuple(meta["start"]) and traced[-1][1] == tuple(meta["goal"])
        assert all(a[1] == b[0] for a, b in zip(traced, traced[1:]))


def test_reflective_maze_mistakes_are_really_wrong():
    for sample in cached_samples("maze", "reflective"):
        mistake = sample.meta["mistake"]
        text = sample.assistant_turns()[mistake["step"] - 1]
        wrong = [a for a in parse_tool_calls(text).actions if a.label == mistake["label"]][0]
        n, size = sample.meta["grid_size"], sample.meta["size"]
        if isinstance(wrong, Box):
            true_cell = sample.meta["goal"]
            cx, cy = scaled_center(size, n, *true_cell)
            x1, y1, x2, y2 = wrong.bbox_2d
            assert not (x1 < cx < x2 and y1 < cy < y2), "the wrong goal box misses the goal"
        else:
            right = next(ln for ln in sample.lines if ln.label == wrong.label)
            assert wrong.start_point_2d == right.start_point_2d
            assert wrong.end_point_2d != right.end_point_2d, "the wrong stretch ends in another cell"


# -- the options alone do not give the answer away ------------------------------------------------

BLIND_RECORDS = 1000   # records of the synth-maze benchmark: 200+ of each question kind


@functools.lru_cache(maxsize=None)
def benchmark_samples(n: int = BLIND_RECORDS) -> tuple:
    """The first n synth-maze records, drawn at 48 px (the size changes only the image)."""
    bench = BUILTIN["synth-maze"]
    config = dataclasses.replace(bench.config, size=48)
    return tuple(make_sample(bench.seed, i, config, split=HELDOUT_SPLIT) for i in range(n))


def questions_of(kind: str) -> list:
    return [(s.question, option_texts(s), "ABCD".index(s.answer)) for s in benchmark_samples()
            if s.question_kind == kind]


moves_of = maze.parse_route
ROUTE_POLICIES = {
    **text_policies(),
    "medoid route (edit distance over moves)": medoid(lambda a, b: edit_distance(moves_of(a), moves_of(b))),
    "most moves": lambda q, opts: max(range(4), key=lambda i: len(moves_of(opts[i]))),
    "fewest moves": lambda q, opts: min(range(4), key=lambda i: len(moves_of(opts[i]))),
    "most runs": lambda q, opts: max(range(4), key=lambda i: opts[i].count(",")),
    "fewest runs": lambda q, opts: min(range(4), key=lambda i: opts[i].count(",")),
}
NUMBER_POLICIES = {**text_policies(), **{f"number of rank {k}": kth_smallest(k) for k in range(4)}}


def test_blind_sample_is_the_benchmark():
    bench = BUILTIN["synth-maze"]
    for small, full in zip(benchmark_samples()[:3], bench.samples(3)):
        assert (small.question, small.options, small.answer, small.meta["path"]) == \
            (full.question, full.options, full.answer, full.meta["path"])


@pytest.mark.parametrize("kind, policies", [("route", ROUTE_POLICIES), ("turns", NUMBER_POLICIES),
                                            ("length", NUMBER_POLICIES), ("marked", text_policies())])
def test_blind_policies_stay_at_chance(kind, policies):
    questions = questions_of(kind)
    assert len(questions) >= 200
    assert not leaks(questions, policies), f"bound {chance_bound(len(questions)):.3f}"


def test_benchmark_options_are_exact_and_wrong_routes_are_real_routes():
    """One right option each. A wrong route follows the corridors to another cell, or, only where the
    maze has too few other ends, is an edit that runs into a wall or off the grid."""
    real = total = 0
    for sample in benchmark_samples():
        meta, kind, texts = sample.meta, sample.question_kind, option_texts(sample)
        right = "ABCD".index(sample.answer)
        assert len(set(texts)) == 4
        if kind == "route":
            ends = [walk(meta, maze.parse_route(text)) for text in texts]
            assert [e == tuple(meta["goal"]) for e in ends].count(True) == 1 and ends[right] == tuple(meta["goal"])
            real += sum(e is not None for e in ends) - 1
            total += 3
        elif kind in ("turns", "length"):
            moves = meta["moves"]
            truth = len(moves) if kind == "length" else sum(a != b for a, b in zip(moves, moves[1:]))
            assert int(texts[right]) == truth and all(int(t) >= 0 for t in texts)
    assert real >= 0.95 * total, "wrong routes are mostly real routes to other cells"
