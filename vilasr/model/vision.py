"""Qwen2.5-VL vision tower in Flax NNX (its building blocks are in vilasr/model/layers.py).

Window attention is jit-able: everything that depends on the image sizes (`image_grid_thw`) is
computed on the host by `vision_plan()` into fixed-shape integer arrays (a window permutation,
its inverse, rotary positions and two segment-id vectors). On device, attention is dense over all
patches with a block-diagonal mask `segment[q] == segment[k]`, which gives exactly the softmax
of transformers' per-`cu_seqlens`-chunk attention (masked logits contribute exp(-inf) = 0).
One compiled program serves any mix of image sizes with the same total patch count.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tpu import logical
from vilasr.model.config import Remat, VisionConfig
from vilasr.model.layers import (NEG_INF, Dense, GatedMLP, RMSNorm, apply_rotary, run_layers, softmax_attend,
                                 stack_layers)

# ----------------------------------------------------------------------------- host-side plan
@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["window_index", "reverse_index", "rope_pos", "full_segments", "window_segments"],
                   meta_fields=["full_block", "window_block"])
@dataclasses.dataclass(frozen=True)
class VisionPlan:
    """Everything the vision tower needs from `grid_thw`, as fixed-shape int32 arrays.

    N = total patches, U = N / merge_unit merged tokens. Patches arrive in the processor's
    order (grouped by 2x2 merge blocks); the tower permutes merge blocks into window order,
    runs the blocks, merges, and restores the original order. `full_block`/`window_block` are
    static (part of the jit cache key): the longest frame / window in patches, negated when the
    segments tile blocks of that size exactly (see `segment_attention`).
    """

    window_index: jax.Array  # (U,) merge-block order used inside the tower (transformers' window_index)
    reverse_index: jax.Array  # (U,) inverse permutation, applied after the merger
    rope_pos: jax.Array  # (N, 2) (row, col) patch coordinates, already in window order
    full_segments: jax.Array  # (N,) frame id of each (permuted) patch: full-attention blocks
    window_segments: jax.Array  # (N,) window id of each (permuted) patch: windowed blocks
    full_block: int = 0
    window_block: int = 0


def vision_plan(grid_thw, cfg: VisionConfig) -> VisionPlan:
    """Compute the window permutation, segments and rotary positions on the host (NumPy).

    Matches transformers' `get_vision_window_index` / `get_vision_cu_seqlens` /
    `get_vision_position_ids`: windows of `window_merged x window_merged` merged tokens tile
    each frame from the top-left (edge windows are smaller; empty ones vanish as in its
    `unique_consecutive`), full attention spans one frame (t segments per video).
    """
    grid = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    m, ws, unit = cfg.spatial_merge_size, cfg.window_merged, cfg.merge_unit
    window_index, win_seg, full_seg, rope = [], [], [], []
    offset = window_id = frame_id = 0
    for t, h, w in grid.tolist():
        if h % m or w % m:
            raise ValueError(f"image grid {(t, h, w)} is not divisible by spatial_merge_size {m}")
        mh, mw = h // m, w // m
        # (row, col) of each patch in the processor's block-major order, repeated per frame.
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        block = lambda a: a.reshape(mh, m, mw, m).transpose(0, 2, 1, 3).reshape(-1)  # noqa: E731
        rope.append(np.tile(np.stack([block(rows), block(cols)], axis=-1), (t, 1)))
        # Window tiling of the merged grid; -1 marks padding outside the frame.
        nwh, nww = -(-mh // ws), -(-mw // ws)
        padded = np.full((t, nwh * ws, nww * ws), -1, dtype=np.int64)
        padded[:, :mh, :mw] = np.arange(t * mh * mw).reshape(t, mh, mw)
        windows = padded.reshape(t, nwh, ws, nww, ws).transpose(0, 1, 3, 2, 4).reshape(t, nwh * nww, ws * ws)
        for f in range(t):
            for win in windows[f]:
                members = win[win >= 0]
                if members.size == 0:
                    continue
                window_index.append(members + offset)
                win_seg.append(np.full(members.size, window_id))
                full_seg.append(np.full(members.size, frame_id + f))
                window_id += 1
        offset += t * mh * mw
        frame_id += t
    if not window_index:
        raise ValueError("image_grid_thw is empty")
    window_index = np.concatenate(window_index)
    rope = np.concatenate(rope).reshape(-1, unit, 2)[window_index].reshape(-1, 2)
    frame_lengths = np.repeat(grid[:, 1] * grid[:, 2], grid[:, 0])
    window_lengths = np.array([len(w) for w in win_seg]) * unit
    return VisionPlan(
        window_index=window_index.astype(np.int32),
        reverse_index=np.argsort(window_index).astype(np.int32),
        rope_pos=rope.astype(np.int32),
        full_segments=np.repeat(np.concatenate(full_seg), unit).astype(np.int32),
        window_segments=np.repeat(np.concatenate(win_seg), unit).astype(np.int32),
        full_block=_block(frame_lengths),
        window_block=_block(window_lengths),
    )


def _block(lengths: np.ndarray) -> int:
    """Query block size for `segment_attention`: the longest segment; negative when every segment
    but the last has exactly that length (segments then tile the blocks: no band needed)."""
    longest = int(lengths.max())
    return -longest if np.all(lengths[:-1] == longest) else longest


def vision_rope(rope_pos: jax.Array, cfg: VisionConfig) -> tuple[jax.Array, jax.Array]:
    """2D rotary cos/sin (N, head_dim): [h-freqs, w-freqs] twice, over head_dim/4 frequencies."""
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, half, 2, dtype=np.float32) / half))
    pos = rope_pos.astype(jnp.float32)
    freqs = jnp.concatenate([pos[:, :1] * inv_freq, pos[:, 1:2] * inv_freq], axis=-1)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


# ----------------------------------------------------------------------------- tower
def segment_attention(q, k, v, segments, block: int, dtype):
    """Softmax attention of each token over the tokens of its own segment; q, k, v: (N, H, D).

    Segments are contiguous runs no longer than |block| tokens, so the keys of a query in
    block j lie in blocks j-1, j, j+1: each block of queries attends to a band of 3 * block
    keys (static shapes, cost linear in N). `block < 0` means the segments tile blocks of
    -block tokens exactly (e.g. equal-size images or full windows), so each block attends to
    itself only. When one block would cover everything, a single dense block-diagonal mask is
    used. All variants equal running attention per segment (transformers' cu_seqlens loop).
    """
    n, h, d = q.shape
    scale = d ** -0.5
    if block < 0 and -block < n:
        block = -block
        nb = -(-n // block)
        tail = nb * block - n
        qb, kb, vb = (jnp.pad(x, ((0, tail), (0, 0), (0, 0))).reshape(nb, block, h, d).transpose(0, 2, 1, 3)
                      .reshape(nb * h, block, d) for x in (q, k, v))
        scores = jnp.einsum("nqd,nkd->nqk", qb, kb, preferred_element_type=jnp.float32) * scale
        # Block j holds segment j and nothing else, so only the padding keys of the last block
        # are masked (a static iota comparison; no mask at all when the blocks tile N exactly).
        if tail:
            valid = jnp.arange(nb * block).reshape(nb, 1, 1, block) < n
            scores = jnp.where(valid, scores.reshape(nb, h, block, block), NEG_INF).reshape(nb * h, block, block)
        out = softmax_attend(scores, vb, None, dtype)
        return out.reshape(nb, h, block, d).transpose(0, 2, 1, 3).reshape(nb * block, h, d)[:n]
    block = abs(block)
    if 2 * block >= n:
        qt, kt, vt = (x.transpose(1, 0, 2) for x in (q, k, v))  # (H, N, D)
        scores = jnp.einsum("hqd,hkd->hqk", qt, kt, preferred_element_type=jnp.float32) * scale
        return softmax_attend(scores, vt, (segments[:, None] == segments[None, :])[None], dtype).transpose(1, 0, 2)
    nb = -(-n // block)
    tail = nb * block - n
    qb = jnp.pad(q, ((0, tail), (0, 0), (0, 0))).reshape(nb, block, h, d)
    seg_q = jnp.pad(segments, (0, tail), constant_values=-1).reshape(nb, block)

    def band(x, fill):  # (N, ...) -> (nb, 3 * block, ...): blocks j-1, j, j+1 for each block j
        widths = ((block, tail + block),) + ((0, 0),) * (x.ndim - 1)
        xp = jnp.pad(x, widths, constant_values=fill).reshape(nb + 2, block, *x.shape[1:])
        return jnp.concatenate([xp[:-2], xp[1:-1], xp[2:]], axis=1)

    kb, vb, seg_k = band(k, 0), band(v, 0), band(segments, -2)
    qt = qb.transpose(0, 2, 1, 3).reshape(nb * h, block, d)
    kt = kb.transpose(0, 2, 1, 3).reshape(nb * h, 3 * block, d)
    vt = vb.transpose(0, 2, 1, 3).reshape(nb * h, 3 * block, d)
    scores = jnp.einsum("nqd,nkd->nqk", qt, kt, preferred_element_type=jnp.float32) * scale
    mask = (seg_q[:, None, :, None] == seg_k[:, None, None, :])  # (nb, 1, block, 3 * block)
    scores = jnp.where(mask, scores.reshape(nb, h, block, 3 * block), NEG_INF).reshape(nb * h, block, 3 * block)
    out = softmax_attend(scores, vt, None, dtype)
    return out.reshape(nb, h, block, d).transpose(0, 2, 1, 3).reshape(nb * block, h, d)[:n]


class VisionAttention(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d, h, k = cfg.hidden_size, cfg.num_heads, cfg.head_dim
        std = cfg.initializer_range
        self.num_heads, self.head_dim, self.dtype = h, k, dtype
        self.qkv = Dense((d,), (3, h, k), ("vision_embed", None, "vision_heads", "vision_kv"),
                         use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs, std=std)
        self.proj = Dense((h, k), (d,), ("vision_heads", "vision_kv", "vision_embed"),
                          use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs, std=std)

    def __call__(self, x, cos, sin, plan: VisionPlan, full):
        """`full` (a traced bool or a Python bool) picks full attention within each frame over
        window attention; a traced flag runs only the chosen one of the two (lax.cond)."""
        qkv = self.qkv(x)  # (N, 3, H, K)
        q = apply_rotary(qkv[:, 0], cos[:, None], sin[:, None])
        k = apply_rotary(qkv[:, 1], cos[:, None], sin[:, None])
        q = logical.constrain(q, ("vision_tokens", "vision_heads", "vision_kv"))
        v = qkv[:, 2]

        def attend(full_frames: bool):
            def run(q, k, v):
                if full_frames:
                    return segment_attention(q, k, v, plan.full_segments, plan.full_block, self.dtype)
                return segment_attention(q, k, v, plan.window_segments, plan.window_block, self.dtype)
            return run

        if isinstance(full, bool):
            out = attend(full)(q, k, v)
        else:
            # For the backward pass lax.cond keeps the residuals of both branches (the untaken
            # one zero-filled), so every block would keep full attention's frame-sized scores:
            # recomputing each branch's attention from q, k, v keeps only those.
            full_attn, window_attn = (jax.checkpoint(attend(f), policy=jax.checkpoint_policies.nothing_saveable)
                                      for f in (True, False))
            out = jax.lax.cond(full, full_attn, window_attn, q, k, v)
        return self.proj(out)


class VisionBlock(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.norm1 = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, rngs=rngs, **kw)
        self.attn = VisionAttention(cfg, rngs=rngs, **kw)
        self.norm2 = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, rngs=rngs, **kw)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, ("vision_embed", "vision_mlp"),
                            use_bias=True, rngs=rngs, std=cfg.initializer_range,
                            act_names=("vision_tokens", "vision_mlp"), **kw)

    def __call__(self, x, cos, sin, plan: VisionPlan, full):
        x = x + self.attn(self.norm1(x), cos, sin, plan, full)
        x = x + self.mlp(self.norm2(x))
        return logical.constrain(x, ("vision_tokens", "vision_embed"))


class PatchMerger(nnx.Module):
    """RMSNorm each patch, concatenate each 2x2 block, then Linear -> GELU -> Linear into the LM width."""

    def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        merged, std = cfg.merged_hidden_size, cfg.initializer_range
        self.merge_unit = cfg.merge_unit
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.fc1 = Dense((merged,), (merged,), ("vision_merge", "vision_merge_out"), use_bias=True, std=std, **kw)
        self.fc2 = Dense((merged,), (cfg.out_hidden_size,), ("vision_merge", "embed"), use_bias=True,
                         std=std, **kw)

    def __call__(self, x):
        x = self.norm(x)
        x = x.reshape(x.shape[0] // self.merge_unit, -1)
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class VisionTower(nnx.Module):
    """pixel patches (N, C*T*P*P) + plan -> merged image features (N / 4, text hidden)."""

    def __init__(self, cfg: VisionConfig, *, remat: Remat | str | bool = Remat.NONE, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.cfg = cfg
        self.remat = Remat.of(remat)
        self.dtype = dtype
        self.patch_embed = Dense((cfg.patch_dim,), (cfg.hidden_size,), ("vision_patch", "vision_embed"),
                                 use_bias=False, std=cfg.initializer_range, **kw)
        self.blocks = stack_layers(lambda: VisionBlock(cfg, **kw), cfg.depth)  # one stacked block
        self.merger = PatchMerger(cfg, **kw)

    def __call__(self, pixel_values: jax.Array, plan: VisionPlan) -> jax.Array:
        cfg = self.cfg
        n = pixel_values.shape[0]
        unit = cfg.merge_unit
        x = self.patch_embed(pixel_values.astype(self.dtype))
        x = x.reshape(n // unit, unit, -1)[plan.window_index].reshape(n, -1)
        x = logical.constrain(x, ("vision_tokens", "vision_embed"))
        cos, sin = vision_rope(plan.rope_pos, cfg)
        # Full-attention blocks sit at some depths only: inside the scan the block index picks
        # the attention; a Python bool where it is static (blocks apart) or all blocks agree.
        full = np.isin(np.arange(cfg.depth), cfg.fullatt_block_indexes)

        def step(block, x, i):
            if isinstance(i, int):
                return block(x, cos, sin, plan, bool(full[i]))
            if full.all() or not full.any():
                return block(x, cos, sin, plan, bool(full[0]))
            return block(x, cos, sin, plan, jnp.asarray(full)[i])

        x = run_layers(self.blocks, step, x, remat=self.remat)
        return self.merger(x)[plan.reverse_index]
