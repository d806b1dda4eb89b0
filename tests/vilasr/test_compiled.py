"""Compiled programs are dropped when the process nears the kernel's memory-map limit (vilasr.compiled)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest

from vilasr.compiled import map_count, map_limit, release_compiled_programs

pytestmark = pytest.mark.skipif(map_count() is None or map_limit() is None, reason="needs Linux /proc")


def _compile_shapes(f, n: int) -> None:
    for rows in range(1, n + 1):
        f(jnp.ones((rows, 8))).block_until_ready()


def test_programs_are_released_near_the_limit_and_kept_below_it():
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(0) * 3 + 1)
    _compile_shapes(f, 30)
    held = map_count()
    assert not release_compiled_programs()          # far below the kernel's limit: nothing dropped
    assert map_count() >= held - 5
    assert release_compiled_programs(fraction=0.5, limit=held)   # "near" a limit of what it holds now
    assert map_count() < held - 100, "the 30 programs' code maps were unmapped"
    assert float(f(jnp.ones((3, 8)))[0]) == pytest.approx(3 * 3 * math.tanh(8.0) + 1, rel=1e-5)   # still runs
