"""Keeping a long run's compiled programs under the kernel's memory-map limit.

XLA:CPU maps the machine code of every compiled program into the process (a few read, execute and
write maps per program, measured ~8 for a small jit), and a program stays mapped while JAX caches
it. A run that meets many shapes (rollouts of every length, length-bucketed batches, several models
evaluated in one process) piles up programs until Linux's `vm.max_map_count` (65530 by default) is
reached; then LLVM fails with "Cannot allocate memory" and the process dies (seen in `vilasr demo`:
after the three stages, in its second model's evaluation). The long loops (the trainer's steps,
every rollout) call `release_compiled_programs` between units of work: when the process holds more
than half the limit, it drops JAX's caches, and the programs still needed compile again.
"""

from __future__ import annotations

import gc
from pathlib import Path

import jax

MAPS = Path("/proc/self/maps")
MAP_LIMIT = Path("/proc/sys/vm/max_map_count")


def map_count() -> int | None:
    """How many memory maps this process holds (None where /proc does not say: not Linux)."""
    try:
        with MAPS.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def map_limit() -> int | None:
    try:
        return int(MAP_LIMIT.read_text())
    except (OSError, ValueError):
        return None


def release_compiled_programs(fraction: float = 0.5, limit: int | None = None) -> bool:
    """Drop JAX's compiled programs when this process holds more than `fraction` of the map limit
    (`limit`, default the kernel's); whether it did."""
    count, limit = map_count(), limit or map_limit()
    if count is None or limit is None or count <= fraction * limit:
        return False
    jax.clear_caches()
    gc.collect()
    return True
