"""Supervised fine-tuning on drawing trajectories: stage 1 (cold start) and the SFT half of stage 2
(reflective rejection sampling), on the shared trainer.

    result = run_sft(data="data/maze", out="runs/cold", preset="tiny", config=TrainConfig(...))

The result folder holds `checkpoints/` (Orbax; a rerun into the same folder resumes), `metrics.jsonl`,
`tensorboard/`, and when the run finishes, `model/`: a Hugging Face folder (safetensors,
config.json, tokenizer and processor files) that transformers loads and `--model` accepts.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from stages.config import Stage, TrainConfig
from stages.data import SkipLog, batches, open_source
from stages.trainer import RunResult, StopReason, Trainer, check_host_memory, compute_dtype
from vilasr.errors import ConfigError
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.model.config import Remat
from vilasr.processing import Processor
from vilasr.processing.processor import TINY_MAX_PIXELS

BUILT_IN_PRESETS = ("tiny",)   # presets with a built-in tokenizer (others need --model DIR)


@dataclasses.dataclass
class SftResult:
    run: RunResult
    model_dir: Path | None   # the exported Hugging Face folder (None until the run finishes)


def load_model(*, preset: str | None, model_dir: Path | None, config: TrainConfig):
    """The starting model and its processor: a local Hugging Face folder, or a preset initialised
    from `config.seed`. Weights are float32 masters; compute runs in `config.precision`."""
    dtype = compute_dtype(config)
    if model_dir is not None:
        from vilasr.model.hf import read_config

        model_config = read_config(Path(model_dir))
        check_host_memory(model_config, config)
        model = Qwen25VL.from_pretrained(model_dir, dtype=dtype, param_dtype=jnp.float32, remat=Remat(config.remat))
        return model, Processor.from_pretrained(model_dir, max_pixels=config.max_pixels)
    if preset not in BUILT_IN_PRESETS:
        raise ConfigError(f"preset {preset!r} has no built-in tokenizer; pass --model DIR (a local Hugging Face "
                          f"folder of that size), or use one of {BUILT_IN_PRESETS}")
    model_config = Qwen25VLConfig.preset(preset).replace(remat=Remat(config.remat))
    check_host_memory(model_config, config)
    model = Qwen25VL(model_config, dtype=dtype, param_dtype=jnp.float32, rngs=nnx.Rngs(config.seed))
    # the tiny preset sees small images whatever the recipe says (its processor's budget)
    return model, Processor.tiny(max_pixels=min(config.max_pixels, TINY_MAX_PIXELS))


def total_steps(config: TrainConfig, num_records: int) -> int:
    return config.max_steps or max(1, math.ceil(config.epochs * num_records / config.batch_size))


def run_sft(*, data, out, preset: str | None = None, model_dir: Path | None = None,
            config: TrainConfig = TrainConfig.for_stage(Stage.COLD_START), devices: int = 0,
            progress: bool = True, model=None, processor=None, checkpoints: str | None = None) -> SftResult:
    """Train on the conversations in `data` (a sharegpt file or a synth dataset folder);
    `checkpoints`: where Orbax keeps them, if not in `out` (a folder or a gs:// URL)."""
    records = open_source(data)   # first: a missing or unreadable dataset fails before any model work
    Path(out).mkdir(parents=True, exist_ok=True)   # and so does an output folder we cannot write
    if model is None:
        model, processor = load_model(preset=preset, model_dir=model_dir, config=config)
    steps = total_steps(config, len(records))
    trainer = Trainer(model, processor, config, out, total_steps=steps, devices=devices, progress=progress,
                      checkpoints=checkpoints)
    passes = math.ceil(steps * config.batch_size / len(records)) + 1   # room for skipped records
    skipped = SkipLog()

    def make_batches():
        return batches(records, processor, micro_batch=config.micro_size, max_seq_len=config.max_seq_len,
                       seed=config.seed, epochs=passes, skipped=skipped, host=jax.process_index(),
                       hosts=jax.process_count())

    result = trainer.run(make_batches, skipped)
    exported = export_model(model, processor, Path(out)) if result.stop is StopReason.FINISHED else None
    return SftResult(result, exported)


def export_model(model, processor, run_dir: Path) -> Path:
    """A finished run's weights and processor as a Hugging Face folder, `run_dir/model`."""
    exported = run_dir / "model"
    model.save_pretrained(exported)
    processor.save_pretrained(exported)
    return exported
