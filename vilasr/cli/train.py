"""`vilasr train STAGE`: run a training stage; a rerun into the same --out resumes it.

    vilasr train cold-start --preset tiny --data data/maze --out runs/cold
    vilasr train cold-start --model ~/Qwen2.5-VL-7B-Instruct --config recipe.json --data vilasr_data.json --out runs/cold

Settings come from the stage's recipe (stages.config.TrainConfig.for_stage), then --config FILE
(JSON of TrainConfig fields), then the flags given. Ctrl-C or SIGTERM saves a checkpoint and stops
(exit 130 / 143); the next run into the same --out goes on from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from vilasr.cli.flags import add_config_flags, given_flags



def _train_fields() -> list[str]:
    from stages.config import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


def add_parser(sub) -> None:
    from stages.config import Stage, TrainConfig

    train = sub.add_parser("train", help="run a training stage (resumes from --out)", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("stage", choices=[Stage.COLD_START.value], help="which stage to run (its recipe gives the defaults)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="start from a local Hugging Face Qwen2.5-VL folder")
    source.add_argument("--preset", choices=["tiny", "3b", "7b"],
                        help="start from a preset initialised from --seed (tiny has a built-in tokenizer)")
    train.add_argument("--data", type=Path, required=True,
                       help="a sharegpt .json file (ours or ViLaSR-data) or a `vilasr synth` dataset folder")
    train.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics, exported model")
    train.add_argument("--config", type=Path, help="JSON file of training settings (field names as the flags)")
    train.add_argument("--devices", type=int, default=0,
                       help="devices to train on: weights, gradients, optimizer state and rows sharded over them "
                            "(FSDP; default: 0 = all visible)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    stages = (Stage.COLD_START,)
    add_config_flags(train, TrainConfig, _train_fields(), presets={str(s): TrainConfig.for_stage(s) for s in stages})
    train.set_defaults(func=run)


def build_config(args):
    from stages.config import TrainConfig

    overrides = given_flags(args, _train_fields())
    if args.config is not None:
        return TrainConfig.from_file(args.config, **overrides)
    return TrainConfig.for_stage(args.stage, **overrides)


def run(args) -> int:
    from stages.sft import run_sft
    from stages.trainer import StopReason
    from vilasr.cli.interrupts import Stopped
    from vilasr.errors import VilasrError

    from tpu.distributed import initialize

    initialize()   # on a TPU slice of several hosts: join the others before any device is touched
    config = build_config(args)
    if args.preset in ("3b", "7b"):
        raise VilasrError(f"--preset {args.preset} has no built-in tokenizer or weights; pass --model DIR with a "
                          f"downloaded Qwen2.5-VL-{args.preset.upper()} folder")
    result = run_sft(data=args.data, out=args.out, preset=args.preset, model_dir=args.model, config=config,
                     devices=args.devices, progress=not args.no_progress)
    run_result = result.run
    if run_result.skipped:
        print(f"skipped {sum(run_result.skipped.values())} record(s): {run_result.skipped}", file=sys.stderr)
    if run_result.stop is not StopReason.FINISHED:   # main prints the line and exits 130 / 143
        signum = signal.SIGINT if run_result.stop is StopReason.INTERRUPTED else signal.SIGTERM
        raise Stopped(signum, f"checkpoint saved at step {run_result.step}; rerun the same command to resume")
    print(f"trained {run_result.step} steps; model: {result.model_dir}")
    return 0
