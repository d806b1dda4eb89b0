"""Cloud TPU topologies by name, the chips' memory and peak speed, and their devices for
ahead-of-time compilation (libtpu compiles for a named topology with no chip attached).

Names: Cloud TPU's accelerator types count TensorCores for v4 and v5p (`v5p-16` = 8 chips, two
cores each) and chips for v5e and v6e (`v5litepod-16`, `v5e-16`, `v6e-8`); the topology form
`v5p:2x2x2` gives the chip grid itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re

from tpu.errors import TpuError


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU chip: public per-chip figures (HBM bytes, dense bf16 FLOP/s, HBM bytes/s)."""

    generation: str
    hbm_bytes: int
    peak_bf16_flops: float
    hbm_bandwidth: float
    cores_in_name: int      # TensorCores per chip counted by the accelerator-type name
    dims: int               # torus dimensions (3 for v4/v5p, 2 for v5e/v6e)


GB = 10**9   # chips are sold in decimal gigabytes; rounding down keeps "fits" honest
CHIPS = {
    "v4": Chip("v4", 32 * GB, 275e12, 1.2e12, 2, 3),
    "v5p": Chip("v5p", 95 * GB, 459e12, 2.765e12, 2, 3),
    "v5e": Chip("v5e", 16 * GB, 197e12, 0.819e12, 1, 2),
    "v6e": Chip("v6e", 32 * GB, 918e12, 1.64e12, 1, 2),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6lite": "v6e"}


@dataclasses.dataclass(frozen=True)
class Topology:
    chip: Chip
    grid: tuple[int, ...]    # chips along each torus axis
    name: str                # as the user wrote it

    @property
    def chips(self) -> int:
        return math.prod(self.grid)

    @property
    def desc_name(self) -> str:
        """The name libtpu's topology description takes, e.g. `v5p:2x2x2`."""
        return f"{self.chip.generation}:{'x'.join(map(str, self.grid))}"

    @property
    def label(self) -> str:
        cores = self.chips * self.chip.cores_in_name
        return f"{self.chip.generation}-{cores} ({self.desc_name}, {self.chips} chips)"


def _grid_for(chips: int, dims: int) -> tuple[int, ...]:
    """The usual slice shape for `chips` chips: powers of two spread as evenly as possible,
    smallest axes first (v5p-16 -> 2x2x2, v5e-32 -> 4x8)."""
    if chips < 1 or chips & (chips - 1):
        raise TpuError(f"{chips} chips is not a slice size this planner knows (use a power of two, or the "
                       "explicit form such as v5p:2x2x4)")
    grid = [1] * dims
    for i in range(int(math.log2(chips))):
        grid[i % dims] *= 2
    if dims == 3 and chips == 4:
        grid = [2, 2, 1]
    return tuple(sorted(grid, key=lambda g: (g == 1, g)))


def parse(name: str) -> Topology:
    """`v5p-16`, `v5e-32`, `v5litepod-16`, `v6e-8`, `v4-8` or `v5p:2x2x2` -> Topology."""
    text = name.strip().lower()
    explicit = re.fullmatch(r"(v\w+?):(\d+(?:x\d+)+)", text)
    counted = re.fullmatch(r"(v\w+?)-(\d+)", text)
    if not (explicit or counted):
        raise TpuError(f"unknown TPU topology {name!r}; give a Cloud TPU type such as v5p-16, v5e-32, v6e-8, or "
                       "a chip grid such as v5p:2x2x2")
    generation = _ALIASES.get((explicit or counted).group(1), (explicit or counted).group(1))
    chip = CHIPS.get(generation)
    if chip is None:
        raise TpuError(f"unknown TPU generation {generation!r} in {name!r}; known: {sorted(CHIPS)}")
    if explicit:
        grid = tuple(int(g) for g in explicit.group(2).split("x"))
        if len(grid) != chip.dims:
            raise TpuError(f"{generation} slices are {chip.dims}-D grids (such as "
                           f"{'2x2x2' if chip.dims == 3 else '4x4'}), got {name!r}")
        return Topology(chip, grid, name)
    count = int(counted.group(2))
    if count % chip.cores_in_name:
        raise TpuError(f"{name!r}: {generation} types count TensorCores, {chip.cores_in_name} per chip; use a "
                       f"multiple of {chip.cores_in_name}")
    return Topology(chip, _grid_for(count // chip.cores_in_name, chip.dims), name)


# ----------------------------------------------------------------------------- libtpu
def has_tpu_chip() -> bool:
    """Whether this host has a TPU chip attached (Google's PCI vendor id, or a TPU device file)."""
    if any(os.path.exists(p) for p in ("/dev/accel0", "/dev/vfio/0")):
        return True
    try:
        for dev in os.listdir("/sys/bus/pci/devices"):
            with open(f"/sys/bus/pci/devices/{dev}/vendor") as f:
                if f.read().strip() == "0x1ae0":
                    return True
    except OSError:
        pass
    return False


def quiet_host_defaults() -> None:
    """On a host without a TPU chip, run JAX on the CPU and tell libtpu (if installed) that this
    is a single CPU-only worker, before JAX starts. Without this an installed libtpu makes JAX
    try the TPU backend, look up a metadata server that is not there and print init errors;
    with it libtpu still compiles for a named topology (`devices`). Values already set win."""
    if not libtpu_available() or has_tpu_chip():
        return
    # ALLOW_MULTIPLE_LIBTPU_LOAD: without a chip there is nothing to guard, and libtpu's lock file
    # (/tmp/libtpu_lockfile) would otherwise let one process at a time compile for TPU.
    for key, value in (("JAX_PLATFORMS", "cpu"), ("TPU_SKIP_MDS_QUERY", "1"), ("TPU_WORKER_ID", "0"),
                       ("TPU_WORKER_HOSTNAMES", "localhost"), ("TPU_ACCELERATOR_TYPE", "v5p-8"),
                       ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):
        os.environ.setdefault(key, value)


def libtpu_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("libtpu") is not None


def devices(topology: Topology) -> list:
    """The devices (one per chip) of `topology`, for a Mesh to compile against; needs libtpu."""
    if not libtpu_available():
        raise TpuError("compiling for a TPU topology needs libtpu; install it with "
                       "`pip install -e '.[tpu]'` (or plan on simulated CPU devices without --topology)")
    quiet_host_defaults()
    from jax.experimental import topologies

    with _quiet_stderr():
        desc = topologies.get_topology_desc(topology_name=topology.desc_name, platform="tpu")
    return list(desc.devices)


@contextlib.contextmanager
def _quiet_stderr():
    """libtpu writes start-up lines straight to file descriptor 2; keep them, and show them only
    if loading fails."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except Exception:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
