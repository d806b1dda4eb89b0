"""Placing NNX state by its logical axis names: shardings of a state, abstract (allocation-free)
sharded state for ahead-of-time compilation, placement of a built model or optimizer, sharded
initialisation (each device computes only its own shards), and constraints that pin gradients
to the same layout as their parameters.

Every parameter made by `vilasr.model.layers.param` records its logical names as the NNX
metadata `out_sharding`; optimizer state created from it (Optax moments) inherits them.
Anything without names (a step counter) is replicated.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from tpu import logical
from tpu.rules import Rules


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def names_of(var: nnx.Variable) -> tuple:
    names = var.get_metadata().get("out_sharding")
    return tuple(names) if names else (None,) * len(var.shape)


def sharding_of(var: nnx.Variable, mesh, rules: Rules) -> jax.sharding.NamedSharding:
    return logical.named_sharding(mesh, names_of(var), rules, var.shape)


def shardings(state, mesh, rules: Rules):
    """The NamedSharding of every variable of an nnx.State (same tree, shardings as leaves)."""
    return jax.tree.map(lambda v: v.replace(sharding_of(v, mesh, rules)), state, is_leaf=_is_variable)


def abstract(state, mesh, rules: Rules):
    """The state as `jax.ShapeDtypeStruct`s carrying their shardings: what `.lower()` needs, no memory."""
    def one(var):
        return var.replace(jax.ShapeDtypeStruct(var.shape, var.dtype, sharding=sharding_of(var, mesh, rules)))
    return jax.tree.map(one, state, is_leaf=_is_variable)


def place(module, mesh, rules: Rules) -> None:
    """Move every variable of `module` (a model, an optimizer) to its sharding, in place."""
    state = nnx.state(module)
    placed = jax.tree.map(lambda v: v.replace(_put(v.get_value(), sharding_of(v, mesh, rules))),
                          state, is_leaf=_is_variable)
    nnx.update(module, placed)


def _put(value, sharding):
    if getattr(value, "sharding", None) == sharding:
        return value
    if isinstance(value, jax.Array) and len(value.sharding.device_set) == 1:
        # from one device, through the host: moving a committed array to a new layout compiles a
        # resharding program per shape, seconds per model on a CPU
        value = np.asarray(value)
    return jax.device_put(value, sharding)


def sharded_init(factory: Callable[[], nnx.Module], mesh, rules: Rules):
    """`factory()` built by one jitted program whose outputs are already sharded: no device ever
    holds a whole sharded tensor (the way to initialise a 7B model on a pod)."""
    graphdef, state = nnx.split(nnx.eval_shape(factory))
    out = shardings(state, mesh, rules)

    def build():
        return nnx.state(factory())

    with jax.set_mesh(logical.auto_axes(mesh)):
        state = jax.jit(build, out_shardings=out)()
    return nnx.merge(graphdef, state)


def constrain_like_params(tree):
    """Pin each variable of `tree` (e.g. gradients) to its parameter's logical layout when a mesh
    and rules are active; left to itself, the compiler may return gradients whole on every device."""
    return jax.tree.map(lambda v: v.replace(logical.constrain(v.get_value(), names_of(v))), tree,
                        is_leaf=_is_variable)
