"""The three task families behind one interface: a config class with a `size` preset, and
`make_sample(family, seed, index, ...)` / `iter_samples(...)`."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from synth import maze, multiview, static_scene
from synth.records import FAMILIES, TRAJECTORY_KINDS, Sample
from synth.trajectory import ThinkStyle

_MODULES = {"maze": maze, "static": static_scene, "multiview": multiview}
_CONFIGS = {"maze": maze.MazeConfig, "static": static_scene.StaticConfig, "multiview": multiview.MultiviewConfig}


def default_config(family: str, size: int | None = None, **overrides):
    """The family's config; `size` sets the image size (maze: side; static: side; multi-view:
    width, with height 3/4 of it)."""
    _check_family(family)
    config = _CONFIGS[family]()
    if size is not None:
        if family == "maze":
            config = replace(config, size=size)
        elif family == "static":
            config = replace(config, width=size, height=size)
        else:
            config = replace(config, width=size, height=(size * 3) // 4)
    return replace(config, **overrides) if overrides else config


def make_sample(family: str, seed: int, index: int, *, config=None, trajectory: str = "none",
                split: str = "train", backend: str = "numpy", template: PromptTemplate = DEFAULT_TEMPLATE,
                think: ThinkStyle = ThinkStyle.FULL) -> Sample:
    """One sample; its trajectory's prompts and feedback turns are worded by `template`, its thinking
    text written in full or brief (`think`)."""
    _check_family(family)
    if trajectory not in TRAJECTORY_KINDS:
        raise ValueError(f"trajectory must be one of {TRAJECTORY_KINDS}, got {trajectory!r}")
    config = config if config is not None else default_config(family)
    return _MODULES[family].make_sample(seed, index, config, trajectory=trajectory, split=split, backend=backend,
                                        template=template, think=ThinkStyle(think))


def iter_samples(family: str, n: int, seed: int, *, config=None, trajectory: str = "none", split: str = "train",
                 backend: str = "numpy", start: int = 0, template: PromptTemplate = DEFAULT_TEMPLATE,
                 think: ThinkStyle = ThinkStyle.FULL) -> Iterator[Sample]:
    for index in range(start, start + n):
        yield make_sample(family, seed, index, config=config, trajectory=trajectory, split=split, backend=backend,
                          template=template, think=think)


def config_to_json(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()}


def config_from_json(family: str, data: dict):
    _check_family(family)
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return _CONFIGS[family](**fields)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
