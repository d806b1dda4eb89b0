"""Maze tasks: perfect mazes (optionally with loops) on n x n grids, rendered with the reference's
geometry (docs/method.md §6), multiple-choice questions answered by BFS, and drawing trajectories that box
the start and goal and trace the route cell centre to cell centre.

Geometry. The reference's maze images are 616 x 616 matplotlib figures with the default subplot
margins; the grid fills x in [int(0.125 S), S - int(0.1 S)] and y in [int(0.12 S), S - int(0.11 S)]
(77..555 and 73..549 at S = 616), and cell (row i, col j) has its centre at
(x0 + cw/2 + j cw, y0 + ch/2 + i ch) with cw = (x1 - x0)/n, ch = (y1 - y0)/n. We draw with the
same formula at any `size`, in NumPy (no matplotlib), so the cell centres a model learns on our
images are the ones of the reference's images.

Questions (4 lettered options, exactly one right; start/goal pairs are chosen so that the
shortest route is unique, which makes every answer exact also for mazes with loops):
  route  - which move sequence ("right 2, down 1, ...") goes from S to G and ends there; the wrong
           options are the shortest routes from S to other cells (legal moves that stop short of G,
           run on past it or go elsewhere), and only where the maze has fewer than four such cells,
           one-edit variants of an option that run into a wall or leave the grid without reaching G;
  turns  - how many times the shortest route changes direction;
  length - how many single-cell moves the shortest route takes;
  marked - which of four numbered cells the shortest route passes through.

The options alone do not give the answer away (tests/synth/test_synth_maze.py plays blind policies
against the benchmark). The letters are shuffled. A route question draws four cells alike and makes
a random one of them G, so the right route is not the one the others resemble most. A turns or
length question draws four values from the answers of other (start, goal) pairs of the same maze
and then asks about a random one of them, so neither a value's rank nor how common such an answer
is tells which is right (mazes with too few distinct answers fall back to numbers placed around
the answer, its rank uniform as far as the smallest possible answer allows).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from synth import raster, templates
from synth.records import Sample, lettered, option_letter
from synth.rng import sample_id, sample_rng
from synth.trajectory import Item, Step, ThinkStyle, write_trajectory
from drawing_ops import Box, Line
from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate

FAMILY = "maze"
MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left"}
QUESTION_KINDS = ("route", "turns", "length", "marked")

WALL = (0, 0, 0)
GRID = (222, 222, 222)
START = (44, 160, 44)
GOAL = (214, 39, 40)
MARK = (31, 80, 180)
WHITE = (255, 255, 255)

Cell = tuple[int, int]


@dataclass(frozen=True)
class MazeConfig:
    min_n: int = 3
    max_n: int = 8
    size: int = 616                      # image side in pixels (the reference's is 616)
    loop_fraction: float = 0.0           # share of leftover interior walls removed (0: perfect maze)
    question_kinds: tuple[str, ...] = QUESTION_KINDS

    def __post_init__(self):
        if not 2 <= self.min_n <= self.max_n <= 16:
            raise ValueError(f"grid sizes must satisfy 2 <= min_n <= max_n <= 16, got {self.min_n}..{self.max_n}")
        if self.size < 8 * self.max_n:
            raise ValueError(f"size {self.size} is too small for {self.max_n}x{self.max_n} grids; use >= {8 * self.max_n}")
        raster.check_side("a maze image", self.size, self.size)
        if not 0.0 <= self.loop_fraction <= 1.0:
            raise ValueError(f"loop_fraction must be in [0, 1], got {self.loop_fraction}")
        bad = set(self.question_kinds) - set(QUESTION_KINDS)
        if bad or not self.question_kinds:
            raise ValueError(f"question_kinds must be a non-empty subset of {QUESTION_KINDS}, got {self.question_kinds}")


# -- geometry ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    size: int
    n: int
    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def of(cls, size: int, n: int) -> "Geometry":
        return cls(size, n, int(size * 0.125), int(size * 0.12), size - int(size * 0.1), size - int(size * 0.11))

    @property
    def cw(self) -> float:
        return (self.x1 - self.x0) / self.n

    @property
    def ch(self) -> float:
        return (self.y1 - self.y0) / self.n

    def center(self, cell: Cell) -> tuple[float, float]:
        i, j = cell
        return self.x0 + self.cw / 2 + j * self.cw, self.y0 + self.ch / 2 + i * self.ch

    def bounds(self, cell: Cell) -> tuple[float, float, float, float]:
        i, j = cell
        return self.x0 + j * self.cw, self.y0 + i * self.ch, self.x0 + (j + 1) * self.cw, self.y0 + (i + 1) * self.ch

    def cell_box(self, cell: Cell) -> tuple[int, int, int, int]:
        """A box a little inside the cell's walls, in whole pixels."""
        x0, y0, x1, y1 = self.bounds(cell)
        m = max(1.0, 0.1 * min(self.cw, self.ch))
        return round(x0 + m), round(y0 + m), round(x1 - m), round(y1 - m)


