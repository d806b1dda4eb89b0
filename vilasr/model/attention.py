"""Decoder attention: grouped-query attention without a cache (causal, blockwise) and over the
fixed-size KV cache the sampler decodes with (`KVCache`, one stacked array per keys and values;
contract in vilasr/model/qwen25vl.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tpu import target
from vilasr.model.layers import NEG_INF, softmax_attend

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Fixed-size decoding state, one stacked array per keys and values (all layers); see the
    contract in vilasr/model/qwen25vl.py.

    Inside a decode loop on XLA:CPU the sampler holds k and v apart, as tuples of per-layer
    (B, ...) arrays (`per_layer()`, back with `stacked()`; see `keep_layers_apart`), which a
    model with its layers apart (`Qwen25VL.apart()`) reads and writes.
    """

    k: jax.Array         # (layers, B, KV, head_dim, max_len): keys stored transposed
    v: jax.Array         # (layers, B, KV, max_len, head_dim)
    lengths: jax.Array   # (B,) int32: slots [0, lengths[b]) of row b hold its tokens; the next write goes there
    next_pos: jax.Array  # (B,) int32: rope position of each row's next token

    @property
    def max_len(self) -> int:
        return self.v.shape[-2] if not isinstance(self.v, tuple) else self.v[0].shape[-2]

    @property
    def batch(self) -> int:
        return self.lengths.shape[0]

    def per_layer(self) -> "KVCache":
        """k and v as tuples of per-layer (B, ...) arrays (one copy of the cache)."""
        return dataclasses.replace(self, k=tuple(self.k), v=tuple(self.v))

    def stacked(self) -> "KVCache":
        """The inverse of `per_layer()` (a no-op on a stacked cache)."""
        if not isinstance(self.k, tuple):
            return self
        return dataclasses.replace(self, k=jnp.stack(self.k), v=jnp.stack(self.v))

    # Logical axis names of each array (for `tpu/` shardings).
    K_AXES = ("layers", "batch", "kv_heads", "kv", "cache_length")
    V_AXES = ("layers", "batch", "kv_heads", "cache_length", "kv")
    ROW_AXES = ("batch",)


def grouped_attention(q, kt, vt, mask, groups: int, dtype, causal: bool = False):
    """GQA: q (B, L, H, D), kt/vt (B, KV, S, D) (heads-major), mask (B, L, S) bool -> (B, L, H, D).

    With `causal=True` the mask may instead be the key padding mask (B, S): the causal part is
    then an iota comparison inside each query block (no (B, L, S) mask is built or read).

    Query head h uses key/value head h // groups (transformers' repeat_kv). Each (batch, kv head)
    is one batched matmul with the group's queries stacked (XLA:CPU runs this far faster than a
    five-dimensional einsum). With `causal=True` (mask[:, i, j] is False for j > i, S == L) the
    queries are processed in blocks that only read the keys up to the block's end: half the
    work, and score tiles small enough to stay in cache.
    """
    b, l, h, d = q.shape
    kv, s = kt.shape[1], kt.shape[2]
    qt = q.reshape(b, l, kv, groups, d).transpose(0, 2, 1, 3, 4)  # (B, KV, L, G, D)
    size = _query_block(l) if causal else l
    outs = []
    for start in range(0, l, size):
        end = min(start + size, l)
        keys = end if causal else s
        n = (end - start) * groups
        qb = qt[:, :, start:end].reshape(b * kv, n, d)
        kb = kt[:, :, :keys].reshape(b * kv, keys, d)
        vb = vt[:, :, :keys].reshape(b * kv, keys, d)
        scores = jnp.einsum("nqd,nkd->nqk", qb, kb, preferred_element_type=jnp.float32) * (d ** -0.5)
        if mask.ndim == 2:  # key padding (B, S); causal from a static iota comparison
            rows = jax.lax.broadcasted_iota(jnp.int32, (end - start, keys), 0) + start
            cols = jax.lax.broadcasted_iota(jnp.int32, (end - start, keys), 1)
            block_mask = (cols <= rows)[None, None, :, None, :] & mask[:, None, None, None, :keys]
        else:
            block_mask = mask[:, None, start:end, None, :keys]
        scores = jnp.where(block_mask, scores.reshape(b, kv, end - start, groups, keys), NEG_INF)
        out = softmax_attend(scores.reshape(b * kv, n, keys), vb, None, dtype)
        outs.append(out.reshape(b, kv, end - start, groups, d))
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)
    return out.transpose(0, 2, 1, 3, 4).reshape(b, l, h, d)


CACHE_BLOCK = 128  # cache slots are read in blocks of this size; max_len is a multiple of it


def _reads_whole_cache(chunk_len: int) -> bool:
    """Whether a chunk attends over the whole cache in one pass instead of block by block.

    Only for single-token decode steps on XLA:CPU, which copies every dynamically sliced block
    before a library matmul reads it: there one pass over all `max_len` slots costs less than
    the blocks' copies and loop overhead. The sampler keeps `max_len` close to what a turn
    needs (GROWTH), so the slots read past the written ones stay bounded. Other backends (TPU)
    slice in place and read only the written blocks.
    """
    return chunk_len == 1 and target.platform() == "cpu"


