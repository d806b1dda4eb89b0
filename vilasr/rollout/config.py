"""Settings of the sampler and the rollout, as frozen dataclasses (importing this module is cheap:
no JAX). Each field's metadata carries the help text the command line shows."""

from __future__ import annotations

import dataclasses

from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from vilasr.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How to pick tokens. temperature 0 (or greedy=True) means argmax."""

    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "nucleus sampling mass; 1 = off"})
    top_k: int = dataclasses.field(default=0, metadata={"help": "sample among the k likeliest tokens; 0 = off"})
    greedy: bool = dataclasses.field(default=False, metadata={"help": "always take the likeliest token"})

    def __post_init__(self):
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """Stop rules, sampling and wording of a rollout (defaults: the reference's evaluation caps)."""

    max_turns: int = dataclasses.field(default=10, metadata={"help": "model turns per trajectory"})
    max_turns_maze: int = dataclasses.field(default=20, metadata={"help": "model turns per maze trajectory"})
    max_images: int = dataclasses.field(default=45, metadata={"help": "image cap, inputs included"})
    max_turn_tokens: int = dataclasses.field(default=1024, metadata={"help": "tokens per model turn"})
    max_response_tokens: int = dataclasses.field(default=13312,
                                                 metadata={"help": "response tokens per trajectory in all"})
    sampling: SamplingConfig = SamplingConfig()
    template: PromptTemplate = DEFAULT_TEMPLATE
    draw_labels: bool = True
    persistent_cache: bool = True

    def __post_init__(self):
        for name in ("max_turns", "max_turns_maze", "max_images", "max_turn_tokens", "max_response_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RolloutConfig.{name} must be a positive integer, got {value!r}")

    def turn_budget(self, task) -> int:
        """The model turns a task's trajectory may take (mazes get more)."""
        return self.max_turns_maze if task.is_maze else self.max_turns
