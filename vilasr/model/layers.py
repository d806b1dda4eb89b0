"""Building blocks shared by the vision tower and the decoder: parameters with logical axis names,
Dense, RMSNorm, the gated MLP, rotary embedding and softmax attention helpers, and stacked layers
run by one `lax.scan` over depth (`stack_layers`, `run_layers`).

Every parameter is created through `param()` so that it carries logical axis names as NNX
sharding metadata (`out_sharding`); `tpu/` maps those names to mesh axes. Eager sharding at
creation is off: placement is explicit (`from_pretrained(mesh=...)` or the `tpu/` helpers), so
a model builds the same way with or without a mesh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tpu import logical
from vilasr.model.config import Remat

Names = tuple[str | None, ...]
LAYERS = "layers"  # logical name of the stacked layers' leading axis (replicated by default rules)


def param(rngs: nnx.Rngs | None, init: str, shape: Sequence[int], names: Names, param_dtype,
          std: float = 0.02) -> nnx.Param:
    """An `nnx.Param` of `shape` with logical axis names `names`; `init` is 'normal', 'zeros' or 'ones'.

    Outside a trace the values are drawn with NumPy (seeded from the next `rngs.params()` key),
    which avoids compiling one XLA program per parameter shape when a small model is built on a
    CPU. Under `nnx.eval_shape`/`jit` (e.g. sharded initialisation) `jax.random` is used.
    """
    shape = tuple(int(s) for s in shape)
    if len(names) != len(shape):
        raise ValueError(f"{len(names)} logical names {names} for a parameter of shape {shape}")
    dtype = np.dtype(param_dtype)
    key = rngs.params() if rngs is not None and init == "normal" else None
    if isinstance(key, jax.core.Tracer):
        value = std * jax.random.normal(key, shape, jnp.float32)
        value = value.astype(dtype)
    elif init == "normal":
        seed = np.asarray(jax.random.key_data(key) if key is not None else [0]).ravel().tolist()
        value = jnp.asarray((std * np.random.default_rng(seed).standard_normal(shape, np.float32)).astype(dtype))
    elif init in ("zeros", "ones"):
        value = jnp.asarray((np.zeros if init == "zeros" else np.ones)(shape, dtype))
    else:
        raise ValueError(f"unknown initializer {init!r}")
    return nnx.Param(value, out_sharding=tuple(names), eager_sharding=False)


class Dense(nnx.Module):
    """`y = x @ kernel + bias` where the kernel has shape `in_shape + out_shape`.

    Hugging Face `nn.Linear` stores `weight` as (out, in); ours is its transpose, with the input
    and output feature axes optionally split (e.g. (embed) -> (heads, head_dim)) so each axis can
    carry its own logical name.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], names: Names, *,
                 use_bias: bool, dtype, param_dtype, rngs: nnx.Rngs, std: float = 0.02):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.dtype = dtype
        self.kernel = param(rngs, "normal", self.in_shape + self.out_shape, names, param_dtype, std)
        self.bias = (param(rngs, "zeros", self.out_shape, names[len(self.in_shape):], param_dtype)
                     if use_bias else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        lead = x.shape[: x.ndim - len(self.in_shape)]
        kernel = self.kernel[...].astype(self.dtype).reshape(n_in, n_out)
        # One 2D matmul: with leading batch axes XLA:CPU's backward (contracting over several
        # axes) runs about twice slower.
        y = jnp.dot(x.reshape(-1, n_in).astype(self.dtype), kernel)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype).reshape(n_out)
        return y.reshape(*lead, *self.out_shape)


