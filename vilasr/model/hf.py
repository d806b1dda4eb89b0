"""Hugging Face safetensors <-> `Qwen25VL` (Flax NNX), both directions, from local folders only.

One mapping table (`_MODULES`) pairs each of our module paths with its transformers name in the
current layout (`model.visual.*`, `model.language_model.*`, `lm_head`, transformers >= 4.52); the
legacy layout of the released checkpoints (`visual.*`, `model.*`, `lm_head`) is the same table
with two prefixes rewritten. Each kind of tensor (`TensorKind`) has one converter (`TensorRule`).
A transformers name with `{i}` is a per-layer tensor: our parameter is the stack of all layers'
tensors on a leading `layers` axis (the decoder's layers and the vision blocks are scanned).

Loading builds one parameter at a time on the host: a stacked one is allocated once and its
layer slices are filled from the per-layer tensors, read with `safetensors.safe_open(
framework="numpy")`, converted and cast one by one. Each parameter is then placed once: with a
`mesh`, each device receives only its own shard via `jax.make_array_from_callback` on the
`NamedSharding` derived from the parameter's logical names (rules from the `rules=` argument or
the enclosing `nnx.logical_axis_rules`), so no device ever holds a full copy of a sharded tensor
and the host never holds more than one parameter. Saving splits a stacked parameter again,
fetching one layer at a time. A mesh with Explicit axes (`jax.make_mesh`'s default) is
used with its axes in Auto mode (`logical.auto_axes`): run sharded code under
`jax.set_mesh(logical.auto_axes(mesh))`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tpu import logical
from vilasr.errors import CheckpointError, ConfigError
from vilasr.model.config import Qwen25VLConfig, Remat

class TensorKind(enum.Enum):
    """How a parameter's array differs from its transformers tensor."""

    LINEAR = "linear"   # HF (out, in) <-> ours (in..., out...): transpose + split axes
    CONV = "conv"       # HF (D, C, T, P, P) <-> ours (C*T*P*P, D): the patch-embed Conv3d as a linear
    BIAS = "bias"       # HF (out,) <-> ours (out...): reshape
    COPY = "copy"       # same shape: norms and the token embedding


class ModuleMapping(NamedTuple):
    """One row of the table: our module path, its transformers path (new layout; "{i}" marks a
    per-layer module, stacked on our side), the kind of its `kernel`, and how many leading axes
    of the kernel (after the `layers` axis) are input axes."""

    ours: str
    hf: str
    kernel_kind: TensorKind
    n_in: int


_L, _C, _N = TensorKind.LINEAR, TensorKind.CONV, TensorKind.COPY
_MODULES: tuple[ModuleMapping, ...] = tuple(ModuleMapping(*row) for row in (
    ("visual.patch_embed", "model.visual.patch_embed.proj", _C, 1),
    ("visual.blocks.norm1", "model.visual.blocks.{i}.norm1", _N, 0),
    ("visual.blocks.norm2", "model.visual.blocks.{i}.norm2", _N, 0),
    ("visual.blocks.attn.qkv", "model.visual.blocks.{i}.attn.qkv", _L, 1),
    ("visual.blocks.attn.proj", "model.visual.blocks.{i}.attn.proj", _L, 2),
    ("visual.blocks.mlp.gate", "model.visual.blocks.{i}.mlp.gate_proj", _L, 1),
    ("visual.blocks.mlp.up", "model.visual.blocks.{i}.mlp.up_proj", _L, 1),
    ("visual.blocks.mlp.down", "model.visual.blocks.{i}.mlp.down_proj", _L, 1),
    ("visual.merger.norm", "model.visual.merger.ln_q", _N, 0),
    ("visual.merger.fc1", "model.visual.merger.mlp.0", _L, 1),
    ("visual.merger.fc2", "model.visual.merger.mlp.2", _L, 1),
    ("embed", "model.language_model.embed_tokens", _N, 0),
    ("layers.input_norm", "model.language_model.layers.{i}.input_layernorm", _N, 0),
    ("layers.post_attn_norm", "model.language_model.layers.{i}.post_attention_layernorm", _N, 0),
    ("layers.attn.q", "model.language_model.layers.{i}.self_attn.q_proj", _L, 1),
    ("layers.attn.k", "model.language_model.layers.{i}.self_attn.k_proj", _L, 1),
    ("layers.attn.v", "model.language_model.layers.{i}.self_attn.v_proj", _L, 1),
    ("layers.attn.o", "model.language_model.layers.{i}.self_attn.o_proj", _L, 2),
    ("layers.mlp.gate", "model.language_model.layers.{i}.mlp.gate_proj", _L, 1),
    ("layers.mlp.up", "model.language_model.layers.{i}.mlp.up_proj", _L, 1),
    ("layers.mlp.down", "model.language_model.layers.{i}.mlp.down_proj", _L, 1),
    ("norm", "model.language_model.norm", _N, 0),
    ("lm_head", "lm_head", _L, 1),
))
_LEGACY_PREFIXES = (("model.visual.", "visual."), ("model.language_model.", "model."))
_COMPILED = [(re.compile("^" + re.escape(m.ours) + r"(?:\.(kernel|bias|scale))?$"), m) for m in _MODULES]

DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


def _to_legacy(name: str) -> str:
    for new, old in _LEGACY_PREFIXES:
        if name.startswith(new):
            return old + name[len(new):]
    return name


@dataclasses.dataclass(frozen=True)
class TensorRule:
    """How one of our parameters maps to one HF tensor, or (`stacked`) to one HF tensor per layer.

    The shapes and converters below are those of one tensor: for a stacked parameter, of one
    layer's slice (its shape without the leading `layers` axis).
    """

    ours: str
    hf: str  # the transformers name; a per-layer name holds "{i}"
    kind: TensorKind
    n_in: int

    @property
    def stacked(self) -> bool:
        return "{i}" in self.hf

    def hf_name(self, layer: int | None = None) -> str:
        return self.hf.replace("{i}", str(layer)) if self.stacked else self.hf

    def hf_shape(self, shape: tuple[int, ...], cfg: Qwen25VLConfig) -> tuple[int, ...]:
        if self.kind is TensorKind.LINEAR:
            return (math.prod(shape[self.n_in:]), math.prod(shape[: self.n_in]))
        if self.kind is TensorKind.CONV:
            v = cfg.vision
            return (shape[1], v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
        if self.kind is TensorKind.BIAS:
            return (math.prod(shape),)
        return tuple(shape)

    def to_ours(self, w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.kind is TensorKind.LINEAR:
            return w.T.reshape(shape)
        if self.kind is TensorKind.CONV:
            return w.reshape(w.shape[0], -1).T
        return w.reshape(shape)

    def to_hf(self, w: np.ndarray, cfg: Qwen25VLConfig) -> np.ndarray:
        target = self.hf_shape(w.shape, cfg)
        if self.kind is TensorKind.LINEAR:
            return np.ascontiguousarray(w.reshape(target[1], target[0]).T)
        if self.kind is TensorKind.CONV:
            return np.ascontiguousarray(w.T.reshape(target))
        return np.ascontiguousarray(w.reshape(target))


def hf_rule(our_path: str, layout: str = "new") -> TensorRule:
    """The mapping rule for one of our parameter paths (e.g. 'layers.attn.q.kernel')."""
    for pattern, row in _COMPILED:
        m = pattern.match(our_path)
        if m is None:
            continue
        leaf = m.group(1)
        name = row.hf + (".bias" if leaf == "bias" else ".weight")
        if layout == "legacy":
            name = _to_legacy(name)
        kind = TensorKind.BIAS if leaf == "bias" else (row.kernel_kind if leaf == "kernel" else TensorKind.COPY)
        return TensorRule(our_path, name, kind, row.n_in)
    raise CheckpointError(f"no Hugging Face name is known for parameter {our_path!r}")


def _our_params(model_or_state):
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state, nnx.Param)
    for path, var in nnx.to_flat_state(state):
        yield ".".join(str(p) for p in path), var


# ----------------------------------------------------------------------------- reading
class _Tensors:
    """Name -> tensor access over one or several safetensors files of a local folder."""

    def __init__(self, hf_dir: Path):
        from safetensors import SafetensorError, safe_open

        index = hf_dir / "model.safetensors.index.json"
        single = hf_dir / "model.safetensors"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{index} is not a valid safetensors index ({e})") from None
            files = sorted(set(weight_map.values()))
        elif single.exists():
            files = [single.name]
        else:
            files = sorted(p.name for p in hf_dir.glob("*.safetensors"))
            if not files:
                raise CheckpointError(
                    f"{hf_dir} has no model.safetensors, no model.safetensors.index.json and no *.safetensors "
                    "file; point to a downloaded Hugging Face model folder")
        self._handles = {}
        self.where: dict[str, str] = {}
        for f in files:
            path = hf_dir / f
            if not path.exists():
                raise CheckpointError(f"shard {f} listed in the index is missing from {hf_dir}")
            try:
                handle = safe_open(str(path), framework="numpy")
            except (SafetensorError, OSError) as e:  # truncated, empty, not a safetensors file
                raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it may be truncated or "
                                      "damaged: download it again") from None
            self._handles[f] = handle
            for key in handle.keys():
                self.where[key] = f

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self.where[name]].get_slice(name).get_shape())

    def get(self, name: str) -> np.ndarray:
        return self._handles[self.where[name]].get_tensor(name)


