"""The platform a program is being built for. Usually the default backend; while `vilasr plan`
compiles ahead of time for a TPU topology on a CPU host, `compiling_for("tpu")` makes code that
picks a backend-specific layout (the sampler's decode loop) pick the TPU one."""

from __future__ import annotations

import contextlib
import contextvars

import jax

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar("tpu_target_platform", default=None)


def platform() -> str:
    """'tpu', 'cpu' or 'gpu': the platform being compiled for."""
    return _TARGET.get() or jax.default_backend()


@contextlib.contextmanager
def compiling_for(name: str):
    token = _TARGET.set(name)
    try:
        yield
    finally:
        _TARGET.reset(token)
