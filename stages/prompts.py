"""Prompts with ground truth, for the stages that sample (reflective rejection sampling, GRPO).

Sources: an RL prompt file (JSON lines: question, answer, image_path, question_type, data_type,
options -- docs/method.md, file formats), a benchmark-form JSON list, or a `vilasr synth`
dataset folder. A record that cannot be used (a missing field or image) is skipped and counted
with its reason, never fatal.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from drawing_ops.protocol import ProblemType
from stages.data import SkipLog
from synth import io as synth_io
from vilasr.errors import ConfigError
from vilasr.rollout import RolloutConfig, RolloutTask, Trajectory, rollout


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A question to sample on, with its ground truth and the family it is reported under."""

    task: RolloutTask
    answer: str
    family: str


def load_prompts(path, skipped: SkipLog | None = None) -> list[Prompt]:
    """Every usable prompt of `path` (see the module's docstring); bad records go to `skipped`."""
    skipped = skipped if skipped is not None else SkipLog()
    path = Path(path)
    if path.is_dir():
        manifest = synth_io.read_manifest(path)
        if manifest["format"] == "tfds":
            return [_from_sample(s) for s in synth_io.load_samples(path)]
        path = path / manifest["files"]["train"]
        if manifest["format"] == "sharegpt":
            return [_from_sample(s) for s in synth_io.import_sharegpt(path)]
    if not path.is_file():
        raise ConfigError(f"prompt file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in
                                                                           text.splitlines() if line.strip()]
    except ValueError as exc:
        raise ConfigError(f"{path} is neither a JSON list nor JSON lines of prompts: {exc}") from None
    prompts = []
    for record in records:
        try:
            prompts.append(_from_record(record, path.parent))
        except (KeyError, TypeError, AttributeError) as exc:
            skipped.add(f"a prompt record lacks a field or has the wrong type ({exc})")
        except (OSError, ValueError) as exc:
            skipped.add(f"a prompt's image cannot be read ({type(exc).__name__})")
    if not prompts:
        raise ConfigError(f"{path} holds no usable prompt ({skipped.total} record(s) skipped: "
                          f"{dict(skipped.counts)})")
    return prompts


def _from_sample(sample) -> Prompt:
    task = RolloutTask(images=sample.images, question=sample.question, options=tuple(sample.options),
                       problem_type=sample.problem_type or ProblemType.MULTIPLE_CHOICE, data_type=sample.data_type)
    return Prompt(task, sample.answer, sample.family)


def _from_record(record: dict, base: Path) -> Prompt:
    paths = record.get("image_path") or []
    images = [synth_io.read_png(p if Path(p).is_absolute() else base / p) for p in paths]
    problem_type = record.get("problem_type") or ProblemType.MULTIPLE_CHOICE
    task = RolloutTask(images=images, question=str(record["question"]),
                       options=tuple(record.get("options") or ()), problem_type=problem_type,
                       data_type=record.get("data_type", "single_view"))
    family = record.get("question_type") or record.get("original_question_type") or task.data_type
    return Prompt(task, str(record["answer"]), family)


def sample(model, processor, prompts: Sequence[Prompt], *, k: int, config: RolloutConfig, seed: int = 0,
           batch_size: int = 16, forced: Sequence[Sequence[str]] | None = None,
           progress: bool = True) -> list[tuple[Prompt, Trajectory]]:
    """K rollouts of every prompt, in prompt order, streamed through `batch_size` slots (continuous
    batching; row seeds all distinct). `forced[i]` scripts the turns of the i-th row (prompt
    i // k, sample i % k), for tests."""
    rows = [(p, dataclasses.replace(p.task, seed=n * k + j)) for n, p in enumerate(prompts) for j in range(k)]
    trajs = rollout(model, processor, [task for _, task in rows], config, seed=seed, forced_turns=forced,
                    progress=progress, slots=min(batch_size, len(rows)) or 1)
    return [(p, t) for (p, _), t in zip(rows, trajs)]