# -- the maze itself ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Maze:
    n: int
    open_right: np.ndarray   # (n, n-1): passage between (i, j) and (i, j+1)
    open_down: np.ndarray    # (n-1, n): passage between (i, j) and (i+1, j)

    def can_move(self, cell: Cell, move: str) -> bool:
        i, j = cell
        di, dj = MOVES[move]
        ni, nj = i + di, j + dj
        if not (0 <= ni < self.n and 0 <= nj < self.n):
            return False
        if di:
            return bool(self.open_down[min(i, ni), j])
        return bool(self.open_right[i, min(j, nj)])

    def step(self, cell: Cell, move: str) -> Cell:
        di, dj = MOVES[move]
        return cell[0] + di, cell[1] + dj

    def neighbours(self, cell: Cell):
        for move in MOVES:
            if self.can_move(cell, move):
                yield self.step(cell, move)

    def to_json(self) -> dict:
        return {"n": self.n, "open_right": self.open_right.astype(int).tolist(),
                "open_down": self.open_down.astype(int).tolist()}


def carve(n: int, rng: np.random.Generator, loop_fraction: float = 0.0) -> Maze:
    """A perfect maze by randomized depth-first carving; then `loop_fraction` of the remaining
    interior walls are removed to make loops."""
    open_right = np.zeros((n, max(n - 1, 0)), bool)
    open_down = np.zeros((max(n - 1, 0), n), bool)
    visited = np.zeros((n, n), bool)
    start = (int(rng.integers(n)), int(rng.integers(n)))
    stack = [start]
    visited[start] = True
    while stack:
        i, j = stack[-1]
        options = []
        for move, (di, dj) in MOVES.items():
            ni, nj = i + di, j + dj
            if 0 <= ni < n and 0 <= nj < n and not visited[ni, nj]:
                options.append((ni, nj))
        if not options:
            stack.pop()
            continue
        ni, nj = options[int(rng.integers(len(options)))]
        if ni != i:
            open_down[min(i, ni), j] = True
        else:
            open_right[i, min(j, nj)] = True
        visited[ni, nj] = True
        stack.append((ni, nj))
    if loop_fraction > 0:
        closed = [("r", i, j) for i in range(n) for j in range(n - 1) if not open_right[i, j]]
        closed += [("d", i, j) for i in range(n - 1) for j in range(n) if not open_down[i, j]]
        k = int(round(loop_fraction * len(closed)))
        for idx in rng.permutation(len(closed))[:k]:
            kind, i, j = closed[idx]
            (open_right if kind == "r" else open_down)[i, j] = True
    return Maze(n, open_right, open_down)


def bfs(maze: Maze, start: Cell) -> tuple[np.ndarray, np.ndarray]:
    """Distances from `start` (-1: unreachable) and the number of shortest paths to each cell."""
    dist = np.full((maze.n, maze.n), -1, np.int64)
    count = np.zeros((maze.n, maze.n), np.int64)
    dist[start], count[start] = 0, 1
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for nb in maze.neighbours(cell):
            if dist[nb] < 0:
                dist[nb] = dist[cell] + 1
                queue.append(nb)
            if dist[nb] == dist[cell] + 1:
                count[nb] += count[cell]
    return dist, count


def shortest_path(maze: Maze, start: Cell, goal: Cell) -> list[Cell]:
    """One shortest path (cells, start and goal included), walking back from the goal."""
    dist, _ = bfs(maze, start)
    if dist[goal] < 0:
        raise ValueError(f"goal {goal} is unreachable from {start}")
    path = [goal]
    while path[-1] != start:
        here = path[-1]
        path.append(next(nb for nb in maze.neighbours(here) if dist[nb] == dist[here] - 1))
    return path[::-1]


