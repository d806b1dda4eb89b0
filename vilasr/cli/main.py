"""The `vilasr` command: one sub-command per module of this package; flags map to config fields.

One error path for every sub-command (`main`): an expected failure -- a bad path or value, an
unwritable output, a corrupt file, a bad tool call -- prints one line saying what is wrong and
what to do, and exits with status 2; Ctrl-C or SIGTERM stops the command (it cleans up what it
was writing, see vilasr/cli/interrupts.py) and exits with 130 / 143. A traceback is printed only
for a bug, with a request to report it (exit status 1).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from vilasr.cli.interrupts import Stopped, signal_name, signals_stop

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage stays in --help)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    # Sub-commands import NumPy and more: loaded here, inside main's error path (Ctrl-C included).
    from synth.cli import add_synth_command
    from vilasr.cli import demo, draw, draw_demo, evaluate, infer, plan, pretrain, train

    parser = Parser(prog="vilasr", description="ViLaSR: spatial reasoning by drawing, in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled XLA programs between runs (by default they are kept in "
                             "~/.cache/vilasr/xla, or $XDG_CACHE_HOME/vilasr/xla, so a second run does not "
                             "compile again)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    draw.add_parser(sub)
    demo.add_parser(sub)
    draw_demo.add_parser(sub)
    infer.add_parser(sub)
    evaluate.add_parser(sub)
    train.add_parser(sub)
    pretrain.add_parser(sub)
    plan.add_parser(sub)
    add_synth_command(sub)
    return parser


def _version() -> str:
    import vilasr

    return vilasr.__version__


def _expected_errors() -> tuple[type[BaseException], ...]:
    from drawing_ops import ToolCallError
    from drawing_ops.protocol import TemplateError
    from synth.errors import SynthError
    from tpu.errors import TpuError
    from vilasr.errors import VilasrError

    return VilasrError, ToolCallError, TemplateError, SynthError, TpuError, OSError, MemoryError


_OS_HINTS = {errno.EACCES: "choose a path you can write to", errno.EPERM: "choose a path you can write to",
             errno.EROFS: "choose a path on a writable disk", errno.ENOSPC: "free some disk space or choose "
             "another disk", errno.ENOENT: "check the path", errno.EISDIR: "give a file, not a folder",
             errno.ENOTDIR: "check the path"}


def _device_out_of_memory(exc: BaseException) -> bool:
    """XLA's allocation failure (jax.errors.JaxRuntimeError), told by name: main does not import JAX."""
    return type(exc).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(exc)


def describe(exc: BaseException) -> str:
    """One line: what is wrong and what to do."""
    from drawing_ops import ToolCallError

    if isinstance(exc, MemoryError) or _device_out_of_memory(exc):
        text = "out of memory; use smaller sizes, counts or token budgets"
    elif isinstance(exc, ToolCallError):
        text = f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, OSError) and exc.strerror and type(exc).__module__ == "builtins":
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror}; {_OS_HINTS.get(exc.errno, 'check the path and try again')}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    from tpu.topology import quiet_host_defaults

    quiet_host_defaults()   # an installed libtpu on a host without a TPU: CPU, and no init errors
    command = "vilasr"
    try:
        with signals_stop():
            args = build_parser().parse_args(argv)
            command = f"vilasr {args.command}"
            if not args.no_compile_cache and args.command != "plan":  # plan reads fresh compiles
                from vilasr.compiled import use_persistent_cache

                use_persistent_cache()
            return args.func(args)
    except KeyboardInterrupt as exc:  # Stopped, or Ctrl-C outside the handlers' reach
        signum = getattr(exc, "signum", 2)
        note = getattr(exc, "note", "") or "nothing half-written was left behind"
        print(f"{command}: stopped by {signal_name(signum)}; {note}", file=sys.stderr)
        return Stopped(signum).exit_status
    except BrokenPipeError:  # e.g. `vilasr infer ... | head`: the reader has gone, say nothing
        sys.stdout = open(os.devnull, "w")
        return 128 + 13
    except Exception as exc:
        if isinstance(exc, _expected_errors()) or _device_out_of_memory(exc):
            print(f"error: {describe(exc)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        traceback.print_exc()
        print(f"{command}: this is a bug in vilasr, not a problem with your input; please report it with the "
              "command you ran and the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
