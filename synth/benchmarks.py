"""The built-in held-out benchmarks `synth-maze` and `synth-multiview`: fixed-seed test sets in the
ViLaSR-eval benchmark form (synth.io.export_benchmark), made from seeds no training data may use.

Seeds are data here: `TRAIN_SEEDS` is what `vilasr synth` (and so every training set we make)
accepts; `HELDOUT_SEEDS` is reserved for these benchmarks. The two ranges are disjoint and every
sample's generator is keyed by (family, split, seed, index) (synth.rng), so a benchmark record can
never be a training record. Each benchmark also uses its own split name, "heldout".

    from synth.benchmarks import write_builtin
    path = write_builtin("synth-maze", "data/synth-maze")   # data/synth-maze/test.json + images/
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from synth import maze, multiview
from synth.errors import SynthError
from synth.families import iter_samples

TRAIN_SEEDS = range(2**31)                 # `vilasr synth --seed` and training generators
HELDOUT_SEEDS = range(2**31, 2**31 + 2**16)   # reserved for the built-in benchmarks
HELDOUT_SPLIT = "heldout"
DEFAULT_COUNT = 200
MAX_COUNT = 100_000


@dataclasses.dataclass(frozen=True)
class BuiltinBenchmark:
    """One built-in benchmark: which family, with which config, from which reserved seed."""

    name: str
    family: str
    seed: int
    config: object

    def samples(self, n: int = DEFAULT_COUNT, *, backend: str = "numpy"):
        return iter_samples(self.family, n, self.seed, config=self.config, split=HELDOUT_SPLIT, backend=backend)


# Only 4-option multiple-choice kinds (4+ objects, so a correspondence question has 4 boxes to choose
# from); mazes of 3..5 cells a side; 2..3 views.
BUILTIN = {
    "synth-maze": BuiltinBenchmark("synth-maze", "maze", HELDOUT_SEEDS[0],
                                   maze.MazeConfig(min_n=3, max_n=5)),
    "synth-multiview": BuiltinBenchmark("synth-multiview", "multiview", HELDOUT_SEEDS[1],
                                        multiview.MultiviewConfig(min_objects=4, max_views=3,
                                                                  question_kinds=("motion", "correspondence",
                                                                                  "direction"))),
}
MANIFEST = "BENCHMARK.json"   # written last: a folder without it is unfinished


def check_train_seed(seed: int) -> int:
    """`seed` if training data may use it; SynthError if it is reserved for the held-out benchmarks."""
    if seed not in TRAIN_SEEDS:
        raise SynthError(f"seed {seed} is reserved for the built-in held-out benchmarks; use a seed below "
                         f"{TRAIN_SEEDS.stop}")
    return seed


def builtin(name: str) -> BuiltinBenchmark:
    try:
        return BUILTIN[name]
    except KeyError:
        raise SynthError(f"no built-in benchmark {name!r}; choose one of {sorted(BUILTIN)}") from None


def write_builtin(name: str, out_dir, n: int = DEFAULT_COUNT, *, backend: str = "numpy") -> Path:
    """Write benchmark `name` (n records) into `out_dir` as `test.json` plus its PNGs; returns the
    JSON's path. A folder already holding the same benchmark (same name, n) is reused as it is."""
    bench = builtin(name)
    if not 1 <= n <= MAX_COUNT:
        raise SynthError(f"a built-in benchmark holds 1..{MAX_COUNT} records; got {n}")
    from synth import io

    out_dir = Path(out_dir)
    wanted = {"benchmark": name, "n": n, "seed": bench.seed, "split": HELDOUT_SPLIT}
    if io.already_written(out_dir, MANIFEST, wanted, "built-in benchmark"):
        return out_dir / "test.json"
    path = io.export_benchmark(bench.samples(n, backend=backend), out_dir, name="test")
    (out_dir / MANIFEST).write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
    return path
