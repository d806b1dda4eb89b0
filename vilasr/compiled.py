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


# ----------------------------------------------------------------------------- counting compilations
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"   # JAX records one per program built
_active_logs: list["CompileLog"] = []
_listening = False


class CompileLog:
    """Counts the XLA programs built while it is open (compiled, or loaded from the persistent
    cache) and the seconds spent on them, from JAX's own monitoring events:

        with CompileLog() as log:
            run()
        print(log.count, log.seconds)
    """

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def __enter__(self) -> "CompileLog":
        global _listening
        if not _listening:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            _listening = True
        _active_logs.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active_logs.remove(self)


def _on_duration(event: str, seconds: float, **_) -> None:
    if event == BACKEND_COMPILE_EVENT:
        for log in _active_logs:
            log.count += 1
            log.seconds += seconds


# ----------------------------------------------------------------------------- the persistent cache
def default_cache_dir() -> Path:
    """Where the command line keeps compiled programs between runs: the user's cache folder."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vilasr" / "xla"


def use_persistent_cache(folder: Path | None = None, min_compile_seconds: float = 0.2) -> Path | None:
    """Keep every program that took at least `min_compile_seconds` to compile in `folder` (default
    `default_cache_dir()`), so the next run -- or the demo's next stage -- loads it instead of
    compiling again. A folder already chosen (JAX_COMPILATION_CACHE_DIR) wins. Returns the folder
    in use, or None when it cannot be made (the run goes on without a persistent cache)."""
    import jax

    chosen = jax.config.jax_compilation_cache_dir
    if chosen:
        return Path(chosen)
    folder = Path(folder) if folder is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return folder
