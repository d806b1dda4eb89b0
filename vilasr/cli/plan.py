"""`vilasr plan`: compile a real step for a TPU slice ahead of time and print what it needs.

    vilasr plan --preset 7b --stage sft --topology v5p-16
    vilasr plan --preset 7b --stage rl --topology v5e-32 --seq 8192
    vilasr plan --preset 7b --stage decode --topology v6e-8 --prompts 32 --group 8
    vilasr plan --preset tiny                         # simulated CPU devices, in seconds

With libtpu installed (the `tpu` extra) the TPU compiler compiles for the named slice on this
machine, no chip needed; without it, XLA:CPU compiles on simulated host devices and the plan says
so. Memory, flops, step time, tokens/s and MFU are the compiler's estimates, not measurements.
"""

from __future__ import annotations

import argparse
import dataclasses

from vilasr.cli.flags import HelpFormatter, add_config_flags, config_from_args


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _fields() -> list[str]:
    from stages.plan import PlanConfig

    return [f.name for f in dataclasses.fields(PlanConfig)]


def add_parser(sub) -> None:
    from stages.plan import PlanConfig

    plan = sub.add_parser("plan", help="memory and speed of a step on a TPU slice, from the TPU compiler",
                          description=__doc__, formatter_class=_Formatter)
    add_config_flags(plan, PlanConfig, _fields())
    plan.set_defaults(func=run)


def run(args) -> int:
    from stages.plan import PlanConfig, format_plan, make_plan, simulated_devices_flag

    config = config_from_args(PlanConfig, args, _fields())
    simulated_devices_flag(config)
    print(format_plan(make_plan(config)))
    return 0
