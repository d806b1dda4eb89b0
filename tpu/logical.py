"""Logical axis names -> mesh shardings, and activation constraints that vanish without a mesh.

The model names axes logically (`batch`, `length`, `embed`, `heads`, ...). A rules table (set
with `flax.nnx.logical_axis_rules(rules)`; the tables themselves live in `tpu/`) maps each
logical name to a mesh axis. Without an active mesh *and* rules, `constrain` is the identity,
so the model runs unchanged on one CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax.core import spmd as _flax_spmd
from jax.sharding import NamedSharding, PartitionSpec

LogicalNames = Sequence[str | None]


def current_rules() -> tuple:
    """The logical->mesh rules of the enclosing `nnx.logical_axis_rules(...)` context (may be empty)."""
    return tuple(_flax_spmd.get_logical_axis_rules())


def auto_axes(mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
    """The same devices and axis names with every axis in Auto mode.

    `jax.make_mesh` makes Explicit axes by default; under them every matmul that contracts a
    sharded axis must name its output sharding. The model instead leaves placement to the
    compiler (logical constraints + GSPMD propagation), which needs Auto axes.
    """
    auto = jax.sharding.AxisType.Auto
    if all(t == auto for t in mesh.axis_types):
        return mesh
    return jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=(auto,) * len(mesh.axis_names))


def _active_mesh():
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh is None or mesh.empty else mesh


def active() -> bool:
    """True when both a mesh (`jax.set_mesh`) and logical rules are in effect."""
    return _active_mesh() is not None and bool(current_rules())


def to_pspec(names: LogicalNames, rules=None, mesh_axes: Sequence[str] | None = None) -> PartitionSpec:
    """Map logical names to a PartitionSpec; names without a rule (or absent mesh axes) replicate."""
    table = dict(current_rules() if rules is None else rules)
    used: set[str] = set()
    out = []
    for name in names:
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if (mesh_axes is None or a in mesh_axes) and a not in used)
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def named_sharding(mesh: jax.sharding.Mesh, names: LogicalNames, rules=None,
                   shape: Sequence[int] | None = None) -> NamedSharding:
    """NamedSharding for logical `names`; with `shape`, a dimension its mesh axes don't divide is replicated."""
    spec = to_pspec(names, rules, mesh.axis_names)
    if shape is not None:
        fixed = []
        for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
            axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
            size = 1
            for a in axes:
                size *= mesh.shape[a]
            fixed.append(entry if dim % size == 0 else None)
        spec = PartitionSpec(*fixed)
    return NamedSharding(mesh, spec)


def constrain(x: jax.Array, names: LogicalNames) -> jax.Array:
    """`with_sharding_constraint` by logical names when a mesh and rules are active, else identity."""
    mesh = _active_mesh()
    if mesh is None or not current_rules():
        return x
    return jax.lax.with_sharding_constraint(x, to_pspec(names, mesh_axes=mesh.axis_names))
