"""The base model's pretraining questions (synth.perception): exact answers, pure in (seed, index),
written once as a sharegpt dataset that training reads."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from synth import maze, perception
from synth.errors import SynthError


def _examples(family, n=40):
    found = []
    for index in range(200):
        example = perception.make_example(7, index)
        if example.family is family:
            found.append(example)
        if len(found) == n:
            return found
    raise AssertionError(f"fewer than {n} {family} examples in 200")


def test_examples_are_pure_in_seed_and_index():
    a, b = perception.make_example(3, 11), perception.make_example(3, 11)
    assert a.qa == b.qa and all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert perception.make_example(4, 11).qa != a.qa


def test_maze_answers_match_the_drawn_maze():
    for example in _examples(perception.Family.MAZE, 20):
        n, start, goal = example.facts["n"], example.facts["start"], example.facts["goal"]
        geo = maze.Geometry.of(maze.MazeConfig().size, n)
        answers = {qa.question: qa.answer for qa in example.qa}
        for label, cell, colour in (("S", start, maze.START), ("G", goal, maze.GOAL)):
            x1, y1, x2, y2 = geo.cell_box(cell)
            patch = example.images[0][y1:y2, x1:x2].reshape(-1, 3)
            assert (patch == colour).all(axis=1).any(), f"{label}'s colour is not inside its cell box"
            if f"Which cell holds {label}?" in answers:
                assert answers[f"Which cell holds {label}?"] == f"row {cell[0] + 1}, column {cell[1] + 1}"
            if f"Give the box of {label}." in answers:
                assert answers[f"Give the box of {label}."] == "[" + ", ".join(map(str, geo.cell_box(cell))) + "]"
        assert len(example.qa) == perception.QUESTIONS_PER_IMAGE


def test_multiview_boxes_hold_what_the_answer_names():
    for example in _examples(perception.Family.MULTIVIEW, 8):
        for _, question, answer in example.qa:
            got = re.match(r"In image (\d+), what is inside the box \[(\d+), (\d+), (\d+), (\d+)\]\?", question)
            if got:
                assert answer in example.facts["names"]
                k, x1, y1, x2, y2 = map(int, got.groups())
                image = example.images[k - 1]
                assert 0 <= x1 < x2 < image.shape[1] and 0 <= y1 < y2 < image.shape[0]


def test_dataset_is_written_once_and_reused(tmp_path):
    path = perception.write_dataset(tmp_path / "d", 3, seed=1, progress=False)
    records = json.loads(path.read_text())
    assert len(records) == 3
    for record in records:
        first = record["conversations"][0]["content"]
        assert first.count("<image>") == len(record["images"])
        assert [m["role"] for m in record["conversations"]] == ["user", "assistant"] * perception.QUESTIONS_PER_IMAGE
        assert all((tmp_path / "d" / p).is_file() for p in record["images"])
    before = path.stat().st_mtime_ns
    assert perception.write_dataset(tmp_path / "d", 3, seed=1, progress=False) == path
    assert path.stat().st_mtime_ns == before
    with pytest.raises(SynthError, match="another perception dataset"):
        perception.write_dataset(tmp_path / "d", 4, seed=1, progress=False)


TEXT_ONLY_KINDS = {"maze: centre of a cell", "maze: box of a cell", "maze: cell of a point", "views: object count"}


def test_questions_need_the_image_first():
    """At most one question per image can be answered from the text (and the grid size) alone."""
    for index in range(60):
        example = perception.make_example(2, index)
        assert len(example.qa) == perception.QUESTIONS_PER_IMAGE
        assert sum(qa.kind in TEXT_ONLY_KINDS for qa in example.qa) <= 1


def test_heldout_split_is_its_own_stream_and_benchmark_splits_are_refused():
    from synth.benchmarks import HELDOUT_SPLIT

    assert HELDOUT_SPLIT in perception.BENCHMARK_SPLITS
    with pytest.raises(SynthError, match="benchmarks"):
        perception.make_example(0, 0, split=HELDOUT_SPLIT)
    a, b = perception.make_example(0, 5), perception.make_example(0, 5, split="perception-heldout")
    assert a.qa != b.qa
