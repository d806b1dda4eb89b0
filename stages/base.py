"""Pretraining the small base model the demo starts from: the tiny preset, initialised from a seed
and trained (vision tower included) on synthetic perception and grounding questions
(synth.perception), so that stage 1 starts from a model that can see.

    result = run_pretrain(out="runs/base", seed=0)    # runs/base/model + runs/base/BASE.json

A rerun into the same folder resumes (the data is reused, the trainer goes on from its last
checkpoint). `BASE.json` records the command, the seed, the settings and the sha256 of the
weights; the same seed on the same machine type gives the same bytes. The model the package ships
(`SHIPPED_BASE`) was made this way; its BASE.json says how.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from stages.config import Precision, Schedule, TrainConfig
from stages.sft import SftResult, run_sft
from synth import perception

SHIPPED_BASE = Path(__file__).resolve().parent / "assets" / "base-tiny"
RECORD = "BASE.json"
WEIGHTS = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class PretrainPlan:
    """How the base model is made: data size and the SFT settings on top of the tiny preset."""

    images: int = 3000
    steps: int = 1200
    batch_size: int = 16
    learning_rate: float = 2e-3
    report_examples: int = 60     # held-out perception examples the record scores the model on

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(learning_rate=self.learning_rate, schedule=Schedule.COSINE.value, warmup_ratio=0.03,
                           max_steps=self.steps, batch_size=self.batch_size, weight_decay=0.01,
                           precision=Precision.FP32.value, freeze_vision=False, max_seq_len=1024, seed=seed,
                           save_every=250, keep_checkpoints=2)


def weights_sha256(model_dir: Path) -> str:
    digest = hashlib.sha256()
    with open(Path(model_dir) / WEIGHTS, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def perception_report(model_dir, *, seed: int = 1, n: int = 60) -> dict[str, dict]:
    """How well a model reads the perception questions of `n` examples of stream `seed` (use one
    training did not: the shipped base trained on seed 0): per question kind, the share answered
    exactly (every answer token the model's most likely next token, given the conversation so far)
    and the count. One forward per example."""
    from vilasr.model import Qwen25VL
    from vilasr.processing import Processor

    model, processor = Qwen25VL.from_pretrained(model_dir), Processor.from_pretrained(model_dir)
    right: dict[str, list[bool]] = {}
    for index in range(n):
        example = perception.make_example(seed, index)
        text = processor.apply_chat_template(example.conversation(), add_generation_prompt=False)
        inputs = processor(text, images=example.images)
        ids = np.asarray(inputs["input_ids"])[0]
        predicted = np.asarray(model(**inputs)).argmax(-1)[0]
        mask = processor.assistant_token_mask(ids)
        # each assistant turn is one run of the mask, in question order
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
        for qa, (start, stop) in zip(example.qa, edges.reshape(-1, 2)):
            right.setdefault(qa.kind, []).append(bool((predicted[start - 1:stop - 1] == ids[start:stop]).all()))
    return {kind: {"exact": float(np.mean(hits)), "questions": len(hits)} for kind, hits in sorted(right.items())}


def run_pretrain(*, out, seed: int = 0, plan: PretrainPlan = PretrainPlan(), command: str = "",
                 progress: bool = True) -> SftResult:
    """Make the data, train, export `out/model` and write `out/model/BASE.json`. A run stopped by a
    signal returns with `model_dir` None (rerun to resume)."""
    out = Path(out)
    started = time.monotonic()
    config = plan.train_config(seed)   # first: bad settings fail before minutes of data making
    data = perception.write_dataset(out / "data", plan.images, seed, progress=progress)
    result = run_sft(data=data, out=out, preset="tiny", config=config, devices=1, progress=progress)
    if result.model_dir is None:
        return result
    record = {"command": command, "seed": seed, "plan": dataclasses.asdict(plan),
              "sha256": weights_sha256(result.model_dir), "final_loss": result.run.losses[-1] if result.run.losses
              else None, "minutes_this_run": round((time.monotonic() - started) / 60, 1),
              "perception_heldout": perception_report(result.model_dir, seed=seed + 1, n=plan.report_examples)}
    (result.model_dir / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return result
