"""Settings of the sampler and the rollout, as frozen dataclasses (importing this module is cheap:
no JAX). Each field's metadata carries the help text the command line shows.

`RolloutConfig.for_eval()` and `RolloutConfig.for_rl()` are the reference's settings per use
(their values and why are in vilasr/uses.py); `RolloutConfig()` is a generic starting point.
"""

from __future__ import annotations

import dataclasses

from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from vilasr import uses
from vilasr.errors import ConfigError
from vilasr.uses import ImageTokens, Use


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
    """Stop rules, budgets, image size, sampling, tool-call reading and wording of a rollout."""

    max_turns: int = dataclasses.field(default=uses.MAX_TURNS, metadata={"help": "model turns per trajectory"})
    max_turns_maze: int = dataclasses.field(default=uses.MAX_TURNS_MAZE,
                                            metadata={"help": "model turns per maze trajectory"})
    max_images: int = dataclasses.field(default=uses.MAX_IMAGES[Use.EVAL],
                                        metadata={"help": "image cap, inputs included"})
    max_turn_tokens: int = dataclasses.field(default=1024, metadata={"help": "tokens per model turn"})
    max_response_tokens: int | None = dataclasses.field(
        default=13312, metadata={"help": "response tokens per trajectory in all ('none': no limit)"})
    image_tokens: ImageTokens = dataclasses.field(
        default=ImageTokens.REAL, metadata={"help": "how the response budget counts an image: its real tokens, "
                                                    "or a flat 256 as the reference's RL does"})
    max_pixels: int | None = dataclasses.field(
        default=None, metadata={"help": "resize input images to at most this many pixels ('none': the model "
                                        "folder's processor setting)"})
    strict: bool = dataclasses.field(
        default=False, metadata={"help": "end a trajectory on any malformed tool item (ToolGenError) instead of "
                                         "the reference's tolerance"})
    sampling: SamplingConfig = SamplingConfig()
    template: PromptTemplate = DEFAULT_TEMPLATE
    draw_labels: bool = True
    persistent_cache: bool = True

    def __post_init__(self):
        for name in ("max_turns", "max_turns_maze", "max_images", "max_turn_tokens", "max_response_tokens",
                     "max_pixels"):
            value = getattr(self, name)
            if value is None and name in ("max_response_tokens", "max_pixels"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RolloutConfig.{name} must be a positive integer, got {value!r}")
        try:
            object.__setattr__(self, "image_tokens", ImageTokens(self.image_tokens))
        except ValueError:
            raise ConfigError(f"RolloutConfig.image_tokens must be one of {[str(k) for k in ImageTokens]}, "
                              f"got {self.image_tokens!r}") from None
        if not isinstance(self.template, PromptTemplate):
            raise ConfigError(f"RolloutConfig.template must be a PromptTemplate (load a file with "
                              f"PromptTemplate.from_file), got {type(self.template).__name__}")

    @classmethod
    def for_use(cls, use: Use | str, **overrides) -> "RolloutConfig":
        """The reference's rollout settings for evaluation or RL (vilasr/uses.py), then `overrides`."""
        try:
            use = Use(use)
        except ValueError:
            raise ConfigError(f"unknown use {use!r}; choose one of {[str(u) for u in Use]}") from None
        if use not in uses.TURN_TOKENS:
            raise ConfigError(f"{use} has no rollout; its image size is Use.{use.name}.max_pixels")
        preset = dict(
            max_turns=uses.MAX_TURNS, max_turns_maze=uses.MAX_TURNS_MAZE, max_images=uses.MAX_IMAGES[use],
            max_turn_tokens=uses.TURN_TOKENS[use], max_response_tokens=uses.RESPONSE_TOKENS[use],
            image_tokens=ImageTokens.FLAT if use is Use.RL else ImageTokens.REAL, max_pixels=use.max_pixels,
            sampling=SamplingConfig(temperature=uses.TEMPERATURE[use], top_p=uses.TOP_P[use]))
        return cls(**{**preset, **overrides})

    @classmethod
    def for_eval(cls, **overrides) -> "RolloutConfig":
        """Evaluation: 16,384 tokens per turn and no total budget, T 0.75 / top-p 0.9, cap 45, 448*28*28 px."""
        return cls.for_use(Use.EVAL, **overrides)

    @classmethod
    def for_rl(cls, **overrides) -> "RolloutConfig":
        """RL: 1,024 tokens per turn, 13,312 in all (images a flat 256), T 1.0, cap 42, 256*28*28 px."""
        return cls.for_use(Use.RL, **overrides)

    def turn_budget(self, task) -> int:
        """The model turns a task's trajectory may take (mazes get more)."""
        return self.max_turns_maze if task.is_maze else self.max_turns
