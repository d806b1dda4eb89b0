"""`vilasr demo` (the README's `make demo`): the whole ViLaSR pipeline on the built-in default, on a
CPU, with no downloads -- synthetic maze and multi-view data, the shipped base model, cold start,
reflective rejection sampling, GRPO, and every model on the held-out benchmarks -- ending in
OUT/report.html and OUT/summary.md (stages.pipeline).

    vilasr demo --out out/demo            # about 30 minutes on 2 cores
    vilasr demo --out /tmp/d --quick      # the same path at toy sizes, a few minutes

A rerun into the same --out resumes where the last run stopped (Ctrl-C saves a checkpoint).
The scripted drawing demo that used to be here is `vilasr draw-demo`.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="run the whole pipeline (data, base, 3 stages, benchmarks) and write a report",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("out/demo"),
                      help="output folder: new, empty, or an earlier demo run of the same settings (resumes; "
                           "default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="toy sizes: every stage runs, in a few minutes")
    demo.add_argument("--base", type=Path, default=None,
                      help="start from this base model folder instead of the shipped one (e.g. OUT/model of "
                           "`vilasr pretrain-base`)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=run)


def run(args) -> int:
    from stages.base import SHIPPED_BASE
    from stages.pipeline import DemoPlan, run_demo
    from vilasr.cli.interrupts import Stopped
    from vilasr.cli.outputs import check_output_folder
    from vilasr.errors import InputError

    check_output_folder(args.out)
    base = args.base or SHIPPED_BASE
    if not (base / "model.safetensors").is_file():
        raise InputError(f"--base {base} holds no model.safetensors; give the model folder `vilasr pretrain-base` "
                         "exported (OUT/model)")
    plan = DemoPlan.quick() if args.quick else DemoPlan.full()
    report = run_demo(args.out, plan, base=base, progress=not args.no_progress, quick=args.quick)
    if report is None:
        raise Stopped(signal.SIGINT, "checkpoint saved; rerun the same command to resume")
    print(f"report: {report}\nsummary: {args.out / 'summary.md'}")
    return 0
