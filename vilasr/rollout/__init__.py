"""Sampling and multi-turn drawing rollouts.

    config.py      `SamplingConfig`, `RolloutConfig` (cheap to import: no JAX)
    sampler.py     jitted prefill + `lax.while_loop` decode over a donated KV cache
    vision.py      images on the device: preprocess, draw (JAX renderer) and encode
    trajectory.py  `RolloutTask` in, `Trajectory` out (`Segment`s of model / other tokens)
    loop.py        the multi-turn loop on one persistent cache, continuous batching over slots
                   (`rollout_stream`; `rollout` collects it in task order)

The loop (and with it JAX) loads on first use of `rollout`, `rollout_stream` or `prompt_length`.
"""

from importlib import import_module

from drawing_ops.protocol import FinishReason
from vilasr.rollout.config import RolloutConfig, SamplingConfig
from vilasr.rollout.trajectory import RolloutTask, Segment, Trajectory

__all__ = ["FinishReason", "RolloutConfig", "RolloutTask", "SamplingConfig", "Segment", "Trajectory", "prompt_length", "rollout",
           "rollout_stream"]


def __getattr__(name):
    if name in ("rollout", "rollout_stream", "prompt_length"):
        return getattr(import_module("vilasr.rollout.loop"), name)
    raise AttributeError(f"module 'vilasr.rollout' has no attribute {name!r}")
