"""Evaluation speed on the tiny preset: records per second of `run_eval` (rollout, scoring, images
and results.jsonl) with records batched vs one at a time, on the same built-in maze records.

    PYTHONPATH=. .venv/bin/python benchmarks/eval_speed.py [--n 16] [--batch 8] [--repeats 2]

Each record has its own sampling key (its id), so both ways produce the same tokens; the work is
equal and only the batching differs. A warm-up pass of each way compiles first (not timed);
rounds are interleaved and the best of each is kept. The machine is shared: the load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from flax import nnx

from synth.benchmarks import write_builtin
from vilasr.eval.benchmarks import Benchmark, load_records
from vilasr.eval.runner import model_generate, run_eval
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig


def timed_run(records, generate, batch: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = run_eval(records, generate, Path(out), benchmark=Benchmark.SYNTH_MAZE, batch_size=batch,
                           progress=False)
        elapsed = time.perf_counter() - start
        lines = (Path(out) / "results.jsonl").read_text().splitlines()
    return elapsed, [summary.mean_response_tokens, len(lines)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16, help="records")
    p.add_argument("--batch", type=int, default=8, help="records per batch in the batched runs")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--turn-tokens", type=int, default=32)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--max-pixels", type=int, default=224 * 224)
    args = p.parse_args()

    data = Path(tempfile.mkdtemp(prefix="eval-speed-"))
    records = load_records(write_builtin("synth-maze", data, n=args.n)).records
    config = dataclasses.replace(RolloutConfig.for_eval(), max_turn_tokens=args.turn_tokens, max_turns=args.turns,
                                 max_turns_maze=args.turns, max_pixels=args.max_pixels)
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    generate = model_generate(model, Processor.tiny(), config, seed=0)
    ways = {"one at a time": 1, f"batched ({args.batch})": args.batch}
    for batch in ways.values():  # compile every shape first
        timed_run(records[: max(batch, 2)], generate, batch)
    best = {name: float("inf") for name in ways}
    work = {}
    for _ in range(args.repeats):
        for name, batch in ways.items():
            elapsed, work[name] = timed_run(records, generate, batch)
            best[name] = min(best[name], elapsed)
    assert len({tuple(w) for w in work.values()}) == 1, f"both ways must do the same work: {work}"
    load = os.getloadavg()
    print(f"tiny preset, {args.n} synth-maze records, {args.turns} turns x {args.turn_tokens} tokens at most, "
          f"images <= {args.max_pixels} px; mean response {work[name][0]:.1f} tokens; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| way | best s | records/s | vs one at a time |\n|---|---:|---:|---:|")
    base = best["one at a time"]
    for name in ways:
        print(f"| {name} | {best[name]:.2f} | {args.n / best[name]:.2f} | {base / best[name]:.2f}x |")


if __name__ == "__main__":
    main()