class RMSNorm(nnx.Module):
    """RMSNorm computed in float32, cast back to the compute dtype, then scaled (as transformers)."""

    def __init__(self, size: int, eps: float, *, dtype, param_dtype, rngs: nnx.Rngs | None = None,
                 name: str = "norm"):
        self.eps = float(eps)
        self.dtype = dtype
        self.scale = param(rngs, "ones", (size,), (name,), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = (x32 * jax.lax.rsqrt(var + self.eps)).astype(self.dtype)
        return self.scale[...].astype(self.dtype) * y


class GatedMLP(nnx.Module):
    """down(silu(gate(x)) * up(x)); biases in the vision tower, none in the decoder."""

    def __init__(self, dim: int, hidden: int, names: tuple[str, str], *, use_bias: bool, dtype,
                 param_dtype, rngs: nnx.Rngs, std: float = 0.02, act_names: Names = ()):
        embed, mlp = names
        self.gate = Dense((dim,), (hidden,), (embed, mlp), use_bias=use_bias, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs, std=std)
        self.up = Dense((dim,), (hidden,), (embed, mlp), use_bias=use_bias, dtype=dtype,
                        param_dtype=param_dtype, rngs=rngs, std=std)
        self.down = Dense((hidden,), (dim,), (mlp, embed), use_bias=use_bias, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs, std=std)
        self.act_names = tuple(act_names)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.silu(self.gate(x)) * self.up(x)
        if self.act_names:
            h = logical.constrain(h, self.act_names)
        return self.down(h)


def rotate_half(x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Non-interleaved rotary embedding in float32; `cos`/`sin` broadcast against `x`."""
    x32 = x.astype(jnp.float32)
    return (x32 * cos + rotate_half(x32) * sin).astype(x.dtype)


NEG_INF = float(jnp.finfo(jnp.float32).min)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis in float32 with masked-out entries set to the float32 minimum."""
    scores = jnp.where(mask, scores.astype(jnp.float32), NEG_INF)
    return jax.nn.softmax(scores, axis=-1)


def softmax_attend(scores: jax.Array, v: jax.Array, mask: jax.Array | None, dtype) -> jax.Array:
    """`softmax(where(mask, scores, min)) @ v` for scores (N, Q, K) float32 and v (N, K, D).

    The normalisation is deferred: `(exp(s - max) @ v) / sum(exp(s - max))` divides the (N, Q, D)
    output instead of the (N, Q, K) probabilities (one pass less over the scores, forward and
    backward). `mask` broadcasts against the scores; None means nothing is masked (no select).
    """
    scores = scores.astype(jnp.float32)
    if mask is not None:
        scores = jnp.where(mask, scores, NEG_INF)
    top = jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))  # softmax is shift-invariant
    e = jnp.exp(scores - top)
    out = jnp.einsum("nqk,nkd->nqd", e.astype(dtype), v, preferred_element_type=jnp.float32)
    return (out / jnp.sum(e, axis=-1, keepdims=True)).astype(dtype)


# ----------------------------------------------------------------------------- stacked layers
def stack_layers(make: Callable[[], nnx.Module], n: int) -> nnx.Module:
    """One module whose parameters are those of `n` modules built by `make()`, stacked on a new
    leading axis named LAYERS (the modules are built one after the other, so a seeded model gets
    the same per-layer values as a list of layers would)."""
    graphdef, first = nnx.split(make())
    states = [first] + [nnx.split(make())[1] for _ in range(n - 1)]
    state = jax.tree.map(_stack, *states)
    return nnx.merge(graphdef, nnx.spmd.add_axis(state, 0, {nnx.PARTITION_NAME: LAYERS}))


def _stack(*values):
    if any(isinstance(v, jax.core.Tracer) for v in values):
        return jnp.stack(values)
    return jnp.asarray(np.stack([np.asarray(v) for v in values]))  # on the host: no compilation


def unstack_layers(layers: nnx.Module) -> nnx.List:
    """The layers of a stacked module held apart: one module per layer, on static slices of the
    stacked parameters (gradients flow back to them)."""
    graphdef, params = nnx.split(layers)
    n = jax.tree.leaves(params)[0].shape[0]
    axis = {nnx.PARTITION_NAME: LAYERS}
    return nnx.List([nnx.merge(graphdef, nnx.spmd.remove_axis(jax.tree.map(lambda a: a[i], params), 0, axis))
                     for i in range(n)])


_POLICIES = {
    Remat.FULL: jax.checkpoint_policies.nothing_saveable,
    # matmuls against a weight have no batch dimension (Dense is one 2D dot); attention's do
    Remat.DOTS: jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def run_layers(layers: nnx.Module, step, carry, *, remat: Remat = Remat.NONE):
    """`carry = step(layer, carry, i)` for every layer `i` in order, where `layer` is a module
    with that layer's parameters.

    `layers` is stacked (`stack_layers`): one `lax.scan` over depth, `i` a traced int32, so the
    program holds one layer's code whatever the depth. Or it is held apart (`unstack_layers`):
    a Python loop, `i` a Python int, one copy of the code per layer. `remat` sets what the
    backward pass keeps of each layer.
    """
    apart = isinstance(layers, nnx.List)

    def one_layer(graphdef, i):
        def run(params, carry):
            return step(nnx.merge(graphdef, params), carry, i)
        if remat is Remat.NONE:
            return run
        # inside a scan nothing is CSE'd across iterations anyway; unrolled code needs the guard
        return jax.checkpoint(run, policy=_POLICIES[remat], prevent_cse=apart)

    if apart:
        for i, layer in enumerate(layers):
            graphdef, params = nnx.split(layer)
            carry = one_layer(graphdef, i)(params, carry)
        return carry
    graphdef, params = nnx.split(layers)
    n = jax.tree.leaves(params)[0].shape[0]

    def body(carry, inputs):
        layer_params, i = inputs
        return one_layer(graphdef, i)(layer_params, carry), None

    carry, _ = jax.lax.scan(body, carry, (params, jnp.arange(n, dtype=jnp.int32)))
    return carry
