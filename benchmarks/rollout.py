"""Rollout speed, in one run on the same tiny model and prompts:

(a) decode tokens/s: our jitted while_loop sampler vs transformers `generate` (PyTorch, KV cache),
    both greedy, same weights (ours saved with save_pretrained and loaded by transformers);
(b) a 6-turn drawing rollout (5 drawings, then the answer) with the persistent KV cache vs the same
    rollout re-prefilling the whole conversation every turn (the reference's way).

    .venv/bin/python benchmarks/rollout.py [--batch 8] [--new-tokens 256] [--repeats 3] [--parts ab]

`--parts a` runs the decode comparison only. To compare two versions of the code, run the script
from each checkout with `PYTHONPATH=<checkout>` (a script's own folder, not the working
directory, comes first on sys.path), one after the other, a few times each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import jax
import numpy as np
from flax import nnx

from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.processing.image import VILASR_TRAIN_MAX_PIXELS
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout
from vilasr.rollout.sampler import decode, prefill


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_decode(model, processor, batch: int, new_tokens: int, repeats: int) -> dict:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2000, (batch, 64)).astype(np.int32)
    mask = np.ones_like(ids, bool)
    parts = nnx.split(model)
    keys = jax.random.split(jax.random.key(0), batch)

    def ours():
        cache = model.init_cache(batch, 64 + new_tokens)
        logits, cache = prefill(parts, cache, ids, mask)
        out, _ = decode(parts, cache, logits, cfg=SamplingConfig(greedy=True), keys=keys,
                        caps=np.full(batch, new_tokens), stop_ids=[-1], max_steps=new_tokens, pad_id=0)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        torch.set_num_threads(2)
        peer = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp, torch_dtype=torch.float32).eval()
    t_ids = torch.from_numpy(ids.astype(np.int64))

    def theirs():
        with torch.no_grad():
            return peer.generate(input_ids=t_ids, attention_mask=torch.ones_like(t_ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0)

    ours_tokens = np.stack(ours().tokens)  # warm-up (compiles) and correctness check
    theirs_tokens = theirs()[:, 64:].numpy()
    agree = float(np.mean(ours_tokens == theirs_tokens))
    t_ours, t_theirs = best_of(ours, repeats), best_of(theirs, repeats)
    n = batch * new_tokens
    return {"ours": n / t_ours, "theirs": n / t_theirs, "agree": agree}


def drawing_script(turns: int) -> list[str]:
    steps = []
    for t in range(1, turns):
        x = 10 + 12 * t
        block = json.dumps([{"index": t, "bbox_2d": [x, 12, x + 60, 80], "label": f"object {t}"},
                            {"index": t, "start_point_2d": [x, 90], "end_point_2d": [x + 80, 150], "label": "path"}])
        steps.append(f"<think>Step {t}: I mark object {t} and the path to it, then check the drawing.</think> "
                     f"Action: Object Mapper\n```json\n{block}\n```")
    steps.append("<think>The drawings agree, so the answer is A.</think> Action: Answer\n<answer>A</answer>")
    return steps


def bench_multiturn(model, processor, batch: int, turns: int, repeats: int, image: int) -> dict:
    rng = np.random.default_rng(1)
    tasks = [RolloutTask(images=[rng.integers(0, 256, (image, image, 3), dtype=np.uint8)],
                         question="Which object is closest to the door? A. first B. second", seed=i)
             for i in range(batch)]
    forced = [drawing_script(turns)] * batch
    results = {}
    for name, persistent in (("persistent", True), ("re-prefill", False)):
        cfg = RolloutConfig(max_turn_tokens=160, sampling=SamplingConfig(greedy=True), persistent_cache=persistent)
        run = lambda: rollout(model, processor, tasks, cfg, forced_turns=forced)  # noqa: E731
        trajs = run()  # warm-up
        assert all(t.finish_reason == "answer" and len(t.turns) == turns for t in trajs), [t.finish_reason for t in trajs]
        results[name] = {"seconds": best_of(run, repeats),
                         "processed": statistics.mean(t.tokens_processed for t in trajs),
                         "length": statistics.mean(len(t.token_ids) for t in trajs),
                         "exact": all(t.tokens_processed == len(t.token_ids) for t in trajs),
                         "images_encoded": statistics.mean(t.images_encoded for t in trajs)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", type=int, default=448,
                        help="input image side; with ViLaSR's 256*28*28 pixel cap, 448 -> 256 tokens per image")
    parser.add_argument("--parts", default="ab", help="a: decode vs transformers, b: multi-turn rollouts")
    args = parser.parse_args()
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    processor = Processor.tiny(max_pixels=VILASR_TRAIN_MAX_PIXELS)  # ViLaSR's image budget

    if "a" in args.parts:
        print_decode(bench_decode(model, processor, args.batch, args.new_tokens, args.repeats), args)
    if "b" in args.parts:
        print_multiturn(bench_multiturn(model, processor, args.batch, args.turns, args.repeats, args.image),
                        processor, args)


def print_decode(d: dict, args) -> None:
    step_ms = 1000 * args.batch / d["ours"]
    print(f"(a) greedy decode, batch {args.batch}, 64-token prompt, {args.new_tokens} new tokens, tiny model")
    print("| decoder | tokens/s | ratio |\n|---|---:|---:|")
    print(f"| transformers generate (PyTorch, KV cache) | {d['theirs']:,.0f} | 1.00x |")
    print(f"| ours (jit prefill + lax.while_loop decode) | {d['ours']:,.0f} | {d['ours'] / d['theirs']:.2f}x |")
    print(f"greedy tokens identical to transformers: {d['agree'] * 100:.1f}%; our decode step {step_ms:.2f} ms "
          f"(prefill included); load average {os.getloadavg()[0]:.1f}\n")


def print_multiturn(m: dict, processor, args) -> None:
    p, r = m["persistent"], m["re-prefill"]
    tokens = processor.num_image_tokens(args.image, args.image)
    print(f"(b) {args.turns}-turn drawing rollout, batch {args.batch}, one {args.image}x{args.image} image each "
          f"({tokens} tokens per image), tiny model")
    print("| rollout | seconds | tokens through the model / trajectory | trajectory length | images encoded | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| re-prefill every turn | {r['seconds']:.2f} | {r['processed']:.0f} | {r['length']:.0f} | "
          f"{r['images_encoded']:.0f} | 1.00x |")
    print(f"| persistent KV cache (ours) | {p['seconds']:.2f} | {p['processed']:.0f} | {p['length']:.0f} | "
          f"{p['images_encoded']:.0f} | {r['seconds'] / p['seconds']:.2f}x |")
    print(f"persistent: tokens through the model == trajectory length for every trajectory: {p['exact']}")


if __name__ == "__main__":
    main()
