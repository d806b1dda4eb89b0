"""Rollout throughput: tokens per second through the multi-turn drawing loop (continuous batching)
against the sampler's own pure decode rate at the same batch, on the demo's sizes.

The evaluation of `--n` built-in synth-maze records (`run_eval`: rollouts, scoring, images and
results.jsonl) with the shipped tiny base model and the demo's rollout settings (224 px images,
384 tokens per turn, 1,536 in all, 8 turns, T 0.75 / top-p 0.9), at each slot count of `--slots`.
Record i's first (i % 4) + 1 turns are scripted drawing turns (a box on image 1, then on the image
the last turn made), after which the model writes on by itself: a multi-turn drawing trajectory
per record, whatever the weights. Scripted tokens go through the decode loop one step each, as
sampled ones do. The pure decode rate is `decode` on the same slots with no stop token, over a
cache filled as far as a trajectory's mean length. Reported: tokens/s of both and their ratio,
the time split (compile, prefill, decode, vision = encoding and drawing, host), the number of
compiled programs; then a warm second evaluation of the same records (new ids, nothing compiles).

    PYTHONPATH=. .venv/bin/python benchmarks/rollout_throughput.py [--n 200] [--slots 8,32]
    PYTHONPATH=. .venv/bin/python benchmarks/rollout_throughput.py --memory 200,2000

`--memory A,B` instead runs the evaluation of A and of B records (one answer turn each, short) in
two fresh processes and prints each one's peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from drawing_ops import Box
from drawing_ops.protocol import format_tool_turn
from stages.base import SHIPPED_BASE
from stages.pipeline import DemoPlan
from synth.benchmarks import write_builtin
from vilasr.compiled import CompileLog
from vilasr.eval.benchmarks import Benchmark, load_records
from vilasr.eval.runner import run_eval
from vilasr.model import Qwen25VL
from vilasr.processing import Processor
from vilasr.rollout.loop import rollout_stream
from vilasr.rollout.sampler import decode, prefill


def scripted(records) -> dict[str, list[str]]:
    """Record id -> its scripted drawing turns."""
    out = {}
    for i, record in enumerate(records):
        out[record.id] = [
            format_tool_turn(f"I mark step {k + 1}.", [Box(k + 1, (20 + 12 * k, 30, 90 + 12 * k, 100), f"step {k + 1}")])
            for k in range((i % 4) + 1)]
    return out


class ScriptedGenerate:
    """`generate` for run_eval: the real rollout stream, each task with its record's script."""

    def __init__(self, model, processor, config, scripts: list[list[str]], times: dict):
        self.model, self.processor, self.config, self.scripts, self.times = model, processor, config, scripts, times
        self.trajectories = []

    def stream(self, tasks, slots):
        for i, traj in rollout_stream(self.model, self.processor, tasks, self.config, slots=slots,
                                      forced_turns=self.scripts, times=self.times):
            self.trajectories.append(traj)
            yield i, traj


def evaluate(model, processor, config, records, slots: int, times: dict) -> tuple[float, int, int, list]:
    scripts = list(scripted(records).values())
    generate = ScriptedGenerate(model, processor, config, scripts, times)
    with tempfile.TemporaryDirectory() as out, CompileLog() as log:
        start = time.perf_counter()
        run_eval(records, generate, Path(out), benchmark=Benchmark.SYNTH_MAZE, batch_size=slots, progress=False)
        seconds = time.perf_counter() - start
    times["compile"] = log.seconds
    tokens = sum(int(t.model_mask.sum()) for t in generate.trajectories)
    return seconds, tokens, log.count, generate.trajectories


