"""One cold start shared by the stage tests (SFT learning, GRPO learning and resume)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from colour_task import write_cold_start_data
from stages.config import TrainConfig
from stages.sft import load_model, run_sft


@dataclasses.dataclass(frozen=True)
class ColdStart:
    model_dir: Path          # the exported Hugging Face folder (float32 weights)
    losses: list[float]
    vision_moved: bool       # did the (frozen) vision tower change?
    decoder_moved: bool


@pytest.fixture(scope="session")
def cold_start(tmp_path_factory) -> ColdStart:
    """A tiny model cold-started on the colour task's protocol: box the object, look, answer."""
    root = tmp_path_factory.mktemp("cold_start")
    config = TrainConfig(learning_rate=3e-3, max_steps=80, batch_size=4, save_every=1000, precision="fp32",
                         max_seq_len=1024, warmup_ratio=0.0, schedule="constant")
    model, processor = load_model(preset="tiny", model_dir=None, config=config)
    vision_before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model.visual, nnx.Param))]
    embed_before = np.asarray(model.embed.get_value())
    result = run_sft(data=write_cold_start_data(root / "data"), out=root / "run", config=config, devices=1,
                     progress=False, model=model, processor=processor)
    vision_after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model.visual, nnx.Param))]
    return ColdStart(result.model_dir, result.run.losses,
                     vision_moved=not all(np.array_equal(a, b) for a, b in zip(vision_before, vision_after)),
                     decoder_moved=not np.array_equal(embed_before, np.asarray(model.embed.get_value())))
