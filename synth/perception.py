"""Perception and grounding questions for pretraining a small base model that can see: on maze and
multi-view scenes drawn like the benchmarks' ones, short questions with exact answers -- where S and
G are, the box of a named thing, the centre of a cell, which moves a cell's walls allow, what a box
holds. Coordinates are written the way the drawing protocol wants them (absolute pixels of the
full-size image), so a model that learns them can later place its boxes and lines. (One exception
to "like the benchmarks'": multi-view scenes are drawn with the defaults of
`multiview._sample_scene_and_views`, the data the shipped base was trained on, so those drawn for a
correspondence question keep look-alike objects and small camera moves, where the benchmark's
correspondence questions now circle scenes of objects alike but for colour.)

One image carries several questions (a multi-turn chat: every answer is supervised, the image is
encoded once). Pure in (seed, index): `make_example(family, seed, index)`.

    from synth.perception import write_dataset
    path = write_dataset("data/base", n=8000, seed=0)   # data/base/train.json + images/
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from synth import maze, multiview, templates
from synth.errors import SynthError
from synth.io import already_written, png_bytes
from synth.rng import sample_rng

QUESTIONS_PER_IMAGE = 6
SPLIT = "perception"          # its own split name: no perception image equals a task sample's image
BENCHMARK_SPLITS = ("heldout",)  # synth.benchmarks.HELDOUT_SPLIT: never a perception split
MANIFEST = "PERCEPTION.json"   # written last: a folder without it is unfinished


class Family(str, enum.Enum):
    MAZE = "maze"
    MULTIVIEW = "multiview"

    def __str__(self) -> str:
        return self.value


# mazes of every size the benchmarks ask about, and one bigger; multi-view scenes of 4-5 objects
MAZE_CONFIG = maze.MazeConfig(min_n=3, max_n=6)
MULTIVIEW_CONFIG = multiview.MultiviewConfig(min_objects=4, max_views=3,
                                             question_kinds=("motion", "correspondence", "direction"))
MAZE_SHARE = 0.6


class QA(NamedTuple):
    kind: str        # what the question tests (the perception report groups by it)
    question: str
    answer: str


@dataclasses.dataclass(frozen=True)
class Example:
    """One image (or a few views) and its question/answer pairs."""

    family: Family
    images: list[np.ndarray]
    qa: list[QA]
    facts: dict = dataclasses.field(default_factory=dict)   # what the answers were computed from

    def conversation(self) -> list[dict]:
        marks = "".join("<image>" for _ in self.images)
        messages = []
        for k, (_, question, answer) in enumerate(self.qa):
            messages.append({"role": "user", "content": f"{marks}{question}" if k == 0 else question})
            messages.append({"role": "assistant", "content": answer})
        return messages


def _cell(c) -> str:
    return f"row {c[0] + 1}, column {c[1] + 1}"


def maze_example(rng: np.random.Generator, config: maze.MazeConfig = MAZE_CONFIG) -> Example:
    n = int(rng.integers(config.min_n, config.max_n + 1))
    m = maze.carve(n, rng, config.loop_fraction)
    cells = [(i, j) for i in range(n) for j in range(n)]
    picks = rng.choice(len(cells), 6, replace=False)
    start, goal = cells[picks[0]], cells[picks[1]]
    n_marks = int(rng.integers(0, 5))
    marks = {str(d): cells[picks[2 + k]] for k, d in enumerate(sorted(rng.permutation([1, 2, 3, 4])[:n_marks]))}
    geo = maze.Geometry.of(config.size, n)
    image = maze.render(m, geo, start, goal, marks)

    probe, probe2 = (cells[int(k)] for k in rng.choice(len(cells), 2, replace=False))
    pool = [
        QA("maze: cell of S/G", "Which cell holds S?", _cell(start)),
        QA("maze: cell of S/G", "Which cell holds G?", _cell(goal)),
        QA("maze: box of S/G", "Give the box of S.", templates.fmt_box(geo.cell_box(start))),
        QA("maze: box of S/G", "Give the box of G.", templates.fmt_box(geo.cell_box(goal))),
        QA("maze: grid size", "How many rows and columns does the maze have?", f"{n} by {n}"),
    ]
    for cell in (probe, probe2):
        open_moves = [d for d in maze.MOVES if m.can_move(cell, d)]
        pool.append(QA("maze: open moves", f"Which moves do the walls allow from {_cell(cell)}?",
                       ", ".join(open_moves) or "none"))
    for d, c in marks.items():
        pool.append(QA("maze: cell of a number", f"Which cell holds the number {d}?", _cell(c)))
    # answerable from the question and the grid size alone: at most one per image
    text_only = [
        QA("maze: centre of a cell", f"Give the centre of {_cell(probe)}.", templates.fmt_point(geo.center(probe))),
        QA("maze: box of a cell", f"Give the box of {_cell(probe)}.", templates.fmt_box(geo.cell_box(probe))),
        QA("maze: cell of a point", f"Which cell holds the point {templates.fmt_point(geo.center(probe))}?",
           _cell(probe)),
    ]
    return Example(Family.MAZE, [image], _choose(rng, pool, text_only), {"n": n, "start": start, "goal": goal})


def multiview_example(rng: np.random.Generator, config: multiview.MultiviewConfig = MULTIVIEW_CONFIG) -> Example:
    kind = config.question_kinds[int(rng.integers(len(config.question_kinds)))]
    objs, views, _ = multiview._sample_scene_and_views(rng, config, kind)
    images = [v.rendered.image for v in views]
    names = [o.name for o in objs]
    pool = []
    text_only = [QA("views: object count", f"How many objects stand on the floor in image {len(images)}?",
                    str(len(objs)))]
    for k, view in enumerate(views, start=1):
        for i, name in enumerate(names):
            box = templates.fmt_box(multiview._padded(view.boxes[i], config))
            pool.append(QA("views: object in a box", f"In image {k}, what is inside the box {box}?", name))
            if names.count(name) == 1:
                pool.append(QA("views: box of an object", f"In image {k}, give the box of the {name}.", box))
    return Example(Family.MULTIVIEW, images, _choose(rng, pool, text_only), {"names": names})


def _choose(rng, pool: list[QA], text_only: list[QA] = ()) -> list[QA]:
    """QUESTIONS_PER_IMAGE questions in a random order: those that need the image first, and at
    most one that the question's text (and the grid size) answers, so a model cannot lower its
    loss much without reading the image."""
    picked = [pool[k] for k in rng.permutation(len(pool))[:QUESTIONS_PER_IMAGE - 1]]
    rest = [pool[k] for k in range(len(pool)) if pool[k] not in picked]
    extra = ([text_only[int(rng.integers(len(text_only)))]] if text_only else []) + rest
    chosen = picked + extra[:QUESTIONS_PER_IMAGE - len(picked)]
    return [chosen[k] for k in rng.permutation(len(chosen))]


def make_example(seed: int, index: int, split: str = SPLIT, *, maze_max_n: int | None = None) -> Example:
    """Example `index` of the stream `seed` of `split`: a maze (60 %) or a multi-view scene.
    Training draws from SPLIT; a held-out report uses another split name (stages.base).
    `maze_max_n` caps the maze's side (a coarse-to-fine curriculum; default MAZE_CONFIG's)."""
    if split in BENCHMARK_SPLITS:
        raise SynthError(f"split {split!r} belongs to the benchmarks; perception data never uses it")
    rng = sample_rng("perception", seed, split, index)
    config = MAZE_CONFIG if maze_max_n is None else dataclasses.replace(
        MAZE_CONFIG, max_n=max(MAZE_CONFIG.min_n, min(maze_max_n, MAZE_CONFIG.max_n)))
    return maze_example(rng, config) if rng.random() < MAZE_SHARE else multiview_example(rng)


def write_dataset(out_dir, n: int, seed: int = 0, *, progress: bool = True) -> Path:
    """`n` examples as a sharegpt file (`train.json`) plus PNGs; a folder already holding the same
    (n, seed) is reused as it is. Returns the JSON's path."""
    if n < 1:
        raise SynthError(f"a perception dataset needs at least 1 example, got {n}")
    out_dir = Path(out_dir)
    wanted = {"dataset": "perception", "n": n, "seed": seed, "questions_per_image": QUESTIONS_PER_IMAGE}
    if already_written(out_dir, MANIFEST, wanted, "perception dataset"):
        return out_dir / "train.json"
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    records = []
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="perception data", unit="image", dynamic_ncols=True)
    for index in indices:
        example = make_example(seed, index)
        paths = []
        for k, image in enumerate(example.images):
            rel = f"images/{index:06d}_{k}.png"
            (out_dir / rel).write_bytes(png_bytes(image))
            paths.append(rel)
        records.append({"conversations": example.conversation(), "images": paths})
    (out_dir / "train.json").write_text(json.dumps(records), encoding="utf-8")
    (out_dir / MANIFEST).write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
    return out_dir / "train.json"
