"""The built-in held-out benchmarks: seeds disjoint from training seeds (as data and in the records),
4-option questions of the promised shapes, and the files `vilasr eval` reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from synth import families
from synth.benchmarks import (BUILTIN, HELDOUT_SEEDS, HELDOUT_SPLIT, TRAIN_SEEDS, check_train_seed, write_builtin)
from synth.cli import main as synth_main
from synth.errors import SynthError


def test_seed_ranges_are_disjoint_and_the_benchmarks_use_held_out_seeds():
    assert TRAIN_SEEDS.stop <= HELDOUT_SEEDS.start  # ranges of consecutive ints: this is disjointness
    assert TRAIN_SEEDS.step == HELDOUT_SEEDS.step == 1
    assert not any(s in HELDOUT_SEEDS for s in range(TRAIN_SEEDS.stop - 3, TRAIN_SEEDS.stop))
    seeds = [b.seed for b in BUILTIN.values()]
    assert len(set(seeds)) == len(seeds) and all(s in HELDOUT_SEEDS and s not in TRAIN_SEEDS for s in seeds)
    assert check_train_seed(TRAIN_SEEDS[-1]) == TRAIN_SEEDS[-1]
    with pytest.raises(SynthError, match="reserved for the built-in held-out benchmarks"):
        check_train_seed(HELDOUT_SEEDS[0])


def test_the_synth_command_refuses_held_out_seeds(tmp_path, capsys):
    assert synth_main(["maze", "--out", str(tmp_path / "d"), "--n", "1", "--seed", str(HELDOUT_SEEDS[0]),
                       "--no-progress"]) == 2
    assert "reserved for the built-in held-out benchmarks" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_held_out_records_differ_from_training_records(name):
    bench = BUILTIN[name]
    held = list(bench.samples(6))
    train = [s for seed in (0, 1) for s in families.iter_samples(bench.family, 6, seed, config=bench.config)]
    held_pixels = {h.images[0].tobytes() for h in held}
    assert not held_pixels & {t.images[0].tobytes() for t in train}
    assert not {h.digest() for h in held} & {t.digest() for t in train}
    assert all(HELDOUT_SPLIT in h.id for h in held)


def test_question_shapes():
    for sample in BUILTIN["synth-maze"].samples(12):
        assert 3 <= sample.meta["grid_size"] <= 5
        assert sample.problem_type == "multiple choice" and len(sample.options) == 4
    views = set()
    for sample in BUILTIN["synth-multiview"].samples(30):
        assert sample.problem_type == "multiple choice" and len(sample.options) == 4
        assert 2 <= len(sample.images) <= 3
        views.add(len(sample.images))
    assert views == {2, 3}


def test_write_builtin_files_and_reuse(tmp_path):
    path = write_builtin("synth-maze", tmp_path / "m", n=3)
    records = json.loads(path.read_text())
    assert len(records) == 3 and all((tmp_path / "m" / r["image_path"][0]).is_file() for r in records)
    assert {"question", "options", "answer", "problem_type", "data_type", "image_path", "grid_size"} <= set(records[0])
    mtime = path.stat().st_mtime_ns
    assert write_builtin("synth-maze", tmp_path / "m", n=3) == path and path.stat().st_mtime_ns == mtime
    with pytest.raises(SynthError, match="holds another built-in benchmark"):
        write_builtin("synth-maze", tmp_path / "m", n=4)
    with pytest.raises(SynthError, match="no built-in benchmark"):
        write_builtin("synth-mazes", tmp_path / "x")
    again = json.loads(write_builtin("synth-maze", tmp_path / "m2", n=3).read_text())
    assert again == records  # fixed seeds: the same records every time
    first, second = (np.asarray(Image.open(tmp_path / d / records[0]["image_path"][0])) for d in ("m", "m2"))
    assert np.array_equal(first, second)