def read_config(hf_dir: Path) -> Qwen25VLConfig:
    path = hf_dir / "config.json"
    if not path.exists():
        raise CheckpointError(f"{hf_dir} has no config.json; point to a Hugging Face model folder")
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    return Qwen25VLConfig.from_hf_dict(raw)


def load_pretrained(hf_dir, model_class, *, dtype=jnp.float32, param_dtype=None, mesh=None, rules=None,
                    remat: Remat | str | bool = Remat.NONE, config: Qwen25VLConfig | None = None):
    """Build a `model_class` (Qwen25VL) from a local HF folder. Raises CheckpointError / ConfigError."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise CheckpointError(f"{hf_dir} is not a directory")
    cfg = config or read_config(hf_dir)
    cfg = cfg.replace(remat=Remat.of(remat))
    param_dtype = param_dtype or dtype
    tensors = _Tensors(hf_dir)
    layout = "new" if any(k.startswith(("model.language_model.", "model.visual.")) for k in tensors.where) \
        else "legacy"
    rules = logical.current_rules() if rules is None else tuple(rules)
    mesh = None if mesh is None else logical.auto_axes(mesh)

    abstract = nnx.eval_shape(lambda: model_class(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    used = set()
    for our, var in _our_params(state):
        rule = hf_rule(our, layout)
        shape = tuple(var.shape)
        if rule.stacked:  # allocated once, filled layer by layer
            host = np.empty(shape, np.dtype(param_dtype))
            for i in range(shape[0]):
                host[i] = _read_tensor(tensors, rule, i, shape[1:], cfg, hf_dir)
                used.add(rule.hf_name(i))
        else:
            host = _read_tensor(tensors, rule, None, shape, cfg, hf_dir).astype(np.dtype(param_dtype))
            used.add(rule.hf)
        var.set_value(_place(host, var, mesh, rules))
        del host
    unused = sorted(set(tensors.where) - used)
    if unused and not (cfg.tie_word_embeddings and unused == ["lm_head.weight"]):
        warnings.warn(f"{len(unused)} checkpoint tensors were not used, e.g. {unused[:3]}", stacklevel=2)
    return nnx.merge(graphdef, state)


def _read_tensor(tensors: _Tensors, rule: TensorRule, layer: int | None, shape, cfg, hf_dir) -> np.ndarray:
    """One HF tensor (of `layer` for a stacked rule), checked and converted to our layout `shape`."""
    name = rule.hf_name(layer)
    what = f"parameter {rule.ours}" if layer is None else f"layer {layer} of parameter {rule.ours}"
    expected = rule.hf_shape(shape, cfg)
    if name not in tensors.where:
        raise CheckpointError(
            f"tensor {name!r} (for {what}, expected shape {expected}) is missing from the checkpoint in {hf_dir}")
    found = tensors.shape(name)
    if found != expected:
        raise CheckpointError(
            f"tensor {name!r} has shape {found} but the config expects {expected} ({what}); "
            "does config.json match the weights?")
    return rule.to_ours(tensors.get(name), shape)


def _place(host: np.ndarray, var, mesh, rules) -> jax.Array:
    if mesh is None:
        return jnp.asarray(host)
    names = var.get_metadata().get("out_sharding") or (None,) * host.ndim
    sharding = logical.named_sharding(mesh, names, rules, host.shape)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


# ----------------------------------------------------------------------------- writing
def _parse_size(size) -> int:
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(size), re.IGNORECASE)
    if not m:
        raise ValueError(f"cannot parse shard size {size!r}; use bytes or e.g. '5GB'")
    unit = (m.group(2) or "B").upper().replace("I", "")
    return int(float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit])


def _to_host(value) -> np.ndarray:
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental import multihost_utils

        value = multihost_utils.process_allgather(value, tiled=True)
    return np.asarray(jax.device_get(value))


class _SaveEntry(NamedTuple):
    """One tensor to write: its rule, our variable (and its layer, for a stacked one), its size on
    disk and the dtype it is saved in."""

    rule: TensorRule
    var: nnx.Variable
    layer: int | None
    nbytes: int
    dtype: np.dtype

    def host_value(self, cfg: Qwen25VLConfig) -> np.ndarray:
        value = self.var.get_value()
        if self.layer is not None:
            value = _take_layer(value, self.layer)
        return self.rule.to_hf(_to_host(value).astype(self.dtype), cfg)


@jax.jit
def _take_layer(value: jax.Array, layer) -> jax.Array:
    # a traced index: one compilation per parameter shape, not per layer
    return jax.lax.dynamic_index_in_dim(value, layer, keepdims=False)


def save_pretrained(model, out_dir, *, max_shard_size=DEFAULT_MAX_SHARD_BYTES, layout: str = "legacy",
                    config_layout: str = "flat", dtype=None) -> None:
    """Write config.json, generation_config.json and safetensors that transformers loads.

    Tensors above `max_shard_size` in total are split into `model-0000k-of-0000n.safetensors`
    with a `model.safetensors.index.json`. `layout="legacy"` writes the released checkpoints'
    names (`visual.*`, `model.*`), `"new"` the transformers >= 4.52 names. `dtype` casts on save
    (default: the parameters' dtype). Shards are materialised one at a time on the host.
    """
    from safetensors.numpy import save_file

    if layout not in ("legacy", "new"):
        raise ValueError(f"layout must be 'legacy' or 'new', got {layout!r}")
    cfg: Qwen25VLConfig = model.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    limit = _parse_size(max_shard_size)

    entries = []
    for our, var in _our_params(model):
        rule = hf_rule(our, layout)
        save_dtype = np.dtype(dtype or var.get_value().dtype)
        layers = range(var.shape[0]) if rule.stacked else [None]
        nbytes = math.prod(var.shape[1:] if rule.stacked else var.shape) * save_dtype.itemsize
        entries += [_SaveEntry(rule, var, i, nbytes, save_dtype) for i in layers]
    # layer by layer (each shard file then holds whole layers, as transformers writes them)
    entries.sort(key=lambda e: -1 if e.layer is None else e.layer)
    shards, current, size = [], [], 0
    for entry in entries:
        if current and size + entry.nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry.nbytes
    shards.append(current)

    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    for stale in list(out.glob("model*.safetensors")) + [out / "model.safetensors.index.json"]:
        if stale.exists():
            stale.unlink()
    weight_map, total = {}, 0
    for fname, shard in zip(names, shards):
        tensors = {}
        for entry in shard:
            name = entry.rule.hf_name(entry.layer)
            tensors[name] = entry.host_value(cfg)
            weight_map[name] = fname
            total += entry.nbytes
        if jax.process_index() == 0:
            save_file(tensors, str(out / fname), metadata={"format": "pt"})
        del tensors
    if jax.process_index() != 0:
        return
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    torch_dtype = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(
        entries[0].dtype.name, "float32")
    (out / "config.json").write_text(json.dumps(cfg.to_hf_dict(config_layout, torch_dtype), indent=2) + "\n")
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": list(cfg.eos_token_ids),
           "pad_token_id": cfg.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")


__all__ = ["load_pretrained", "save_pretrained", "hf_rule", "CheckpointError", "ConfigError",
           "DEFAULT_MAX_SHARD_BYTES"]
