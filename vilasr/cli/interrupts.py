"""Stopping a command cleanly: Ctrl-C (SIGINT) and SIGTERM.

The convention every sub-command follows:

* By default a signal raises `Stopped` (a KeyboardInterrupt) wherever the command is. Whatever it
  was writing is cleaned up on the way out by `finally` / `except BaseException` blocks (synth
  removes its `.partial` folder; PNGs are written to a temporary name and renamed, so none is
  ever half-written); `vilasr.cli.main` then prints one line and exits with 130 (143 for SIGTERM).
* A command whose work is worth keeping -- a training run -- wraps its loop in `stop_requests()`:
  a signal then only sets `stop.requested`; the loop looks at it at a safe point (after a step),
  saves, and calls `stop.stop()`, which raises `Stopped`. A second signal stops at once.

    with stop_requests() as stop:
        for step in range(steps):
            train_step()
            if stop.requested:
                save_checkpoint()
                stop.stop("checkpoint saved at step %d" % step)
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Stopped(KeyboardInterrupt):
    """The command was stopped by a signal; `note` says what was kept (printed by main)."""

    def __init__(self, signum: int = signal.SIGINT, note: str = ""):
        super().__init__(note)
        self.signum = signum
        self.note = note

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handlers(handler) -> Iterator[None]:
    """Install `handler` for SIGINT and SIGTERM inside the block (main thread only; a no-op elsewhere)."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def signals_stop() -> contextlib.AbstractContextManager:
    """Inside the block, SIGINT and SIGTERM raise `Stopped` (what main() runs every command in)."""
    return _handlers(_raise_stopped)


class StopRequest:
    """Set by a signal inside `stop_requests()`; see the module doc."""

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT

    def stop(self, note: str = "") -> None:
        raise Stopped(self.signum, note)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into `stop.requested = True` (the loop saves and stops at its
    next safe point); a second one raises `Stopped` at once."""
    request = StopRequest()

    def handler(signum, frame):
        if request.requested:
            raise Stopped(signum)
        request.requested, request.signum = True, signum
        print(f"{signal_name(signum)}: stopping at the next safe point (again to stop at once)", file=sys.stderr)

    with _handlers(handler):
        yield request
