"""Device meshes from a config: axes `data`, `fsdp`, `tensor`, each with a size inside a slice
(ICI) and a size across slices (DCN, multi-slice); a size of -1 takes what the devices leave.

    mesh = make_mesh(MeshConfig(fsdp=-1))               # every device on fsdp
    mesh = make_mesh(MeshConfig(data=2, fsdp=-1, tensor=2), devices)
    mesh = make_mesh(MeshConfig(fsdp=-1, dcn_data=-1))  # multi-slice: slices on data, fsdp within each

The mesh's axes are Auto (placement left to the compiler under logical constraints, see
tpu/logical.py), in the order data, fsdp, tensor: the innermost axis (tensor) gets the
neighbouring devices, which suits the collectives that run every layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np

from tpu.errors import TpuError

AXES = ("data", "fsdp", "tensor")
FILL = -1


def _size(default: int, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
    """Mesh axis sizes; -1 = fill with the devices the other axes leave (at most one per level)."""

    data: int = _size(1, "data-parallel size inside a slice (-1 = fill)")
    fsdp: int = _size(FILL, "fully sharded data-parallel size inside a slice (-1 = fill)")
    tensor: int = _size(1, "tensor-parallel size inside a slice (-1 = fill)")
    dcn_data: int = _size(1, "data-parallel size across slices (-1 = fill)")
    dcn_fsdp: int = _size(1, "fsdp size across slices (-1 = fill)")
    dcn_tensor: int = _size(1, "tensor size across slices (-1 = fill)")

    def __post_init__(self):
        for level, sizes in (("inside a slice", self.ici), ("across slices", self.dcn)):
            bad = [s for s in sizes if s != FILL and s < 1]
            if bad:
                raise TpuError(f"mesh sizes must be >= 1 or -1 (fill), got {bad} {level}")
            if sizes.count(FILL) > 1:
                raise TpuError(f"at most one mesh axis may be -1 (fill) {level}, got {dict(zip(AXES, sizes))}")

    @property
    def ici(self) -> tuple[int, int, int]:
        return self.data, self.fsdp, self.tensor

    @property
    def dcn(self) -> tuple[int, int, int]:
        return self.dcn_data, self.dcn_fsdp, self.dcn_tensor

    @classmethod
    def parse(cls, text: str) -> MeshConfig:
        """`"2,2,2"` -> data=2, fsdp=2, tensor=2 (one slice)."""
        try:
            data, fsdp, tensor = (int(p) for p in text.split(","))
        except ValueError:
            raise TpuError(f"a mesh is three sizes DATA,FSDP,TENSOR such as 1,-1,1, got {text!r}") from None
        return cls(data=data, fsdp=fsdp, tensor=tensor)


def fill(sizes: Sequence[int], total: int, what: str) -> tuple[int, ...]:
    """`sizes` with its -1 replaced so that the product is `total`; a TpuError when impossible."""
    known = math.prod(s for s in sizes if s != FILL)
    if FILL in sizes:
        if total % known:
            raise TpuError(f"{what}: {total} devices do not divide into the fixed sizes {tuple(sizes)}; "
                           f"choose sizes whose product divides {total}")
        sizes = tuple(total // known if s == FILL else s for s in sizes)
    if math.prod(sizes) != total:
        raise TpuError(f"{what}: mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices but there are "
                       f"{total}; make the product {total} or use -1 for one axis")
    return tuple(sizes)


def num_slices(devices: Sequence) -> int:
    return len({getattr(d, "slice_index", 0) for d in devices})


def mesh_shape(config: MeshConfig, n_devices: int, slices: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(per-slice sizes, across-slice sizes) of the three axes for `n_devices` in `slices` slices."""
    if n_devices % slices:
        raise TpuError(f"{n_devices} devices do not split evenly into {slices} slices")
    dcn = fill(config.dcn, slices, "across slices")
    ici = fill(config.ici, n_devices // slices, "inside a slice")
    return ici, dcn


def make_mesh(config: MeshConfig, devices: Sequence | None = None) -> jax.sharding.Mesh:
    """A mesh over `devices` (default: all) shaped by `config`, axes data, fsdp, tensor (Auto)."""
    from jax.experimental import mesh_utils

    devices = list(jax.devices() if devices is None else devices)
    slices = num_slices(devices)
    ici, dcn = mesh_shape(config, len(devices), slices)
    if slices > 1:
        grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, allow_split_physical_axes=True)
    elif devices[0].platform == "tpu":   # follows the chips' physical torus
        grid = mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=True)
    else:
        grid = np.array(devices).reshape(ici)
    auto = (jax.sharding.AxisType.Auto,) * len(AXES)
    total = tuple(i * d for i, d in zip(ici, dcn))
    return jax.sharding.Mesh(np.asarray(grid).reshape(total), AXES, axis_types=auto)


def batch_divisor(mesh: jax.sharding.Mesh) -> int:
    """How many ways a batch is split: the data and fsdp axes together."""
    return mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)
