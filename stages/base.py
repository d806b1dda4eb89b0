"""Pretraining the small base model the demo starts from: the tiny preset, initialised from a seed
and trained (vision tower included) on synthetic perception and grounding questions
(synth.perception), so that stage 1 starts from a model that can see.

    result = run_pretrain(out="runs/base", seed=0)    # runs/base/model + runs/base/model/BASE.json

Every step draws FRESH examples from the perception stream (example k of step s is example
s * batch_size + k of the stream `seed`; the stream cycles after `plan.images`), so the model
cannot memorise answers. The recipe comes from the measured probes of docs/base_probes.md
(stages/base_probe.py): the vision tower and the patch merger train at a smaller learning rate
than the decoder (at the decoder's rate the merged features grow ~100x past the text embeddings
and collapse to one vector), AdamW with weight decay, a warm-up and a cosine decay.

A rerun into the same folder resumes from the last checkpoint (`checkpoint.npz`, every
`save_every` steps and on SIGINT/SIGTERM). `BASE.json` records the command, the seed, the
settings, the sha256 of the weights, and the held-out perception scores three ways: with the real
images, with every image white, and with another example's images (a model that reads its images
scores far higher on the first); the same seed on the same machine type gives the same bytes.
The model the package ships (`SHIPPED_BASE`) was made this way; its BASE.json says how.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from stages.sft import SftResult
from stages.trainer import RunResult, StopReason
from synth import perception
from vilasr.errors import ConfigError

SHIPPED_BASE = Path(__file__).resolve().parent / "assets" / "base-tiny"
RECORD = "BASE.json"
WEIGHTS = "model.safetensors"
MANIFEST = "PRETRAIN.json"
CHECKPOINT = "checkpoint.npz"
HELDOUT_SPLIT = "perception-heldout"   # the record's questions: a split training never draws from
HELDOUT_CURVE = "heldout.jsonl"        # the learning curve: held-out scores every heldout_every steps


@dataclasses.dataclass(frozen=True)
class PretrainPlan:
    """How the base model is made: the stream, the steps and the optimiser on top of the tiny preset."""

    images: int = 1_000_000      # distinct stream examples before it cycles (default: always fresh)
    steps: int = 4800
    batch_size: int = 8
    learning_rate: float = 2e-3  # the decoder's peak rate
    vision_lr: float = 2e-4      # the tower's and the merger's peak rate
    warmup: int = 40
    weight_decay: float = 0.01
    # the decoder's M-RoPE (tiny preset: 1e6 and (4, 6, 6), under which image columns 1.8e-4 rad
    # apart are indistinguishable): a small theta and more bands for height and width
    rope_theta: float = 10.0
    mrope_section: tuple[int, int, int] = (2, 7, 7)
    # coarse to fine: the largest maze side in each equal part of the steps (3x3 mazes first,
    # where one question kind alone is learned in 300 steps: docs/base_probes.md, gate b)
    maze_curriculum: tuple[int, ...] = (3, 4, 5, 6)
    save_every: int = 200
    heldout_every: int = 400     # score curve_examples held-out examples (real and white images)
    curve_examples: int = 48
    report_examples: int = 100   # held-out perception examples the record scores the model on

    def probe_settings(self, seed: int):
        from stages.base_probe import ProbeSettings

        return ProbeSettings(task="mix", steps=self.steps, batch_size=self.batch_size, lr=self.learning_rate,
                             vision_lr=self.vision_lr, merger_lr=self.vision_lr, warmup=self.warmup,
                             weight_decay=self.weight_decay, rope_theta=self.rope_theta,
                             mrope_section=tuple(self.mrope_section), seed=seed)

    def maze_max_n(self, step: int) -> int:
        return self.maze_curriculum[min(step * len(self.maze_curriculum) // self.steps, len(self.maze_curriculum) - 1)]

    def validate(self) -> None:
        if min(self.images, self.steps, self.batch_size) < 1:
            raise ConfigError("a pretraining plan needs images, steps and batch_size >= 1")
        if not self.maze_curriculum or min(self.maze_curriculum) < 2:
            raise ConfigError("maze_curriculum needs one or more maze sides >= 2")
        if self.learning_rate <= 0 or self.vision_lr < 0:
            raise ConfigError("learning rates must be positive (vision_lr 0 freezes the tower)")


def _write_curve_point(path: Path, step: int, model, processor, seed: int, n: int, bar) -> None:
    """One point of the learning curve: exact share per kind on held-out examples, real vs white."""
    from stages.base_probe import score

    scores = score(model, processor, heldout_examples(seed, n), conditions=("real", "white"))
    point = {"step": step, **{cond: {k: v["exact"] for k, v in by_kind.items()} for cond, by_kind in scores.items()}}
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["step"] < step] if path.exists() else []   # a resumed run rewrites its later points
    path.write_text("".join(line + "\n" for line in kept) + json.dumps(point) + "\n", encoding="utf-8")
    if bar is not None:
        bar.write(f"held-out at step {step}: " + ", ".join(
            f"{k} {point['real'][k]:.0%}/{point['white'][k]:.0%}" for k in point["real"]) + " (real/white)")


def weights_sha256(model_dir: Path) -> str:
    digest = hashlib.sha256()
    with open(Path(model_dir) / WEIGHTS, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def heldout_examples(seed: int, n: int) -> list[perception.Example]:
    return [perception.make_example(seed, index, split=HELDOUT_SPLIT) for index in range(n)]


def perception_report(model_dir, *, seed: int = 1, n: int = 60) -> dict[str, dict]:
    """How well a model reads `n` held-out perception examples (stream `seed` of the held-out
    split, which training never draws from), per condition -- `real` images, every image `white`,
    every image swapped for `other` held-out example's -- and per question kind: the share answered
    exactly (every answer token the model's most likely next token, given the conversation so far),
    the count, and for box answers the share whose (teacher-forced) box has IoU >= 0.5."""
    from stages.base_probe import score
    from vilasr.model import Qwen25VL
    from vilasr.processing import Processor

    model, processor = Qwen25VL.from_pretrained(model_dir), Processor.from_pretrained(model_dir)
    return score(model, processor, heldout_examples(seed, n))


def _flat(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _save(path: Path, step: int, model, optimizer, losses: list[float]) -> None:
    arrays = {f"m{i}": a for i, a in enumerate(_flat(nnx.state(model)))}
    arrays.update({f"o{i}": a for i, a in enumerate(_flat(nnx.state(optimizer)))})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, step=np.int64(step), losses=np.asarray(losses, np.float64), **arrays)
    os.replace(tmp, path)


def _restore(path: Path, model, optimizer) -> tuple[int, list[float]]:
    with np.load(path) as z:
        for obj, prefix in ((model, "m"), (optimizer, "o")):
            state = nnx.state(obj)
            leaves, treedef = jax.tree.flatten(state)
            new = [z[f"{prefix}{i}"].astype(np.asarray(leaf).dtype) for i, leaf in enumerate(leaves)]
            nnx.update(obj, jax.tree.unflatten(treedef, new))
        return int(z["step"]), [float(x) for x in z["losses"]]


def run_pretrain(*, out, seed: int = 0, plan: PretrainPlan = PretrainPlan(), command: str = "",
                 progress: bool = True) -> SftResult:
    """Train on a fresh stream, export `out/model` and write `out/model/BASE.json`. A run stopped
    by a signal returns with `model_dir` None (rerun to resume)."""
    from stages.base_probe import batch_arrays, build, train_step

    plan.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    wanted = json.loads(json.dumps({"command": "pretrain-base", "seed": seed, "plan": dataclasses.asdict(plan)}))
    manifest = out / MANIFEST
    if manifest.exists():
        have = json.loads(manifest.read_text(encoding="utf-8"))
        if have != wanted:
            raise ConfigError(f"{out} holds a pretraining run with other settings ({have}); use a new --out")
    else:
        manifest.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")

    settings = plan.probe_settings(seed)
    model, processor, optimizer = build(settings)
    cfg = model.config
    step, losses = 0, []
    if (out / CHECKPOINT).exists():
        step, losses = _restore(out / CHECKPOINT, model, optimizer)
    model_dir = out / "model"
    if step >= plan.steps and (model_dir / RECORD).exists():
        return SftResult(RunResult(step, StopReason.FINISHED, losses, {}), model_dir)

    stop: list[StopReason] = []
    handlers = {}
    for signum, reason in ((signal.SIGINT, StopReason.INTERRUPTED), (signal.SIGTERM, StopReason.PREEMPTED)):
        try:
            handlers[signum] = signal.signal(signum, lambda *_, r=reason: stop.append(r))
        except ValueError:   # not the main thread: no signal handling
            pass
    metrics_path = out / "metrics.jsonl"
    kept = metrics_path.read_text(encoding="utf-8").splitlines()[:step] if metrics_path.exists() else []
    metrics_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=plan.steps, initial=step, desc="pretrain base", dynamic_ncols=True)
        with open(metrics_path, "a", encoding="utf-8") as metrics:
            while step < plan.steps and not stop:
                t0 = time.perf_counter()
                examples = [perception.make_example(seed, (step * plan.batch_size + k) % plan.images,
                                                    maze_max_n=plan.maze_max_n(step))
                            for k in range(plan.batch_size)]
                arrays, batch = batch_arrays(examples, processor, cfg, settings.max_seq_len)
                loss = float(train_step(model, optimizer, *arrays))
                losses.append(loss)
                step += 1
                metrics.write(json.dumps({"step": step, "loss": round(loss, 5), "tokens": batch.num_loss_tokens,
                                          "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
                metrics.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                if plan.heldout_every and step % plan.heldout_every == 0 and step < plan.steps:
                    _write_curve_point(out / HELDOUT_CURVE, step, model, processor, seed + 1, plan.curve_examples, bar)
                if step % plan.save_every == 0 and step < plan.steps:
                    _save(out / CHECKPOINT, step, model, optimizer, losses)
        _save(out / CHECKPOINT, step, model, optimizer, losses)
    finally:
        if bar is not None:
            bar.close()
        for signum, old in handlers.items():
            signal.signal(signum, old)
    if stop:
        return SftResult(RunResult(step, stop[0], losses, {}), None)

    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    scores = score_model(model, processor, seed=seed + 1, n=plan.report_examples)
    record = {"command": command, "seed": seed, "plan": dataclasses.asdict(plan),
              "sha256": weights_sha256(model_dir),
              "final_loss": float(np.mean(losses[-20:])) if losses else None,
              "minutes_this_run": round((time.monotonic() - started) / 60, 1),
              "heldout": {"split": HELDOUT_SPLIT, "seed": seed + 1, "examples": plan.report_examples,
                          "scoring": "exact: every answer token the argmax given the conversation so far "
                                     "(teacher-forced); iou50: share of box answers whose teacher-forced box "
                                     "has IoU >= 0.5 with the true one"},
              "perception_heldout": scores["real"],
              "ablation": {"white_image": scores["white"], "other_image": scores["other"]}}
    (model_dir / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return SftResult(RunResult(step, StopReason.FINISHED, losses, {}), model_dir)


def score_model(model, processor, *, seed: int, n: int) -> dict:
    from stages.base_probe import score

    return score(model, processor, heldout_examples(seed, n))
