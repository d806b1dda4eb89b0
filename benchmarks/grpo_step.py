"""Where a GRPO step's time goes on the tiny preset: the rollout (old log-probabilities come with
it, recorded by the sampler), the update (teacher-forced forward + backward + AdamW, over every
rollout row), and for comparison what recomputing the old log-probabilities with a separate
forward would cost (the way frameworks whose sampler is another engine must do it).

Each configuration runs `--steps` GRPO steps with the random tiny model (its rewards do not
matter for time): every turn but the last draws a box (scripted), the last is sampled to the
token cap. Medians of the steps after the first (which compiles).

    PYTHONPATH=. .venv/bin/python benchmarks/grpo_step.py [--steps 3] [--sweep group,turns,image]
    PYTHONPATH=. .venv/bin/python benchmarks/grpo_step.py --demo --steps 5   # the demo's sizes

The last columns: the share of a step's time spent compiling (CompileLog), in the first step and
in the worst step after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from drawing_ops import Box
from drawing_ops.protocol import PromptTemplate, format_tool_turn
from stages.config import TrainConfig
from stages.rl.config import GrpoConfig
from stages.prompts import load_prompts
from stages.rl.grpo import GrpoTrainer, teacher_forced_logprobs, trajectory_batch
from stages.sft import load_model
from synth.io import png_bytes
from vilasr.compiled import CompileLog
from vilasr.rollout import RolloutConfig, SamplingConfig

TEMPLATE = PromptTemplate(system="Draw, look, answer.", closing="")


def write_prompts(folder: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        (folder / f"p{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        lines.append(json.dumps({"question": f"Which colour? ({i})", "options": ["A. red", "B. blue"], "answer": "A",
                                 "image_path": [f"p{i}.png"]}))
    path = folder / "prompts.jsonl"
    path.write_text("\n".join(lines))
    return path


def one(prompts_per_step: int, group: int, turns: int, size: int, steps: int, turn_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prompts = load_prompts(write_prompts(tmp, prompts_per_step, size))
        rows = prompts_per_step * group
        config = TrainConfig(learning_rate=1e-5, max_steps=steps, batch_size=rows, save_every=1000, precision="fp32",
                             freeze_vision=False, max_pixels=size * size, warmup_ratio=0.0, schedule="constant")
        model, processor = load_model(preset="tiny", model_dir=None, config=config)
        rollout = RolloutConfig(max_turns=turns, max_turn_tokens=turn_tokens, max_response_tokens=None,
                                template=TEMPLATE, sampling=SamplingConfig(temperature=1.0))
        grpo = GrpoConfig(prompts_per_step=prompts_per_step, group_size=group)
        trainer = GrpoTrainer(model, processor, config, grpo, rollout, tmp / "run", total_steps=steps, devices=1,
                              progress=False)
        # every turn but the last draws a box (scripted, its tokens scored by the model); the last is
        # sampled to the token cap: the random model's text is noise
        box = format_tool_turn("Box it.", [Box(1, (4, 4, size // 2, size // 2), "o")])
        forced = [[box] * (turns - 1)] * rows
        times = {"rollout_s": [], "update_s": [], "recompute_s": [], "compile_share": []}
        for step in range(steps):
            trainer.step = step
            log = CompileLog().__enter__()
            started = time.perf_counter()
            grp = trainer.sample(prompts, forced_turns=forced)
            sampled = time.perf_counter()
            trainer.update(grp)
            updated = time.perf_counter()
            log.__exit__()
            times["compile_share"].append(log.seconds / (updated - started))
            batch, _ = trajectory_batch(grp.trajectories, processor.tokenizer.pad_id)
            ids, attn, _, pos, images = trainer.arrays(batch)
            teacher_forced_logprobs(model, ids, attn, pos, images, temperature=1.0).block_until_ready()
            times["rollout_s"].append(sampled - started)
            times["update_s"].append(updated - sampled)
            times["recompute_s"].append(time.perf_counter() - updated)
    summary = grp.summary()
    # the first step compiles: medians of the rest
    return {"prompts": prompts_per_step, "G": group, "rows": rows, "max_turns": turns, "image": size,
            **{k: statistics.median(v[1:]) for k, v in times.items()}, "turns": summary["turns"],
            "compile_share_max": max(times["compile_share"][1:]), "compile_share_first": times["compile_share"][0],
            "response_len": summary["response_len"], "length": batch.input_ids.shape[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--turn-tokens", type=int, default=96, help="token cap per turn (a scripted box turn is ~55)")
    parser.add_argument("--sweep", default="group,turns,image")
    parser.add_argument("--demo", action="store_true", help="only the demo's sizes: 4 prompts x 4, 4 turns, 224 px")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    base = {"prompts_per_step": 2, "group": 4, "turns": 2, "size": 112}
    sweeps = {"group": [("group", g) for g in (2, 4, 8)], "turns": [("turns", t) for t in (1, 2, 4)],
              "image": [("size", s) for s in (56, 112, 224)]}
    header = ("| prompts x G | turns | image px | padded length | rollout s | update s | update / rollout | "
              "separate old-logp forward s | compiling, step 1 | compiling, worst later step |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    seen = set()
    if args.demo:
        base, args.sweep, sweeps = {"prompts_per_step": 4, "group": 4, "turns": 4, "size": 224}, "demo", {"demo": [("size", 224)]}
    for name in args.sweep.split(","):
        for key, value in sweeps[name]:
            cfg = {**base, key: value}
            if tuple(cfg.items()) in seen:
                continue
            seen.add(tuple(cfg.items()))
            r = one(cfg["prompts_per_step"], cfg["group"], cfg["turns"], cfg["size"], args.steps, args.turn_tokens)
            print(f"| {r['prompts']} x {r['G']} | {r['turns']:.0f} | {r['image']} | {r['length']} | "
                  f"{r['rollout_s']:.2f} | {r['update_s']:.2f} | {r['update_s'] / r['rollout_s']:.2f} | "
                  f"{r['recompute_s']:.2f} | {100 * r['compile_share_first']:.0f} % | "
                  f"{100 * r['compile_share_max']:.0f} % |", flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
