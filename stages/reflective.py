"""Stage 2: reflective rejection sampling (docs/method.md, the recipe).

From the stage-1 model, sample K rollouts per prompt; keep a trajectory when it is correct (RL
accuracy 1), well formed (format 1) and reflective (the paper's rule: a label drawn again with
other parameters in a later turn, boxes or lines -- `drawing_ops.is_reflective`); write the kept
ones as a sharegpt dataset with their drawn images, and a report; then fine-tune *from the
stage-1 weights* on them (the reference's config starts again from the base model: we follow the
paper).

    result = run_reflective(model_dir="runs/cold/model", prompts="data/maze_rl", out="runs/reflective")
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

from drawing_ops import is_reflective
from stages.config import Stage, TrainConfig
from stages.prompts import Prompt, load_prompts, sample
from stages.sft import load_model, run_sft
from synth import io as synth_io
from vilasr.errors import ConfigError
from vilasr.eval.rewards import trajectory_reward
from vilasr.rollout import RolloutConfig, Trajectory


class NothingKept(ConfigError):
    """Sampling finished, but no trajectory passed the filter: there is nothing to fine-tune on."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    correct: bool
    well_formed: bool
    reflective: bool

    @property
    def kept(self) -> bool:
        return self.correct and self.well_formed and self.reflective


def judge(trajectory: Trajectory, answer: str) -> Verdict:
    """Whether a sampled trajectory passes the stage-2 filter, and on which count it fails."""
    reward = trajectory_reward(trajectory.turns, answer, str(trajectory.task.problem_type))
    return Verdict(correct=reward["accuracy"] == 1.0, well_formed=reward["format"] == 1.0,
                   reflective=is_reflective(trajectory.turns))


# ----------------------------------------------------------------------------- the kept data
def write_dataset(kept: Sequence[Trajectory], out_dir, name: str = "train") -> Path:
    """The kept trajectories as a sharegpt file (conversation + every image as a PNG)."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for n, traj in enumerate(kept):
        paths = []
        for k, image in enumerate(traj.images, start=1):
            rel = f"images/{n:06d}_{k}.png"
            (out_dir / rel).write_bytes(synth_io.png_bytes(image))
            paths.append(rel)
        records.append({"conversations": traj.messages, "images": paths})
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def report(judged: Sequence[tuple[Prompt, Trajectory, Verdict]]) -> dict:
    """Kept / sampled per family, reflection and success rates, mean turns."""
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for prompt, traj, verdict in judged:
        c = by_family[prompt.family]
        c["sampled"] += 1
        c["kept"] += verdict.kept
        c["correct"] += verdict.correct
        c["well_formed"] += verdict.well_formed
        c["reflective"] += verdict.reflective
        c["turns"] += len(traj.turns)
    total = sum((c for c in by_family.values()), collections.Counter())
    n = max(total["sampled"], 1)
    return {"sampled": total["sampled"], "kept": total["kept"], "reflective_rate": total["reflective"] / n,
            "correct_rate": total["correct"] / n, "format_rate": total["well_formed"] / n,
            "mean_turns": total["turns"] / n,
            "families": {f: {"sampled": c["sampled"], "kept": c["kept"]} for f, c in sorted(by_family.items())}}


def write_report(summary: dict, path: Path, done: Path | None = None) -> None:
    """The summary as Markdown at `path`; and as JSON at `done` (its presence marks finished sampling)."""
    lines = ["# Reflective rejection sampling", "",
             f"kept {summary['kept']} of {summary['sampled']} sampled trajectories; "
             f"reflective {summary['reflective_rate']:.1%}, correct {summary['correct_rate']:.1%}, "
             f"well formed {summary['format_rate']:.1%}, {summary['mean_turns']:.2f} turns on average", "",
             "| family | sampled | kept |", "|---|---|---|"]
    lines += [f"| {f} | {c['sampled']} | {c['kept']} |" for f, c in summary["families"].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if done is not None:
        partial = done.with_name(done.name + ".partial")
        partial.write_text(json.dumps(summary, indent=1), encoding="utf-8")
        partial.replace(done)


def run_reflective(*, prompts, out, preset: str | None = None, model_dir=None, k: int = 8,
                   rollout_config: RolloutConfig | None = None, config: TrainConfig | None = None, devices: int = 0,
                   progress: bool = True, model=None, processor=None, checkpoints: str | None = None):
    """Sample from the stage-1 model (`model_dir`, a preset, or `model`), keep, write, and fine-tune
    from the same weights. Returns (the sampling summary, the SFT result).

    A rerun into the same `out` resumes: sampling that finished (`report.json` and `data/` are
    written last) is not redone, and the fine-tuning resumes from its own checkpoints."""
    out = Path(out)
    config = config or TrainConfig.for_stage(Stage.REFLECTIVE)
    if k < 1:
        raise ConfigError(f"samples per prompt must be >= 1, got {k}")
    rollout_config = rollout_config or RolloutConfig.for_rl()
    done = out / "report.json"
    pool = None if done.exists() else load_prompts(prompts)   # first: a bad prompt file fails before the model
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model, processor = load_model(preset=preset, model_dir=None if model_dir is None else Path(model_dir),
                                      config=config)
    if pool is None:
        summary = json.loads(done.read_text(encoding="utf-8"))
        print(f"sampling finished earlier ({summary['kept']} kept, {done}); fine-tuning", file=sys.stderr)
    else:
        judged = [(p, t, judge(t, p.answer)) for p, t in sample(model, processor, pool, k=k, config=rollout_config,
                                                                seed=config.seed, progress=progress)]
        kept = [t for _, t, v in judged if v.kept]
        summary = report(judged)
        if not kept:
            write_report(summary, out / "report.md", done=None)
            raise NothingKept(f"none of {len(judged)} sampled trajectories is correct, well formed and reflective "
                              f"(report: {out / 'report.md'}); sample more (--samples-per-prompt) or start from a "
                              "stronger stage-1 model")
        write_dataset(kept, out / "data")
        write_report(summary, out / "report.md", done=done)
    # the same weights go on training: stage 2 fine-tunes the stage-1 model, not the base model
    return summary, run_sft(data=out / "data" / "train.json", out=out / "sft", config=config, devices=devices,
                            progress=progress, model=model, processor=processor, checkpoints=checkpoints)
