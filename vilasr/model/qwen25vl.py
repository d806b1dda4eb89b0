"""Qwen2.5-VL in Flax NNX: vision tower (vilasr/model/vision.py) + Qwen2 decoder with multimodal RoPE.

Call convention mirrors transformers' `Qwen2_5_VLForConditionalGeneration`:

    logits = model(input_ids, pixel_values, image_grid_thw, attention_mask)   # (B, L, V) float32

Host-side inputs. Two things depend on the *values* of `input_ids`/`image_grid_thw` and are
computed with NumPy on the host: the M-RoPE positions (`get_rope_index`) and the vision tower's
window permutation (`vision_plan`). Called eagerly, the model computes them itself. Under
`jax.jit`/`nnx.jit`, compute them first with `prepare_inputs(config, ...)` and pass the result as
keyword arguments (`positions=`, `image_plan=`, `video_plan=`); they are plain int32 arrays, so
one compiled program serves every layout of the same shapes.

Padding. `attention_mask` (B, L) marks real tokens (1) and padding (0), left or right. Padded
positions get rope position 0 and are never attended to; their logits are meaningless.
Text-only rows get positions `cumsum(mask) - 1` (transformers' forward uses `arange(L)` when no
image is given; the two agree unless a row is left-padded, where ours equals the unpadded row).

KV cache (for the sampler's `lax.while_loop`). `cache = model.init_cache(batch, max_len)` makes a
`KVCache` pytree of fixed-shape arrays:

    k          (layers, B, kv_heads, head_dim, max_len) in the compute dtype: every layer's keys in
               one array, stored transposed, so the score product q @ k^T reads them in matmul order
    v          (layers, B, kv_heads, max_len, head_dim)
               (both heads-major, so attention reads the cache without moving it each step)
    lengths    (B,) int32: row b's tokens fill slots [0, lengths[b]); its next token goes to lengths[b]
    next_pos   (B,) int32: rope position of the next token of each row

Rows are independent: each has its own length, so one row can be emptied (lengths[b] = 0,
next_pos[b] = 0) and given a new sequence while the others go on -- what continuous batching
needs. `logits, cache = model(chunk_ids, ..., attention_mask=chunk_mask, cache=cache)` writes each
row's real tokens (padding on either side is skipped) into that row's next slots, in order, attends
causally over the row's slots, and advances `lengths[b]` by the row's real tokens and `next_pos` to
(largest real position in the chunk) + 1. After a prefill `next_pos == rope_deltas +
number_of_real_tokens`, i.e. decode positions are "cache position + rope delta" as in
transformers. For a text chunk (`image_grid_thw is None`) positions default to
`next_pos + cumsum(chunk_mask) - 1`, which is jit-able: a decode step is simply
`model(tokens[:, None], cache=cache)`. A chunk with images needs host positions:
`prepare_inputs(..., start_positions=cache.next_pos)`. The caller keeps every row's
`lengths[b] + real tokens <= max_len` (a token past the end is dropped).

Layers. The decoder's layers are one stacked `DecoderLayer` (every parameter has a leading
axis of `num_hidden_layers`, logical name `layers`), run by one `lax.scan` over depth
(`layers.run_layers`), so compile time and program size do not grow with depth; the vision
tower's blocks likewise. With a cache, the scan carries the stacked cache and each layer writes
its new keys/values into its own slice in place (`Attention`). `model.apart()` is the same
model with each layer its own module (static slices of the stacked parameters), run by a
Python loop: the sampler's decode loop uses it on XLA:CPU together with a per-layer cache
(`KVCache.per_layer`), because XLA:CPU copies every slice of an array before a library matmul
reads it (see `keep_layers_apart`); it is also the unrolled peer of compile-time benchmarks.

Jitting. For speed, jit pure functions of the split state (`graphdef, state = nnx.split(model)`;
`jax.jit(lambda state, ...: nnx.merge(graphdef, state)(...))`) or use `nnx.jit(..., graph=False)`;
graph-mode `nnx.jit` re-walks the module on every call (milliseconds per step on a CPU).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tpu import logical
from vilasr.model import hf
from vilasr.model.attention import CACHE_BLOCK, KVCache, cached_attention, grouped_attention
from vilasr.model.config import Qwen25VLConfig, Remat, TextConfig
from vilasr.model.layers import (Dense, GatedMLP, RMSNorm, apply_rotary, param, run_layers, stack_layers,
                                 unstack_layers)
from vilasr.model.rope import get_rope_index, mrope_cos_sin, offset_positions, text_positions
from vilasr.model.vision import VisionPlan, VisionTower, vision_plan


def prepare_inputs(
    config: Qwen25VLConfig,
    input_ids,
    attention_mask=None,
    image_grid_thw=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    start_positions=None,
) -> dict[str, Any]:
    """Host-side inputs for a jitted call: `positions`, `image_plan`, `video_plan` (+ `rope_deltas`).

    Pass everything but `rope_deltas` to the model as keyword arguments. `start_positions` (B,)
    offsets all positions (use `cache.next_pos` for a chunk appended to a filled cache).
    """
    positions, deltas = get_rope_index(config, input_ids, image_grid_thw, video_grid_thw,
                                       attention_mask, second_per_grid_ts)
    if start_positions is not None:
        positions = offset_positions(positions, attention_mask, start_positions)
        deltas = deltas + np.asarray(start_positions, np.int32).reshape(-1)
    return {
        "positions": positions,
        "rope_deltas": deltas,
        "image_plan": vision_plan(image_grid_thw, config.vision) if image_grid_thw is not None else None,
        "video_plan": vision_plan(video_grid_thw, config.vision) if video_grid_thw is not None else None,
    }


# ----------------------------------------------------------------------------- decoder
class Attention(nnx.Module):
    """Grouped-query attention with QKV bias and M-RoPE; optionally reads/writes a KV cache."""

    def __init__(self, cfg: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        e, h, kv, d = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, std=cfg.initializer_range)
        self.num_kv, self.groups, self.head_dim, self.dtype = kv, h // kv, d, dtype
        self.q = Dense((e,), (h, d), ("embed", "heads", "kv"), use_bias=True, **kw)
        self.k = Dense((e,), (kv, d), ("embed", "kv_heads", "kv"), use_bias=True, **kw)
        self.v = Dense((e,), (kv, d), ("embed", "kv_heads", "kv"), use_bias=True, **kw)
        self.o = Dense((h, d), (e,), ("heads", "kv", "embed"), use_bias=False, **kw)

    def __call__(self, x, cos, sin, mask, kv_cache=None, slots=None, used=None, layer=None):
        """Without a cache: causal attention over the chunk; returns (out, None). With `kv_cache`
        = (k, v): writes each chunk token b, j into slot `slots[b, j]` of its row (padding carries
        an out-of-range slot and is not written), then attends over the cache's first `used`
        slots; returns (out, updated (k, v)). (k, v) are this layer's own arrays, or with `layer`
        (traced or not) the stacked arrays of all layers, of which layer `layer` is written and read."""
        b, l, _ = x.shape
        q = apply_rotary(self.q(x), cos[:, :, None], sin[:, :, None])
        k = apply_rotary(self.k(x), cos[:, :, None], sin[:, :, None])
        v = self.v(x)
        q = logical.constrain(q, ("batch", "length", "heads", "kv"))
        if kv_cache is None:
            k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # (B, KV, L, D)
            out = grouped_attention(q, k.astype(self.dtype), v.astype(self.dtype), mask, self.groups, self.dtype,
                                    causal=True)
            return self.o(out), None
        ck, cv = kv_cache
        rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, l))
        # one scatter per array: row b's token j goes to slot slots[b, j]; (B, L, KV, D) updates
        if layer is not None:  # stacked caches of all layers: write into this layer's slice
            new_k = ck.at[layer, rows, :, :, slots].set(k.astype(ck.dtype), mode="drop")
            new_v = cv.at[layer, rows, :, slots, :].set(v.astype(cv.dtype), mode="drop")
        else:
            new_k = ck.at[rows, :, :, slots].set(k.astype(ck.dtype), mode="drop")
            new_v = cv.at[rows, :, slots, :].set(v.astype(cv.dtype), mode="drop")
        lead = 0 if layer is not None else 1
        new_k = logical.constrain(new_k, KVCache.K_AXES[lead:])
        new_v = logical.constrain(new_v, KVCache.V_AXES[lead:])
        # the barrier keeps the write a separate, in-place step before the reads
        new_k, new_v = jax.lax.optimization_barrier((new_k, new_v))
        out = cached_attention(q, new_k, new_v, mask, used, self.groups, self.dtype, layer)
        return self.o(out), (new_k, new_v)


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, rngs=rngs, **kw)
        self.attn = Attention(cfg, rngs=rngs, **kw)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, rngs=rngs, **kw)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), use_bias=False,
                            rngs=rngs, std=cfg.initializer_range, act_names=("batch", "length", "mlp"), **kw)

    def __call__(self, x, cos, sin, mask, kv_cache=None, slots=None, used=None, layer=None):
        h, new_cache = self.attn(self.input_norm(x), cos, sin, mask, kv_cache, slots, used, layer)
        x = x + h
        x = x + self.mlp(self.post_attn_norm(x))
        return logical.constrain(x, ("batch", "length", "embed")), new_cache


# ----------------------------------------------------------------------------- the model
class Qwen25VL(nnx.Module):
    """Qwen2.5-VL (vision tower + Qwen2 decoder). See the module docstring for the contracts."""

    def __init__(self, config: Qwen25VLConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        t = config.text
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.config = config
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.visual = VisionTower(config.vision, remat=config.remat, **kw)
        self.embed = param(rngs, "normal", (t.vocab_size, t.hidden_size), ("vocab", "embed"), param_dtype,
                           t.initializer_range)
        self.layers = stack_layers(lambda: DecoderLayer(t, **kw), t.num_hidden_layers)  # one stacked layer
        self.norm = RMSNorm(t.hidden_size, t.rms_norm_eps, **kw)
        self.lm_head = (None if config.tie_word_embeddings else
                        Dense((t.hidden_size,), (t.vocab_size,), ("embed", "vocab"), use_bias=False,
                              std=t.initializer_range, **kw))

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, hf_dir, *, dtype=jnp.float32, param_dtype=None, mesh=None, rules=None,
                        remat: Remat | str | bool = Remat.NONE) -> "Qwen25VL":
        """Load a local Hugging Face folder (config.json + safetensors); see vilasr.model.hf.
        `remat`: the `Remat` policy of the layers ('none', 'full', 'dots'; True means 'full')."""
        return hf.load_pretrained(hf_dir, cls, dtype=dtype, param_dtype=param_dtype, mesh=mesh, rules=rules,
                                  remat=remat)

    def save_pretrained(self, out_dir, **kwargs) -> None:
        """Write config.json + safetensors that transformers loads; see vilasr.model.hf."""
        hf.save_pretrained(self, out_dir, **kwargs)

    def apart(self) -> "Qwen25VL":
        """The same model with the decoder's layers and the vision blocks held apart: one module
        per layer on static slices of the stacked parameters, run by a Python loop (see the
        module docstring, Layers). Meant to be called inside a jitted function: the slices are
        taken there (gradients flow back to the stacked parameters); `self` is not changed."""
        graphdef, state = nnx.split(self)
        other = nnx.merge(graphdef, state, copy=True)
        other.layers = unstack_layers(self.layers)
        other.visual.blocks = unstack_layers(self.visual.blocks)
        return other

    def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
        """An empty cache with room for `max_len` slots (rounded up to a multiple of CACHE_BLOCK)."""
        t = self.config.text
        dtype = dtype or self.dtype
        max_len = -(-max_len // CACHE_BLOCK) * CACHE_BLOCK
        n, kv, d = t.num_hidden_layers, t.num_key_value_heads, t.head_dim
        return KVCache(k=jnp.zeros((n, batch, kv, d, max_len), dtype), v=jnp.zeros((n, batch, kv, max_len, d), dtype),
                       lengths=jnp.zeros((batch,), jnp.int32), next_pos=jnp.zeros((batch,), jnp.int32))

    # -- pieces -----------------------------------------------------------------------------
    def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
        x = jnp.take(self.embed[...], input_ids, axis=0).astype(self.dtype)
        return logical.constrain(x, ("batch", "length", "embed"))

    def image_features(self, pixel_values, image_grid_thw=None, plan: VisionPlan | None = None):
        """Merged vision features (num_tokens, hidden) for all images (or videos) in grid order."""
        if plan is None:
            plan = vision_plan(_host(image_grid_thw, "image_grid_thw", "image_plan"), self.config.vision)
        return self.visual(jnp.asarray(pixel_values), plan)

    def logits(self, hidden: jax.Array) -> jax.Array:
        if self.lm_head is None:  # tied: logits = hidden @ embedding^T (one 2D matmul)
            table = self.embed[...].astype(self.dtype)
            flat = jnp.dot(hidden.reshape(-1, hidden.shape[-1]), table.T)
            out = flat.reshape(*hidden.shape[:-1], table.shape[0])
        else:
            out = self.lm_head(hidden)
        return logical.constrain(out.astype(jnp.float32), ("batch", "length", "vocab"))

    # -- forward ------------------------------------------------------------------------------
    def __call__(
        self,
        input_ids: jax.Array,
        pixel_values: jax.Array | None = None,
        image_grid_thw=None,
        attention_mask: jax.Array | None = None,
        *,
        pixel_values_videos: jax.Array | None = None,
        video_grid_thw=None,
        second_per_grid_ts=None,
        positions: jax.Array | None = None,
        image_plan: VisionPlan | None = None,
        video_plan: VisionPlan | None = None,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
        image_embeds: jax.Array | None = None,
        return_hidden: bool = False,
    ):
        """Logits (B, L, V) float32; with `cache=`, returns `(logits, new_cache)`.

        `image_embeds` (num_image_tokens, hidden): already encoded image features
        (`image_features`), used instead of `pixel_values` -- e.g. by a rollout that encodes each
        image once, when it is made.

        `logits_to_keep=k > 0` returns only the last k positions' logits. `return_hidden=True`
        returns the final-normed hidden states (B, L, E) instead of logits (`model.logits(h)` maps
        them), so a training loss can compute logits chunk by chunk. Called outside any
        trace, the host-side inputs are prepared here and the forward runs as one jitted program
        (compiled once per input shapes); inside jit/grad it is traced inline.
        """
        cfg = self.config
        if positions is None and (image_grid_thw is not None or video_grid_thw is not None):
            positions = self._host_positions(input_ids, attention_mask, image_grid_thw, video_grid_thw,
                                             second_per_grid_ts, cache)
        if pixel_values is not None and image_plan is None:
            image_plan = vision_plan(_host(image_grid_thw, "image_grid_thw", "image_plan"), cfg.vision)
        if pixel_values_videos is not None and video_plan is None:
            video_plan = vision_plan(_host(video_grid_thw, "video_grid_thw", "video_plan"), cfg.vision)
        if image_embeds is not None and pixel_values is not None:
            raise ValueError("pass either pixel_values or image_embeds, not both")
        args = (input_ids, attention_mask, pixel_values, image_plan, pixel_values_videos, video_plan,
                positions, cache, image_embeds)
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, self.embed.get_value())))
        if traced:
            return self._forward(*args, logits_to_keep=logits_to_keep, return_hidden=return_hidden)
        return _jit_forward(self, *args, logits_to_keep=logits_to_keep, return_hidden=return_hidden)

    def _forward(self, input_ids, attention_mask, pixel_values, image_plan, pixel_values_videos, video_plan,
                 positions, cache, image_embeds=None, *, logits_to_keep: int = 0, return_hidden: bool = False):
        cfg = self.config
        input_ids = jnp.asarray(input_ids)
        b, l = input_ids.shape
        mask = (jnp.ones((b, l), bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool))

        x = self.embed_tokens(input_ids)
        if image_embeds is not None:
            x = _scatter_features(x, input_ids == cfg.image_token_id, jnp.asarray(image_embeds))
        for pixels, plan, token in ((pixel_values, image_plan, cfg.image_token_id),
                                    (pixel_values_videos, video_plan, cfg.video_token_id)):
            if pixels is not None:
                x = _scatter_features(x, input_ids == token, self.visual(jnp.asarray(pixels), plan))

        if positions is None:  # text-only chunk: jit-able default, continuing from the cache
            positions = text_positions(mask, cache.next_pos if cache is not None else None)
        positions = jnp.asarray(positions, jnp.int32)
        cos, sin = mrope_cos_sin(positions, cfg.text)

        if cache is None:
            # key padding mask; grouped_attention adds the causal part per query block
            x = run_layers(self.layers, lambda layer, x, _: layer(x, cos, sin, mask)[0], x, remat=cfg.remat)
            new_cache = None
        else:
            # each row's real tokens go to the slots after its own, in order (padding anywhere is
            # skipped: an out-of-range slot, never written); a query sees its row's slots up to its own
            written = jnp.cumsum(mask, axis=1, dtype=jnp.int32)
            lengths = cache.lengths + written[:, -1]
            q_slot = cache.lengths[:, None] + written - 1
            slots = jnp.where(mask, q_slot, cache.max_len)
            attn_mask = jnp.arange(cache.max_len)[None, None, :] <= q_slot[:, :, None]
            used = jnp.max(lengths)
            per_layer = isinstance(cache.k, tuple)
            if per_layer and not isinstance(self.layers, nnx.List):
                raise ValueError("a per-layer cache (KVCache.per_layer) needs the layers apart: use model.apart()")

            def step(layer, carry, i):
                x, (k, v) = carry
                if per_layer:  # i is a Python int: this layer's own cache arrays
                    x, (k_i, v_i) = layer(x, cos, sin, attn_mask, (k[i], v[i]), slots, used)
                    return x, (k[:i] + (k_i,) + k[i + 1:], v[:i] + (v_i,) + v[i + 1:])
                # the carry holds the whole stacked cache: layer i writes its slice in place
                return layer(x, cos, sin, attn_mask, (k, v), slots, used, i)

            x, (k, v) = run_layers(self.layers, step, (x, (cache.k, cache.v)))
            chunk_max = jnp.max(jnp.where(mask[None], positions, -1), axis=(0, 2))
            next_pos = jnp.where(mask.any(axis=1), chunk_max + 1, cache.next_pos).astype(jnp.int32)
            new_cache = KVCache(k=k, v=v, lengths=lengths, next_pos=next_pos)

        x = self.norm(x)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        if return_hidden:
            return x if cache is None else (x, new_cache)
        logits = self.logits(x)
        return logits if cache is None else (logits, new_cache)

    def _host_positions(self, input_ids, attention_mask, image_grid_thw, video_grid_thw, second_per_grid_ts,
                        cache):
        ids = _host(input_ids, "input_ids", "positions")
        mask = None if attention_mask is None else _host(attention_mask, "attention_mask", "positions")
        start = None if cache is None else _host(cache.next_pos, "cache.next_pos", "positions")
        image_grid = None if image_grid_thw is None else _host(image_grid_thw, "image_grid_thw", "positions")
        video_grid = None if video_grid_thw is None else _host(video_grid_thw, "video_grid_thw", "positions")
        positions, _ = get_rope_index(self.config, ids, image_grid, video_grid, mask, second_per_grid_ts)
        return positions if start is None else offset_positions(positions, mask, start)

    def num_params(self) -> int:
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(self, nnx.Param)))


# graph=False: the model is passed as a pytree (no shared references), ~10x less per-call overhead.
_jit_forward = nnx.jit(Qwen25VL._forward, static_argnames=("logits_to_keep", "return_hidden"), graph=False)


def _scatter_features(x: jax.Array, is_token: jax.Array, feats: jax.Array) -> jax.Array:
    """Replace placeholder-token embeddings by `feats` in row-major order (transformers' masked_scatter)."""
    b, l, e = x.shape
    flat = is_token.reshape(-1)
    idx = jnp.clip(jnp.cumsum(flat) - 1, 0, feats.shape[0] - 1)
    gathered = feats.astype(x.dtype)[idx].reshape(b, l, e)
    return jnp.where(is_token[..., None], gathered, x)


def _host(value, name: str, precompute: str) -> np.ndarray:
    if isinstance(value, jax.core.Tracer):
        raise ValueError(
            f"{name} is traced (inside jit); compute `{precompute}` on the host with "
            "vilasr.model.prepare_inputs(config, input_ids, attention_mask, image_grid_thw, ...) "
            "and pass it as a keyword argument")
    return np.asarray(value)