def path_moves(path: list[Cell]) -> list[str]:
    lookup = {v: k for k, v in MOVES.items()}
    return [lookup[(b[0] - a[0], b[1] - a[1])] for a, b in zip(path, path[1:])]


def runs(moves: list[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for m in moves:
        if out and out[-1][0] == m:
            out[-1] = (m, out[-1][1] + 1)
        else:
            out.append((m, 1))
    return out


def route_text(route: list[tuple[str, int]]) -> str:
    return ", ".join(f"{d} {k}" for d, k in route)


def parse_route(text: str) -> list[str]:
    moves = []
    for part in text.split(","):
        d, k = part.split()
        moves.extend([d] * int(k))
    return moves


def _walk(maze: Maze, start: Cell, moves: list[str]) -> list[Cell]:
    """The cells the moves visit, up to the first one that runs into a wall or off the grid."""
    cells = [start]
    for m in moves:
        if not maze.can_move(cells[-1], m):
            break
        cells.append(maze.step(cells[-1], m))
    return cells


def replay(maze: Maze, start: Cell, moves: list[str]) -> Cell | None:
    """Where the moves lead, or None when one runs into a wall or off the grid."""
    cell = start
    for m in moves:
        if not maze.can_move(cell, m):
            return None
        cell = maze.step(cell, m)
    return cell


# -- rendering ------------------------------------------------------------------------------------

def render(maze: Maze, geo: Geometry, start: Cell, goal: Cell, marks: dict[str, Cell] | None = None) -> np.ndarray:
    size, n = geo.size, maze.n
    image = raster.canvas(size, size, WHITE)
    t = max(1, round(size * 3 / 616))
    half = t / 2
    # faint cell grid first, so open passages are still readable as cells
    for k in range(n + 1):
        x = geo.x0 + k * geo.cw
        y = geo.y0 + k * geo.ch
        raster.fill_rect(image, round(x - 0.5), geo.y0, round(x - 0.5) + 1, geo.y1, GRID)
        raster.fill_rect(image, geo.x0, round(y - 0.5), geo.x1, round(y - 0.5) + 1, GRID)
    # markers
    r = 0.32 * min(geo.cw, geo.ch)
    scale = max(1, int(0.36 * min(geo.cw, geo.ch) / raster.GLYPH_H))
    for cell, color, letter in ((start, START, "S"), (goal, GOAL, "G")):
        cx, cy = geo.center(cell)
        raster.fill(image, raster.disk_mask(size, size, cx, cy, r), color)
        raster.draw_text_centered(image, letter, cx, cy, scale, WHITE)
    for digit, cell in (marks or {}).items():
        cx, cy = geo.center(cell)
        raster.draw_text_centered(image, digit, cx, cy, scale + 1 if min(geo.cw, geo.ch) > 40 else scale, MARK)
    # walls: interior closed walls, then the outer border

    def vwall(x, ya, yb):
        raster.fill_rect(image, round(x - half), round(ya - half), round(x - half) + t, round(yb + half), WALL)

    def hwall(y, xa, xb):
        raster.fill_rect(image, round(xa - half), round(y - half), round(xb + half), round(y - half) + t, WALL)

    for i in range(n):
        for j in range(n - 1):
            if not maze.open_right[i, j]:
                vwall(geo.x0 + (j + 1) * geo.cw, geo.y0 + i * geo.ch, geo.y0 + (i + 1) * geo.ch)
    for i in range(n - 1):
        for j in range(n):
            if not maze.open_down[i, j]:
                hwall(geo.y0 + (i + 1) * geo.ch, geo.x0 + j * geo.cw, geo.x0 + (j + 1) * geo.cw)
    vwall(geo.x0, geo.y0, geo.y1)
    vwall(geo.x1, geo.y0, geo.y1)
    hwall(geo.y0, geo.x0, geo.x1)
    hwall(geo.y1, geo.x0, geo.x1)
    return image


# -- sampling -------------------------------------------------------------------------------------

Paths = dict[Cell, list[Cell]]   # goal candidates of one start -> the (unique) shortest path to each


def _goal_candidates(maze: Maze, start: Cell) -> Paths:
    """Cells a question may send S to, with their paths: far enough (at least max(2, n-1) moves),
    reached by exactly one shortest route, and that route turns at least once."""
    n = maze.n
    dist, count = bfs(maze, start)
    min_len = max(2, n - 1)
    # a cell with one shortest route has one neighbour a step closer, itself with one route: grow
    # the routes outwards from S instead of walking each one back
    unique: Paths = {start: [start]}
    for cell in sorted(((i, j) for i in range(n) for j in range(n) if count[i, j] == 1), key=lambda c: dist[c]):
        if cell != start:
            prev = next(nb for nb in maze.neighbours(cell) if dist[nb] == dist[cell] - 1)
            unique[cell] = unique[prev] + [cell]
    out: Paths = {}
    for cell in ((i, j) for i in range(n) for j in range(n)):
        if dist[cell] >= min_len and count[cell] == 1 and len(runs(path_moves(unique[cell]))) >= 2:
            out[cell] = unique[cell]
    return out


def _draw_ends(maze: Maze, rng, cache: dict[Cell, Paths], tries: int = 30) -> tuple[Cell, Cell] | None:
    """A start (a random cell with goal candidates) and a random goal among its candidates, or None.
    `cache` keeps each start's candidates, as questions draw several pairs from one maze."""
    n = maze.n
    for _ in range(tries):
        start = (int(rng.integers(n)), int(rng.integers(n)))
        if start not in cache:
            cache[start] = _goal_candidates(maze, start)
        cand = list(cache[start])
        if cand:
            return start, cand[int(rng.integers(len(cand)))]
    return None


def _value_sets(values: dict[int, list], spread: int):
    """The 4-sets of distinct values with max - min <= spread, each weighted by how many ways the
    draws give it (the product of its values' counts)."""
    sets = [w for w in combinations(sorted(values), 4) if w[-1] - w[0] <= spread]
    return sets, [float(np.prod([len(values[v]) for v in w])) for w in sets]


def _pooled_number(maze: Maze, rng, cache, first, value, batch: int = 12, batches: int = 4, spread: int = 6):
    """A numeric question whose four options are the answers of (start, goal) pairs drawn from this
    maze: ((start, goal), options, answer index), or None when the draws never give four distinct
    values within `spread`.

    The four values are fixed first and the one asked about is then a uniform pick among them, so the
    options cannot tell which is right: not by rank, and not by which answers are common (a blind
    reader knows routes are mostly short). Numbers placed around a given answer cannot do that where
    the smallest possible answer cuts the placement off (_number_options)."""
    by_value: dict[int, list] = {}   # answer -> the drawn pairs that have it
    fresh = [first]
    for _ in range(batches):
        fresh += [d for d in (_draw_ends(maze, rng, cache) for _ in range(batch)) if d]
        for start, goal in fresh:
            by_value.setdefault(value(cache[start][goal]), []).append((start, goal))
        fresh = []
        sets, weights = _value_sets(by_value, spread)
        if sets:
            break
    else:
        return None
    chosen = sets[int(rng.choice(len(sets), p=np.asarray(weights) / sum(weights)))]
    order = [int(v) for v in rng.permutation(chosen)]
    idx = int(rng.integers(4))
    pairs = by_value[order[idx]]
    return pairs[int(rng.integers(len(pairs)))], [str(v) for v in order], idx


def _number_options(rng, correct: int, low: int, spread: int = 5) -> tuple[list[str], int]:
    """The fallback when a maze gives too few answers (_pooled_number): four distinct values, none
    below `low`, placed by a pattern of offsets {0 < p1 < p2 < p3 <= spread} that does not depend on
    `correct`, with the correct value at a rank drawn uniformly from those the lower bound allows."""
    pattern = [0] + sorted(int(v) for v in rng.choice(np.arange(1, spread + 1), 3, replace=False))
    ranks = [r for r in range(4) if correct - pattern[r] >= low]
    rank = ranks[int(rng.integers(len(ranks)))]
    values = [correct - pattern[rank] + p for p in pattern]
    order = [int(v) for v in rng.permutation(values)]
    return [str(v) for v in order], order.index(correct)


def _turns(path: list[Cell]) -> int:
    return len(runs(path_moves(path))) - 1


def _length(path: list[Cell]) -> int:
    return len(path) - 1


def _edits(route) -> list[list[tuple[str, int]]]:
    """One-edit variants of a route: one run's direction or count changed, the route reversed or mirrored."""
    cands = []
    for k, (d, c) in enumerate(route):
        for nd in MOVES:
            if nd != d:
                cands.append(route[:k] + [(nd, c)] + route[k + 1:])
        cands.append(route[:k] + [(d, c + 1)] + route[k + 1:])
        if c > 1:
            cands.append(route[:k] + [(d, c - 1)] + route[k + 1:])
    if len(route) >= 2:
        cands.append(route[::-1])
        cands.append([(OPPOSITE[d], c) for d, c in route])
    return cands


def _route_ends(cand: Paths, goal: Cell, rng) -> list[Cell]:
    """The goal and up to three other candidates of the same start, in random order. With four or more
    candidates, a uniform 4-subset with the goal a uniform member of it (not the goal plus three picked
    around it), so nothing in the four routes marks which one is right."""
    cells = list(cand)
    if len(cells) >= 4:
        return [cells[int(k)] for k in rng.choice(len(cells), 4, replace=False)]
    return [goal] + [c for c in (cells[int(k)] for k in rng.permutation(len(cells))) if c != goal]


def _route_distractors(maze: Maze, start: Cell, goal: Cell, route, others, rng) -> list[list[tuple[str, int]]]:
    """`others` (the routes to other cells) topped up to three wrong routes with one-edit variants of a
    random option, the right one included, so the right route is not the centre the edits spread from.
    No variant kept ever reaches G: replayed, each hits a wall, leaves the grid or ends elsewhere."""
    wrong = list(others)
    seen = {route_text(route)} | {route_text(w) for w in wrong}
    for _ in range(12):
        if len(wrong) == 3:
            break
        options = [route] + wrong
        base = options[int(rng.integers(len(options)))]
        cands = _edits(base)
        for idx in rng.permutation(len(cands)):
            cand = runs([m for d, c in cands[idx] for m in [d] * c])
            text = route_text(cand)
            if text in seen or goal in _walk(maze, start, [m for d, c in cand for m in [d] * c]):
                continue
            seen.add(text)
            wrong.append(cand)
            break
    return wrong


def _marks(n: int, path: list[Cell], rng) -> dict[str, Cell]:
    """Four numbered cells, one inside the route and three off it; {} when the grid has too few."""
    on = path[1:-1]
    off = [(i, j) for i in range(n) for j in range(n) if (i, j) not in path]
    if not on or len(off) < 3:
        return {}
    chosen = [on[int(rng.integers(len(on)))]] + [off[k] for k in rng.choice(len(off), 3, replace=False)]
    digits = [str(d) for d in rng.permutation([1, 2, 3, 4])]
    return dict(sorted(zip(digits, chosen)))


@dataclass(frozen=True)
class _Posed:
    """A question's ends and, for route / turns / length, its option texts and the right one's index."""

    kind: str
    start: Cell
    goal: Cell
    options: tuple[str, ...] = ()
    answer: int = -1
    marks: dict | None = None       # marked: digit -> cell


def _pose(kind: str, maze: Maze, first: tuple[Cell, Cell], cache, rng) -> _Posed | None:
    """Ends and options for a question of `kind` on this maze, or None when the maze cannot carry it."""
    start, goal = first
    if kind == "route":
        ends = _route_ends(cache[start], goal, rng)
        routes = [runs(path_moves(cache[start][c])) for c in ends]
        wrong = _route_distractors(maze, start, ends[0], routes[0], routes[1:], rng)
        if len(wrong) < 3:
            return None
        texts = [route_text(r) for r in [routes[0]] + wrong]
        order = [int(k) for k in rng.permutation(4)]
        return _Posed(kind, start, ends[0], tuple(texts[k] for k in order), order.index(0))
    if kind in ("turns", "length"):
        value, low = (_turns, 1) if kind == "turns" else (_length, 2)
        pooled = _pooled_number(maze, rng, cache, first, value)
        if pooled is not None:
            (start, goal), options, idx = pooled
            return _Posed(kind, start, goal, tuple(options), idx)
        # the bounds are the least these answers can be (goals have 2+ runs, 2+ moves)
        options, idx = _number_options(rng, value(cache[start][goal]), low)
        return _Posed(kind, start, goal, tuple(options), idx)
    marks = _marks(maze.n, cache[start][goal], rng)
    return _Posed(kind, start, goal, marks=marks) if marks else None


def _describe(cell: Cell) -> str:
    return f"row {cell[0] + 1}, column {cell[1] + 1}"


_INTRO = ("The maze is drawn on a grid; the green S marks the start, the red G the goal, and black "
          "lines are walls that cannot be crossed. ")


def make_sample(seed: int, index: int, config: MazeConfig = MazeConfig(), trajectory: str = "none",
                split: str = "train", backend: str = "numpy",
                template: PromptTemplate = DEFAULT_TEMPLATE, think: ThinkStyle = ThinkStyle.FULL) -> Sample:
    """One maze task (and its trajectory unless `trajectory == "none"`). Pure in (seed, index, config, split)."""
    rng = sample_rng(FAMILY, seed, split, index)
    while True:
        n = int(rng.integers(config.min_n, config.max_n + 1))
        maze = carve(n, rng, config.loop_fraction)
        cache: dict[Cell, Paths] = {}
        first = _draw_ends(maze, rng, cache)
        if first is not None:
            break
    kinds = list(config.question_kinds)
    kind = kinds[int(rng.integers(len(kinds)))]
    # a route or marked question the maze cannot carry becomes a length question (which always can)
    posed = _pose(kind, maze, first, cache, rng) or _pose("length", maze, first, cache, rng)
    kind, start, goal, marks = posed.kind, posed.start, posed.goal, posed.marks or {}
    path = shortest_path(maze, start, goal)
    moves = path_moves(path)
    route = runs(moves)
    geo = Geometry.of(config.size, n)
    question, options, answer_idx = _question(posed, path)

    image = render(maze, geo, start, goal, marks)
    boxes = [Box(1, geo.cell_box(start), "start"), Box(1, geo.cell_box(goal), "goal")]
    boxes += [Box(1, geo.cell_box(c), f"cell {d}") for d, c in marks.items()]
    lines, cell = [], start
    for k, (d, c) in enumerate(route, start=1):
        end = (cell[0] + MOVES[d][0] * c, cell[1] + MOVES[d][1] * c)
        lines.append(Line(1, _round_pt(geo.center(cell)), _round_pt(geo.center(end)), f"move {k}"))
        cell = end
    meta = {
        "question_kind": kind, "grid_size": n, "size": config.size, "start": list(start), "goal": list(goal),
        "path": [list(c) for c in path], "moves": moves, "route": route_text(route),
        "marks": {d: list(c) for d, c in marks.items()}, "maze": maze.to_json(),
        "geometry": {"x0": geo.x0, "y0": geo.y0, "x1": geo.x1, "y1": geo.y1},
    }
    sample = Sample(id=sample_id(FAMILY, seed, split, index), family=FAMILY, question=question,
                    options=lettered(options), answer=option_letter(answer_idx),
                    problem_type="multiple choice", data_type="maze", images=[image],
                    boxes=boxes, lines=lines, meta=meta)
    if trajectory == "none":
        return sample
    steps, mistake = plan_steps(sample, maze, geo, route, start, goal, marks, rng, reflective=trajectory == "reflective")
    if mistake:
        sample.meta["mistake"] = mistake
    return write_trajectory(sample, steps, trajectory, backend=backend, template=template, think=think)


def _round_pt(p) -> tuple[int, int]:
    return round(p[0]), round(p[1])


def _question(posed: _Posed, path):
    kind, marks = posed.kind, posed.marks
    if kind == "route":
        # "and ends there": a wrong option may be the route to a cell beyond G, passing through it
        return (_INTRO + "Which sequence of moves, started at S, follows the shortest route to G and ends there?",
                list(posed.options), posed.answer)
    if kind == "turns":
        return (_INTRO + "How many times does the shortest route from S to G change direction?",
                list(posed.options), posed.answer)
    if kind == "length":
        return (_INTRO + "How many moves between neighbouring cells does the shortest route from S to G take?",
                list(posed.options), posed.answer)
    digits = sorted(marks)
    on_path = next(d for d in digits if marks[d] in path)
    options = [f"cell {d}" for d in digits]
    return (_INTRO + "Four cells are numbered 1 to 4. Which numbered cell does the shortest route from S to G "
            "pass through?", options, digits.index(on_path))


# -- trajectory plan ------------------------------------------------------------------------------

_BOX_THINK = [
    "{opener} The maze is a {n} by {n} grid, each cell about {cw} by {ch} pixels. S is in {s} and G is in {g}. "
    "I box both to fix the two ends of the route.",
    "{opener} I count {n} columns and {n} rows. The start S sits in {s}; the goal G sits in {g}. "
    "Boxing them first makes the endpoints easy to track.",
    "{opener} This is an {n}x{n} maze with cells of roughly {cw}x{ch} px. Start: {s}. Goal: {g}. "
    "I will mark them with boxes.",
]
_MARK_THINK = " I also box the numbered cells so I can check them against the route later: {marks}."
_RUN_THINK = [
    "From {a} the open corridor leads {d} for {cells} to {b}{why}.",
    "Moving {d} from {a}, there is no wall for {cells}, which brings me to {b}{why}.",
    "At {a} the way towards the goal is {d}; it continues {cells} as far as {b}{why}.",
]
_LINE_OPEN = [
    "I trace the next part of the route with lines between cell centres.",
    "Now I follow the corridors and draw each straight stretch.",
    "Next I draw the path segment by segment.",
]


def plan_steps(sample: Sample, maze: Maze, geo: Geometry, route, start: Cell, goal: Cell, marks,
               rng: np.random.Generator, reflective: bool):
    """The steps of a maze trajectory; with `reflective`, one drawing is wrong first and redrawn."""
    kind = sample.meta["question_kind"]
    fields = dict(opener=templates.pick(rng, templates.OPENERS), n=maze.n, cw=round(geo.cw), ch=round(geo.ch),
                  s=_describe(start), g=_describe(goal))
    box_items = [Item(1, "start", bbox=geo.cell_box(start)), Item(1, "goal", bbox=geo.cell_box(goal))]
    box_items += [Item(1, f"cell {d}", bbox=geo.cell_box(c)) for d, c in marks.items()]
    box_think = templates.pick(rng, _BOX_THINK, **fields)
    if marks:
        box_think += _MARK_THINK.format(marks=", ".join(f"{d} in {_describe(c)}" for d, c in marks.items()))

    # segments of the route: (label, from cell, to cell, direction, count)
    segments, cell = [], start
    for k, (d, c) in enumerate(route, start=1):
        end = (cell[0] + MOVES[d][0] * c, cell[1] + MOVES[d][1] * c)
        segments.append((f"move {k}", cell, end, d, c))
        cell = end
    n_line_steps = 1 if len(segments) <= 2 else 2 if len(segments) <= 6 else 3
    per = -(-len(segments) // n_line_steps)
    chunks = [segments[k:k + per] for k in range(0, len(segments), per)]

    mistake_kind = None
    if reflective:
        mistake_kind = "box" if rng.random() < 0.5 else "line"

    steps: list[Step] = []
    mistake = None
    if mistake_kind == "box":
        wrong_goal = _wrong_neighbour(maze.n, goal, {start, goal, *marks.values()}, rng)
        wrong_items = tuple(Item(1, "goal", bbox=geo.cell_box(wrong_goal)) if it.label == "goal" else it
                            for it in box_items)
        wrong_think = box_think.replace(_describe(goal), _describe(wrong_goal))
        steps.append(Step(wrong_think, wrong_items, mistake=True))
        why = f"the box covers {_describe(wrong_goal)}, but the red G is in {_describe(goal)}"
        fix = templates.pick(rng, templates.MISTAKE_SPOTTED, img="{prev[1]}", what="box", label="goal", why=why)
        steps.append(Step(fix + " I draw the boxes again on image {src[1]}.", tuple(box_items), correction=True))
        mistake = {"step": 1, "label": "goal", "kind": "box", "wrong_cell": list(wrong_goal)}
    else:
        steps.append(Step(box_think, tuple(box_items)))

    for c_idx, chunk in enumerate(chunks):
        check = templates.pick(rng, templates.CHECK_OK, img="{prev[1]}")
        texts, items = [], []
        for label, a, b, d, c in chunk:
            texts.append(templates.pick(rng, _RUN_THINK, a=_describe(a), b=_describe(b), d=d, cells=_cells(c),
                                        why=_run_end_reason(maze, segments, label, b, goal)))
            items.append(Item(1, label, start=_round_pt(geo.center(a)), end=_round_pt(geo.center(b))))
        think = " ".join([check, templates.pick(rng, _LINE_OPEN)] + texts)
        if mistake_kind == "line" and c_idx == 0:
            label, a, b, d, c = chunk[0]
            wrong_end, why = _wrong_run_end(maze, a, b, d, c)
            wrong_items = [Item(1, label, start=items[0].start, end=_round_pt(geo.center(wrong_end)))] + items[1:]
            wrong_text = [templates.pick(rng, _RUN_THINK, a=_describe(a), b=_describe(wrong_end), d=d,
                                         cells=_cells(abs(wrong_end[0] - a[0]) + abs(wrong_end[1] - a[1])),
                                         why="")] + texts[1:]
            steps.append(Step(" ".join([check, templates.pick(rng, _LINE_OPEN)] + wrong_text),
                              tuple(wrong_items), mistake=True))
            fix = templates.pick(rng, templates.MISTAKE_SPOTTED, img="{prev[1]}", what="line", label=label, why=why)
            steps.append(Step(fix + " " + " ".join(texts), tuple(items), correction=True))
            mistake = {"step": len(steps) - 1, "label": label, "kind": "line", "wrong_cell": list(wrong_end)}
        else:
            steps.append(Step(think, tuple(items)))

    steps.append(Step(_answer_think(kind, rng, route, marks, sample), answer=sample.answer))
    return steps, mistake


def _cells(c: int) -> str:
    return "1 cell" if c == 1 else f"{c} cells"


def _run_end_reason(maze: Maze, segments, label: str, b: Cell, goal: Cell) -> str:
    if b == goal:
        return ", where the goal is"
    k = [s[0] for s in segments].index(label)
    d, nxt = segments[k][3], segments[k + 1][3]
    if not maze.can_move(b, d):
        return f", where a wall blocks the way {d} and the corridor turns {nxt}"
    return f", a junction where the route towards G turns {nxt}"


def _wrong_neighbour(n: int, cell: Cell, avoid, rng) -> Cell:
    cands = [(cell[0] + di, cell[1] + dj) for di, dj in MOVES.values()]
    cands = [c for c in cands if 0 <= c[0] < n and 0 <= c[1] < n and c not in avoid]
    if not cands:
        cands = [(i, j) for i in range(n) for j in range(n) if (i, j) not in avoid]
    return cands[int(rng.integers(len(cands)))]


def _wrong_run_end(maze: Maze, a: Cell, b: Cell, d: str, c: int) -> tuple[Cell, str]:
    """A plausible wrong end for the run a->b: one cell too far (through a wall), else one short."""
    beyond = maze.step(b, d)
    if 0 <= beyond[0] < maze.n and 0 <= beyond[1] < maze.n:
        return beyond, f"it ends in {_describe(beyond)}, crossing the wall after {_describe(b)}"
    if c > 1:
        short = (b[0] - MOVES[d][0], b[1] - MOVES[d][1])
        return short, f"it stops in {_describe(short)}, but the corridor goes on to {_describe(b)}"
    for side in MOVES:
        if side not in (d, OPPOSITE[d]):
            other = maze.step(a, side)
            if 0 <= other[0] < maze.n and 0 <= other[1] < maze.n and other != b:
                return other, f"it goes {side} into {_describe(other)}, while the open way from {_describe(a)} is {d}"
    raise AssertionError("every cell of a grid with n >= 2 has a neighbour off the run")


def _answer_think(kind, rng, route, marks, sample: Sample) -> str:
    letter = sample.answer
    chosen = sample.options["ABCD".index(letter)].split(". ", 1)[1]
    traced = route_text(route)
    close = templates.pick(rng, templates.ANSWER_CLOSERS, answer=letter)
    head = templates.pick(rng, templates.CHECK_OK, img="{prev[1]}")
    if kind == "route":
        body = (f"The traced route from S to G reads: {traced}. Option {letter} ({chosen}) matches it exactly; the other "
                "sequences run into a wall or end away from G.")
    elif kind == "turns":
        body = (f"The route {traced} has {len(route)} straight stretches, so it changes direction "
                f"{len(route) - 1} time(s).")
    elif kind == "length":
        total = sum(c for _, c in route)
        body = f"Adding the stretches of {traced}: {' + '.join(str(c) for _, c in route)} = {total} moves."
    else:
        path = {tuple(c) for c in sample.meta["path"]}
        on = [d for d, c in marks.items() if tuple(c) in path]
        body = (f"The traced route passes through cell {on[0]}; the other numbered cells lie off the route.")
    return f"{head} {body} {close}"
