"""Training settings as one frozen dataclass with a preset per stage (docs/method.md, the recipe).

Every field carries its help text in its metadata; the command line builds one flag per field
(vilasr/cli/flags.py), so flags and config can never drift apart.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

from vilasr.errors import ConfigError
from vilasr.model.config import Remat
from vilasr.uses import SFT_MAX_TOKENS, Use


class Stage(str, enum.Enum):
    COLD_START = "cold-start"
    REFLECTIVE = "reflective"
    RL = "rl"

    def __str__(self) -> str:
        return self.value


class Schedule(str, enum.Enum):
    COSINE = "cosine"       # linear warm-up, then cosine decay to 0
    CONSTANT = "constant"   # linear warm-up (if any), then constant

    def __str__(self) -> str:
        return self.value


class Precision(str, enum.Enum):
    """Compute dtype. Master weights and optimizer state stay float32 either way."""

    BF16 = "bf16"
    FP32 = "fp32"

    def __str__(self) -> str:
        return self.value


def _field(default, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What one training run does. Defaults: ViLaSR's cold-start recipe for the 7B model."""

    learning_rate: float = _field(1e-5, "peak learning rate")
    schedule: str = _field(Schedule.COSINE.value, "learning-rate schedule: cosine or constant")
    warmup_ratio: float = _field(0.1, "share of the steps spent warming up linearly")
    epochs: float = _field(3.0, "passes over the data (ignored when --max-steps is set)")
    max_steps: int = _field(0, "optimizer steps to run; 0 = from --epochs")
    batch_size: int = _field(32, "sequences per optimizer step (the effective batch)")
    micro_batch_size: int = _field(0, "sequences per forward/backward; 0 = the whole batch (no accumulation)")
    weight_decay: float = _field(0.0, "AdamW weight decay")
    max_grad_norm: float = _field(1.0, "global gradient-norm clip; 0 = off")
    precision: str = _field(Precision.BF16.value, "compute dtype: bf16 or fp32 (weights stay fp32)")
    remat: str = _field(Remat.NONE.value, "what each layer keeps for the backward pass: none (keep all), "
                                          "dots (keep matmul outputs) or full (recompute the layer)")
    freeze_vision: bool = _field(True, "keep the vision tower and its patch merger fixed")
    max_seq_len: int = _field(SFT_MAX_TOKENS, "cut sequences at this many tokens")
    max_pixels: int = _field(Use.SFT.max_pixels, "resize images to at most this many pixels")
    seed: int = _field(0, "seed of the data order and of a preset's initial weights")
    save_every: int = _field(100, "checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = _field(3, "checkpoints to keep")
    log_every: int = _field(1, "write metrics every this many steps")

    def __post_init__(self):
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.epochs > 0 or self.max_steps > 0, "give epochs > 0 or max_steps > 0")
        _check(self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.micro_batch_size >= 0, f"micro_batch_size must be >= 0, got {self.micro_batch_size}")
        _check(self.batch_size % self.micro_size == 0,
               f"batch_size {self.batch_size} must be a multiple of micro_batch_size {self.micro_size}")
        _check(self.weight_decay >= 0 and self.max_grad_norm >= 0, "weight_decay and max_grad_norm must be >= 0")
        _check(self.max_seq_len >= 16, f"max_seq_len must be >= 16, got {self.max_seq_len}")
        _check(self.max_pixels >= 28 * 28, f"max_pixels must be >= {28 * 28}, got {self.max_pixels}")
        _check(self.save_every >= 1 and self.keep_checkpoints >= 1 and self.log_every >= 1,
               "save_every, keep_checkpoints and log_every must be >= 1")
        for name, kind in (("schedule", Schedule), ("precision", Precision), ("remat", Remat)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value).value)
            except ValueError:
                raise ConfigError(f"{name} must be one of {[k.value for k in kind]}, got {value!r}") from None

    @property
    def micro_size(self) -> int:
        return self.micro_batch_size or self.batch_size

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_size

    @classmethod
    def for_stage(cls, stage: Stage | str, **overrides) -> "TrainConfig":
        """The reference recipe of a stage (its 7B settings), with `overrides` applied."""
        stage = Stage(stage)
        base = {
            Stage.COLD_START: {},
            Stage.REFLECTIVE: {},
            Stage.RL: dict(learning_rate=1e-6, schedule=Schedule.CONSTANT.value, warmup_ratio=0.0,
                           weight_decay=1e-2, freeze_vision=False, max_pixels=Use.RL.max_pixels, batch_size=128),
        }[stage]
        return cls(**{**base, **overrides})

    @classmethod
    def from_file(cls, path, **overrides) -> "TrainConfig":
        """Fields from a JSON file (names as in this class), then `overrides`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the training config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object of TrainConfig fields")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"{path}: unknown TrainConfig fields {unknown}")
        return cls(**{**data, **overrides})

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
