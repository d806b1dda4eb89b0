"""The `vilasr` command: one sub-command per module of this package; flags map to config fields."""

from __future__ import annotations

import argparse
import sys

from vilasr.cli import demo, draw, infer, train


def build_parser() -> argparse.ArgumentParser:
    from synth.cli import add_synth_command

    parser = argparse.ArgumentParser(prog="vilasr", description="ViLaSR: spatial reasoning by drawing, in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    draw.add_parser(sub)
    demo.add_parser(sub)
    infer.add_parser(sub)
    train.add_parser(sub)
    add_synth_command(sub)
    return parser


def _version() -> str:
    import vilasr

    return vilasr.__version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
