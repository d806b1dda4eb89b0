"""`vilasr pretrain-base`: train the small base model the demo starts from (stages.base).

    vilasr pretrain-base --out runs/base --seed 0

The tiny preset, initialised from --seed, learns synthetic perception and grounding questions
(where S and G are, boxes of named objects, cell centres, open moves). A rerun into the same --out
resumes. The exported model (OUT/model, Hugging Face form) carries BASE.json: the command, the seed
and the sha256 of its weights. The package ships one made this way (stages/assets/base-tiny).
"""

from __future__ import annotations

import argparse
import shlex
import signal
from pathlib import Path

from synth.cli import non_negative_int


def add_parser(sub) -> None:
    from stages.base import PretrainPlan

    plan = PretrainPlan()
    cmd = sub.add_parser("pretrain-base", help="train the small base model the demo starts from (resumes from --out)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("--out", type=Path, required=True, help="run folder: data, checkpoints, metrics, OUT/model")
    cmd.add_argument("--seed", type=non_negative_int, default=0, help="seed of the weights, data and order (default: %(default)s)")
    cmd.add_argument("--images", type=non_negative_int, default=plan.images,
                     help="perception images to make (each carries several questions; default: %(default)s)")
    cmd.add_argument("--steps", type=non_negative_int, default=plan.steps, help="optimizer steps (default: %(default)s)")
    cmd.add_argument("--batch-size", type=non_negative_int, default=plan.batch_size,
                     help="conversations per step (default: %(default)s)")
    cmd.add_argument("--learning-rate", type=float, default=plan.learning_rate,
                     help="peak learning rate, cosine schedule (default: %(default)s)")
    cmd.add_argument("--vision-learning-rate", type=float, default=plan.vision_lr,
                     help="peak learning rate of the vision tower and merger; 0 freezes them (default: %(default)s)")
    cmd.add_argument("--maze-curriculum", type=int, nargs="+", default=list(plan.maze_curriculum),
                     help="largest maze side in each equal part of the steps, coarse to fine (default: %(default)s)")
    cmd.add_argument("--heldout-every", type=non_negative_int, default=plan.heldout_every,
                     help="score held-out examples (real vs white images) every N steps into "
                          "OUT/heldout.jsonl; 0: never (default: %(default)s)")
    cmd.add_argument("--report-examples", type=non_negative_int, default=plan.report_examples,
                     help="held-out perception examples the record scores the model on (default: %(default)s)")
    cmd.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmd.set_defaults(func=run)


def run(args) -> int:
    from stages.base import RECORD, PretrainPlan, run_pretrain
    from stages.trainer import StopReason
    from vilasr.cli.outputs import check_output_folder
    from vilasr.cli.interrupts import Stopped
    from vilasr.errors import ConfigError

    if min(args.images, args.steps, args.batch_size) < 1:
        raise ConfigError("--images, --steps and --batch-size must be >= 1")
    check_output_folder(args.out)
    plan = PretrainPlan(images=args.images, steps=args.steps, batch_size=args.batch_size,
                        learning_rate=args.learning_rate, vision_lr=args.vision_learning_rate,
                        maze_curriculum=tuple(args.maze_curriculum), heldout_every=args.heldout_every,
                        report_examples=args.report_examples)
    plan.validate()
    # every setting spelled out, so the record reproduces the run whatever the defaults become
    command = shlex.join(["vilasr", "pretrain-base", "--out", str(args.out), "--seed", str(args.seed), "--images",
                          str(plan.images), "--steps", str(plan.steps), "--batch-size", str(plan.batch_size),
                          "--learning-rate", str(plan.learning_rate), "--vision-learning-rate", str(plan.vision_lr),
                          "--maze-curriculum", *map(str, plan.maze_curriculum), "--heldout-every",
                          str(plan.heldout_every), "--report-examples", str(plan.report_examples)])
    result = run_pretrain(out=args.out, seed=args.seed, plan=plan, command=command, progress=not args.no_progress)
    if result.model_dir is None:
        signum = signal.SIGINT if result.run.stop is StopReason.INTERRUPTED else signal.SIGTERM
        raise Stopped(signum, f"checkpoint saved at step {result.run.step}; rerun the same command to resume")
    print(f"base model: {result.model_dir} (recorded in {result.model_dir / RECORD})")
    return 0