def pure_decode_rate(model, processor, slots: int, filled: int, steps: int, config) -> float:
    """Tokens/s of the sampler's decode loop alone: `slots` rows, `filled` cache slots, no stops."""
    parts = nnx.split(model)
    ids = np.full((slots, filled), processor.tokenizer.encode("a")[0], np.int32)
    keys = jax.random.split(jax.random.key(0), slots)
    best = float("inf")
    for _ in range(3):   # the first compiles
        cache = model.init_cache(slots, filled + steps + 256)
        logits, cache = prefill(parts, cache, ids, np.ones_like(ids, bool))
        jax.block_until_ready(cache.k)
        start = time.perf_counter()
        out, cache = decode(parts, cache, logits, cfg=config.sampling, keys=keys, caps=np.full(slots, steps),
                            stop_ids=[-1], max_steps=steps, pad_id=0, banned=model.config.placeholder_ids)
        best = min(best, time.perf_counter() - start)
    return slots * steps / best


def throughput(args) -> None:
    plan = DemoPlan()
    config = plan.eval_rollouts()
    model, processor = Qwen25VL.from_pretrained(SHIPPED_BASE), Processor.from_pretrained(SHIPPED_BASE)
    data = Path(tempfile.mkdtemp(prefix="rollout-bench-"))
    records = load_records(write_builtin("synth-maze", data, n=args.n)).records
    print(f"load {os.getloadavg()[0]:.2f}; {args.n} synth-maze records, demo rollout settings "
          f"({config.max_turn_tokens} tokens/turn, {config.max_response_tokens} in all)")
    for slots in [int(s) for s in args.slots.split(",")]:
        for label in ("first", "warm"):
            times: dict = {}
            wanted = records if label == "first" else [dataclasses.replace(r, id=r.id + "-again") for r in records]
            seconds, tokens, programs, trajs = evaluate(model, processor, config, wanted, slots, times)
            host = seconds - sum(v for k, v in times.items() if k != "compile")
            split = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(times.items())) + f", host {host:.1f}s"
            print(f"slots {slots:3d} {label:5s}: {seconds:6.1f}s, {tokens} model tokens, {tokens / seconds:7.0f} tok/s; "
                  f"{programs} programs compiled; {split} (compile time is inside the phases)")
        mean_len = int(np.mean([len(t.token_ids) for t in trajs]))
        rate = pure_decode_rate(model, processor, slots, mean_len, config.max_turn_tokens, config)
        print(f"slots {slots:3d}: pure decode {rate:7.0f} tok/s at {mean_len} cache slots filled; "
              f"loop / pure (warm) = {tokens / seconds / rate:.2f}; mean turns "
              f"{np.mean([len(t.turns) for t in trajs]):.1f}")
        print(json.dumps({"slots": slots, "loop_tok_s": tokens / seconds, "decode_tok_s": rate,
                          "seconds_warm": seconds, "records": args.n}))


def memory_child(n: int) -> None:
    config = dataclasses.replace(DemoPlan().eval_rollouts(), max_turn_tokens=16)
    model, processor = Qwen25VL.from_pretrained(SHIPPED_BASE), Processor.from_pretrained(SHIPPED_BASE)
    data = Path(tempfile.mkdtemp(prefix="rollout-mem-"))
    records = load_records(write_builtin("synth-maze", data, n=n)).records
    generate = ScriptedGenerate(model, processor, config, [[]] * n, {})
    generate.trajectories = _Discard()
    with tempfile.TemporaryDirectory() as out:
        run_eval(records, generate, Path(out), benchmark=Benchmark.SYNTH_MAZE, batch_size=8, progress=False)
    print(json.dumps({"records": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


class _Discard(list):
    def append(self, _):
        pass


def memory(args) -> None:
    peaks = {}
    for n in [int(s) for s in args.memory.split(",")]:
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        peaks[n] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]
        print(f"{n:5d} records: peak RSS {peaks[n]:.0f} MB (load {os.getloadavg()[0]:.2f})")
    first, *rest = peaks.values()
    for n, peak in list(peaks.items())[1:]:
        print(f"peak RSS {n} / {next(iter(peaks))} records = {peak / first:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--slots", default="8,32")
    p.add_argument("--memory", default=None, help="record counts A,B: peak RSS of each evaluation")
    p.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
    elif args.memory:
        memory(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
