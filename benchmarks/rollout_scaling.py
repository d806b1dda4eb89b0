"""Rollout speed against the batch size: tokens through the model per second for benchmarks/rollout.py's
parts, only our side, one batch size after another in one process (tiny model, greedy):

(a) decode: a 64-token prompt, then 256 new tokens per row (prefill + decode timed);
(b) the 6-turn drawing rollout with one 448x448 image per task, persistent KV cache.

    PYTHONPATH=. .venv/bin/python benchmarks/rollout_scaling.py [--batches 1,2,4,8,16,32,64,128] [--parts ab]

Each batch size is run once to compile, then timed (best of --repeats). Memory per row is the KV
cache's bytes per row at the largest cache the rollout used (`KVCache` k + v + mask at its
capacity); the process's peak RSS so far (it only grows) is printed beside it. The load average is
read when each line is printed: on a shared machine compare batch sizes within one run.
"""

from __future__ import annotations

import argparse
import os
import resource

import jax
import numpy as np
from flax import nnx
from rollout import best_of, drawing_script

import vilasr.rollout.loop as rollout_loop
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.processing.image import VILASR_TRAIN_MAX_PIXELS
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout
from vilasr.rollout.sampler import decode, prefill

PROMPT = 64


def cache_bytes_per_row(cache) -> int:
    return sum(a.nbytes for a in (cache.k, cache.v, cache.lengths, cache.next_pos)) // cache.batch


def decode_rate(model, batch: int, new_tokens: int, repeats: int) -> dict:
    ids = np.random.default_rng(0).integers(0, 2000, (batch, PROMPT)).astype(np.int32)
    parts = nnx.split(model)
    keys = jax.random.split(jax.random.key(0), batch)
    sizes = []

    def run():
        cache = model.init_cache(batch, PROMPT + new_tokens)
        logits, cache = prefill(parts, cache, ids, np.ones_like(ids, bool))
        _, cache = decode(parts, cache, logits, cfg=SamplingConfig(greedy=True), keys=keys,
                          caps=np.full(batch, new_tokens), stop_ids=[-1], max_steps=new_tokens, pad_id=0)
        sizes.append(cache_bytes_per_row(jax.block_until_ready(cache)))

    run()
    seconds = best_of(run, repeats)
    return {"seconds": seconds, "new": batch * new_tokens / seconds,
            "through": batch * (PROMPT + new_tokens) / seconds, "row_bytes": max(sizes)}


class CacheWatch:
    """Records the largest cache the rollout's decode calls return (wraps the loop's `decode`)."""

    def __init__(self):
        self.row_bytes = 0

    def __enter__(self):
        self.inner = rollout_loop.decode

        def watched(*args, **kwargs):
            out, cache = self.inner(*args, **kwargs)
            self.row_bytes = max(self.row_bytes, cache_bytes_per_row(cache))
            return out, cache

        rollout_loop.decode = watched
        return self

    def __exit__(self, *exc):
        rollout_loop.decode = self.inner


def multiturn_rate(model, processor, batch: int, turns: int, image: int, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    tasks = [RolloutTask(images=[rng.integers(0, 256, (image, image, 3), dtype=np.uint8)],
                         question="Which object is closest to the door? A. first B. second", seed=i)
             for i in range(batch)]
    cfg = RolloutConfig(max_turn_tokens=160, sampling=SamplingConfig(greedy=True))
    forced = [drawing_script(turns)] * batch
    with CacheWatch() as watch:
        trajs = rollout(model, processor, tasks, cfg, forced_turns=forced)  # compiles
        assert all(t.finish_reason == "answer" and len(t.turns) == turns for t in trajs)
        seconds = best_of(lambda: rollout(model, processor, tasks, cfg, forced_turns=forced), repeats)
    processed = sum(t.tokens_processed for t in trajs)
    return {"seconds": seconds, "through": processed / seconds, "row_bytes": watch.row_bytes}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", default="1,2,4,8,16,32,64,128")
    parser.add_argument("--parts", default="ab")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--image", type=int, default=448)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    processor = Processor.tiny(max_pixels=VILASR_TRAIN_MAX_PIXELS)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    header = ("| part | batch | seconds | tokens through the model / s | new tokens / s | KV cache MB / row "
              "| peak RSS GB (process, so far) | load average |")
    print(header + "\n|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for part in args.parts:
        for batch in batches:
            if part == "a":
                r = decode_rate(model, batch, args.new_tokens, args.repeats)
                new = f"{r['new']:,.0f}"
            else:
                r = multiturn_rate(model, processor, batch, args.turns, args.image, args.repeats)
                new = ""
            print(f"| {part} | {batch} | {r['seconds']:.2f} | {r['through']:,.0f} | {new} | "
                  f"{r['row_bytes'] / 2 ** 20:.2f} | {peak_rss_gb():.2f} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
