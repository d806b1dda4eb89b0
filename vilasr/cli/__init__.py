"""The `vilasr` command line (`vilasr ...` or `python -m vilasr ...`). The only code that may
import the packages above vilasr (synth, stages)."""

from vilasr.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