def keep_layers_apart() -> bool:
    """Whether a decode loop should run the model with its layers apart (`Qwen25VL.apart()`) on a
    per-layer cache (`KVCache.per_layer()`) rather than scanning the stacked ones.

    Only on XLA:CPU, which copies any slice of an array (one layer of the stacked cache or of a
    stacked weight) before a library matmul reads it: every step would copy the whole cache and
    all layer weights once, ~40% of a small model's step. Apart, each layer's cache is its own
    buffer, written and read in place, and the weights are sliced once before the loop; the
    split and the re-stacking cost one copy of the cache each per decode call, not per step.
    Other backends (TPU) fuse the slices into their consumers: the cache stays stacked (no
    second copy of it) and the layers scanned.
    """
    return target.platform() == "cpu"


def cached_attention(q, ck, cv, mask, used, groups: int, dtype, layer=None, whole: bool | None = None):
    """GQA of a chunk over the (already updated) cache of one layer: q (B, L, H, D), ck
    (B, KV, D, S) (keys transposed), cv (B, KV, S, D), mask (B, L, S) bool, `used` (traced) the
    number of slots written so far -> (B, L, H, D). With `layer` (traced or not), ck and cv are
    the stacked caches of all layers (a leading layer axis) and layer `layer` is read.

    By default only the cache blocks holding written slots are read, with a running (online)
    softmax, so a step costs the length of the conversation so far, not the cache's capacity;
    `whole` (default: `_reads_whole_cache`) reads every slot in one pass instead. The cache is
    read with slices and contractions of the stacked arrays, never reshaped: a reshape makes
    XLA:CPU fuse the in-place cache write into each reader, copying the whole cache every step.
    """
    b, l, h, d = q.shape
    kv, s = ck.shape[-3], ck.shape[-1]
    n = l * groups
    qt = q.reshape(b, l, kv, groups, d).transpose(0, 2, 1, 3, 4).reshape(b, kv, n, d) * (d ** -0.5)
    rows = jnp.repeat(mask, groups, axis=1)[:, None]  # (B, 1, L*G, S); query rows in (L, G) order
    lead = () if layer is None else (layer,)

    def read(cache, start, size, slot_axis):  # `size` slots from `start` of this layer: (B, KV, ...)
        begin, shape = [0, 0, 0, 0], [b, kv, d, d]
        begin[slot_axis], shape[slot_axis] = start, size
        if not lead and size == s:
            return cache
        out = jax.lax.dynamic_slice(cache, [*lead, *begin], [1] * len(lead) + shape)
        return out[0] if lead else out

    def attend(kb, vb, mb):  # one block of keys: unnormalised (max, sum, sum of p @ v)
        scores = jnp.einsum("bkqd,bkds->bkqs", qt, kb.astype(dtype), preferred_element_type=jnp.float32)
        scores = jnp.where(mb, scores, NEG_INF)
        top = scores.max(-1, keepdims=True)
        p = jnp.exp(scores - top)
        pv = jnp.einsum("bkqs,bksd->bkqd", p.astype(dtype), vb.astype(dtype), preferred_element_type=jnp.float32)
        return top, p.sum(-1, keepdims=True), pv

    if whole is None:
        whole = _reads_whole_cache(l)
    if whole:
        _, total, acc = attend(read(ck, 0, s, 3), read(cv, 0, s, 2), rows)
    else:
        def block(j, carry):
            top, total, acc = carry
            start = j * CACHE_BLOCK
            kb, vb = read(ck, start, CACHE_BLOCK, 3), read(cv, start, CACHE_BLOCK, 2)
            mb = jax.lax.dynamic_slice(rows, (0, 0, 0, start), (b, 1, n, CACHE_BLOCK))
            block_top, block_total, block_pv = attend(kb, vb, mb)
            new_top = jnp.maximum(top, block_top)
            old, new = jnp.exp(top - new_top), jnp.exp(block_top - new_top)
            return new_top, total * old + block_total * new, acc * old + block_pv * new

        init = (jnp.full((b, kv, n, 1), NEG_INF, jnp.float32), jnp.zeros((b, kv, n, 1), jnp.float32),
                jnp.zeros((b, kv, n, d), jnp.float32))
        blocks = jnp.minimum((used + CACHE_BLOCK - 1) // CACHE_BLOCK, s // CACHE_BLOCK)
        _, total, acc = jax.lax.fori_loop(0, blocks, block, init)
    out = (acc / total).astype(dtype)
    return out.reshape(b, kv, l, groups, d).transpose(0, 2, 1, 3, 4).reshape(b, l, h, d)


def _query_block(length: int) -> int:
    """Query block for causal attention: 128 rows, but at most 8 blocks (bounded program size)."""
    return max(128, -(-length // 8))
