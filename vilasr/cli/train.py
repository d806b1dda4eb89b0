"""`vilasr train STAGE`: run a training stage; a rerun into the same --out resumes it.

    vilasr train cold-start --preset tiny --data data/maze --out runs/cold
    vilasr train cold-start --model ~/Qwen2.5-VL-7B-Instruct --config recipe.json --data vilasr_data.json --out runs/cold
    vilasr train reflective --model runs/cold/model --data data/maze_rl --out runs/reflective
    vilasr train rl --model runs/reflective/sft/model --data rl_prompts.jsonl --out runs/rl

`--data` is the training set for cold-start (sharegpt file or synth folder) and the prompts for
reflective and rl (an RL prompt file, a benchmark-form file or a synth folder). Settings come from
the stage's recipe (stages.config.TrainConfig.for_stage), then --config FILE (JSON of TrainConfig
fields), then the flags given; reflective and rl sample with the reference's RL rollout settings
(RolloutConfig.for_rl) unless a rollout flag says otherwise. Ctrl-C or SIGTERM saves a checkpoint
and stops (exit 130 / 143); the next run into the same --out goes on from there. Each stage ends
by exporting a Hugging Face folder (cold-start and rl: OUT/model; reflective: OUT/sft/model).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from synth.cli import non_negative_int
from vilasr.cli.flags import add_config_flags, config_from_args, given_flags

ROLLOUT_FLAGS = ("max_turns", "max_turns_maze", "max_turn_tokens", "max_response_tokens", "strict")
SAMPLING_FLAGS = ("temperature", "top_p")


def _fields(config_class) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]


def add_parser(sub) -> None:
    from stages.config import Stage, TrainConfig
    from stages.rl.config import GrpoConfig
    from vilasr.rollout import RolloutConfig, SamplingConfig

    train = sub.add_parser("train", help="run a training stage (resumes from --out)", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("stage", choices=[s.value for s in Stage], help="which stage to run (its recipe gives the defaults)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="start from a local Hugging Face Qwen2.5-VL folder "
                                                   "(reflective: the cold-start model; rl: the reflective one)")
    source.add_argument("--preset", choices=["tiny", "3b", "7b"],
                        help="start from a preset initialised from --seed (tiny has a built-in tokenizer)")
    train.add_argument("--data", type=Path, required=True,
                       help="cold-start: a sharegpt .json file (ours or ViLaSR-data) or a `vilasr synth` dataset "
                            "folder; reflective and rl: the prompts (RL JSON lines, a benchmark-form file or a synth "
                            "folder)")
    train.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics, exported model")
    train.add_argument("--checkpoints", metavar="FOLDER_OR_URL",
                       help="where Orbax keeps the checkpoints (default OUT/checkpoints): another folder, or a "
                            "Cloud Storage URL (gs://bucket/path) written directly, so a preempted slice resumes "
                            "from it (needs the tpu extra's gcsfs and the VM's credentials)")
    train.add_argument("--config", type=Path, help="JSON file of training settings (field names as the flags)")
    train.add_argument("--devices", type=int, default=0,
                       help="devices to train on: weights, gradients, optimizer state and rows sharded over them "
                            "(FSDP; default: 0 = all visible)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(train, TrainConfig, _fields(TrainConfig),
                     presets={s.value: TrainConfig.for_stage(s) for s in Stage})

    sampled = train.add_argument_group("reflective and rl: the rollouts (defaults: the reference's RL settings)")
    sampled.add_argument("--samples-per-prompt", type=non_negative_int, default=8,
                         help="reflective: rollouts sampled per prompt before the filter (default: %(default)s)")
    sampled.add_argument("--prompt-template", type=Path, default=None,
                         help="a JSON or TOML prompt template (PromptTemplate fields); default: our wording")
    presets = {"rl": RolloutConfig.for_rl()}
    add_config_flags(sampled, RolloutConfig, ROLLOUT_FLAGS, presets=presets)
    add_config_flags(sampled, SamplingConfig, SAMPLING_FLAGS, presets=presets, pick=lambda cfg: cfg.sampling)
    grpo = train.add_argument_group("rl: GRPO")
    add_config_flags(grpo, GrpoConfig, _fields(GrpoConfig), presets={"rl": GrpoConfig()})
    train.set_defaults(func=run)


def build_config(args):
    from stages.config import TrainConfig

    overrides = given_flags(args, _fields(TrainConfig))
    if args.config is not None:
        return TrainConfig.from_file(args.config, **overrides)
    return TrainConfig.for_stage(args.stage, **overrides)


def rollout_config(args):
    """The RL rollout settings with the flags given; images sized as the run's processor says
    (TrainConfig.max_pixels is the one image-size knob)."""
    from drawing_ops.protocol import PromptTemplate
    from vilasr.rollout import RolloutConfig, SamplingConfig

    base = RolloutConfig.for_rl(max_pixels=None)
    sampling = config_from_args(SamplingConfig, args, SAMPLING_FLAGS, base=base.sampling)
    more = {"template": PromptTemplate.from_file(args.prompt_template)} if args.prompt_template else {}
    return config_from_args(RolloutConfig, args, ROLLOUT_FLAGS, base=base, sampling=sampling, **more)


def _check_stage_flags(args) -> None:
    from stages.config import Stage
    from stages.rl.config import GrpoConfig
    from vilasr.errors import ConfigError

    stage = Stage(args.stage)
    misplaced = []
    if stage is not Stage.RL:
        misplaced += list(given_flags(args, _fields(GrpoConfig)))
    if stage is Stage.COLD_START:
        misplaced += list(given_flags(args, ROLLOUT_FLAGS + SAMPLING_FLAGS))
        misplaced += ["prompt_template"] if args.prompt_template else []
    if misplaced:
        flags = ", ".join("--" + n.replace("_", "-") for n in misplaced)
        raise ConfigError(f"{flags}: not a setting of `train {stage}` (see vilasr train --help for each stage's flags)")


def run(args) -> int:
    from stages.config import Stage
    from stages.trainer import StopReason
    from tpu.distributed import initialize
    from vilasr.cli.interrupts import Stopped
    from vilasr.errors import VilasrError

    _check_stage_flags(args)
    initialize()   # on a TPU slice of several hosts: join the others before any device is touched
    config = build_config(args)
    if args.preset in ("3b", "7b"):
        raise VilasrError(f"--preset {args.preset} has no built-in tokenizer or weights; pass --model DIR with a "
                          f"downloaded Qwen2.5-VL-{args.preset.upper()} folder")
    common = dict(out=args.out, preset=args.preset, model_dir=args.model, config=config, devices=args.devices,
                  progress=not args.no_progress, checkpoints=args.checkpoints)
    stage = Stage(args.stage)
    if stage is Stage.COLD_START:
        from stages.sft import run_sft

        result = run_sft(data=args.data, **common)
    elif stage is Stage.REFLECTIVE:
        from stages.reflective import run_reflective

        summary, result = run_reflective(prompts=args.data, k=args.samples_per_prompt,
                                         rollout_config=rollout_config(args), **common)
        print(f"kept {summary['kept']} of {summary['sampled']} sampled trajectories "
              f"(report: {args.out / 'report.md'})", file=sys.stderr)
    else:
        from stages.rl.config import GrpoConfig
        from stages.rl.grpo import run_grpo

        grpo = config_from_args(GrpoConfig, args, _fields(GrpoConfig))
        result = run_grpo(prompts=args.data, grpo=grpo, rollout_config=rollout_config(args), **common)
    run_result = result.run
    if run_result.skipped:
        print(f"skipped {sum(run_result.skipped.values())} record(s): {run_result.skipped}", file=sys.stderr)
    if run_result.stop is not StopReason.FINISHED:   # main prints the line and exits 130 / 143
        signum = signal.SIGINT if run_result.stop is StopReason.INTERRUPTED else signal.SIGTERM
        raise Stopped(signum, f"checkpoint saved at step {run_result.step}; rerun the same command to resume")
    print(f"trained {run_result.step} steps; model: {result.model_dir}")
    return 0
