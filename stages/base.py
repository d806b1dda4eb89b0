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


def run_pretrain(*, out, seed: int = 0, plan: PretrainPlan = PretrainPlan(), command: str = "",
                 progress: bool = True) -> SftResult:
    """Make the data, train, export `out/model` and write `out/model/BASE.json`. A run stopped by a
    signal returns with `model_dir` None (rerun to resume)."""
    out = Path(out)
    started = time.monotonic()
    data = perception.write_dataset(out / "data", plan.images, seed, progress=progress)
    result = run_sft(data=data, out=out, preset="tiny", config=plan.train_config(seed), devices=1,
                     progress=progress)
    if result.model_dir is None:
        return result
    record = {"command": command, "seed": seed, "plan": dataclasses.asdict(plan),
              "sha256": weights_sha256(result.model_dir), "final_loss": result.run.losses[-1] if result.run.losses
              else None, "minutes_this_run": round((time.monotonic() - started) / 60, 1)}
    (result.model_dir / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return result
