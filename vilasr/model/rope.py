"""Multimodal rotary positions (M-RoPE) of Qwen2.5-VL: the host-side position computation for
interleaved text and images, the jit-able text-only default, and the cos/sin tables.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vilasr.model.config import Qwen25VLConfig, TextConfig

def get_rope_index(
    config: Qwen25VLConfig,
    input_ids,
    image_grid_thw=None,
    video_grid_thw=None,
    attention_mask=None,
    second_per_grid_ts=None,
) -> tuple[np.ndarray, np.ndarray]:
    """M-RoPE positions (3, B, L) int32 and rope deltas (B,) int32, as transformers computes them.

    Text tokens advance all three rows by one. A run of image (video) placeholder tokens takes
    the next grid; its tokens get (t, row, col) positions offset by the current position, and
    the text after it resumes at `start + max(h, w) / merge`. Video time indices are spaced by
    `tokens_per_second * second_per_grid_t` (default 1 s). Padding (mask 0) gets position 0 and
    is skipped. `delta = max(position) + 1 - number_of_real_tokens`.
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {ids.shape}")
    batch, length = ids.shape
    mask = np.ones_like(ids, dtype=bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
    merge = config.vision.spatial_merge_size
    grids = {
        1: iter(np.asarray(image_grid_thw, np.int64).reshape(-1, 3)) if image_grid_thw is not None else iter(()),
        2: iter(np.asarray(video_grid_thw, np.int64).reshape(-1, 3)) if video_grid_thw is not None else iter(()),
    }
    seconds = iter(np.asarray(second_per_grid_ts, np.float64).reshape(-1)) if second_per_grid_ts is not None else None
    positions = np.zeros((3, batch, length), dtype=np.int64)
    deltas = np.zeros((batch,), dtype=np.int64)
    for b in range(batch):
        row = ids[b][mask[b]]
        kind = np.where(row == config.image_token_id, 1, np.where(row == config.video_token_id, 2, 0))
        pieces, cur, i = [], 0, 0
        while i < row.size:
            j = i
            while j < row.size and kind[j] == kind[i]:
                j += 1
            if kind[i] == 0:
                pieces.append(np.broadcast_to(np.arange(j - i) + cur, (3, j - i)))
                cur += j - i
            else:
                pos_in_run = i
                while pos_in_run < j:  # a run may hold several adjacent items
                    try:
                        t, h, w = next(grids[kind[i]])
                    except StopIteration:
                        what = "image_grid_thw" if kind[i] == 1 else "video_grid_thw"
                        raise ValueError(f"row {b} has more placeholder runs than entries in {what}") from None
                    gt, gh, gw = int(t), int(h) // merge, int(w) // merge
                    interval = 1.0
                    if kind[i] == 2:
                        sec = next(seconds) if seconds is not None else 1.0
                        interval = config.vision.tokens_per_second * float(sec)
                    tt = (np.arange(gt) * interval).astype(np.int64) + cur
                    hh = np.arange(gh) + cur
                    ww = np.arange(gw) + cur
                    grid = np.stack(np.meshgrid(tt, hh, ww, indexing="ij")).reshape(3, -1)
                    pieces.append(grid)
                    cur += max(int(h), int(w)) // merge
                    pos_in_run += grid.shape[1]
                if pos_in_run != j:
                    raise ValueError(f"row {b}: a run of {j - i} placeholder tokens does not match the grids")
            i = j
        if pieces:
            row_pos = np.concatenate(pieces, axis=1)
            positions[:, b, mask[b]] = row_pos
            deltas[b] = row_pos.max() + 1 - row.size
    return positions.astype(np.int32), deltas.astype(np.int32)


def offset_positions(positions: np.ndarray, attention_mask, start) -> np.ndarray:
    """Shift the real tokens' positions of each row by `start[b]` (padding stays 0)."""
    valid = np.ones(positions.shape[1:], bool) if attention_mask is None else np.asarray(attention_mask, bool)
    start = np.asarray(start, np.int32).reshape(1, -1, 1)
    return np.where(valid[None], positions + start, positions).astype(np.int32)


def text_positions(attention_mask: jax.Array, start=None) -> jax.Array:
    """(3, B, L) positions for a text-only chunk: `start + cumsum(mask) - 1`, padding -> `start`."""
    mask = attention_mask.astype(jnp.int32)
    pos = jnp.cumsum(mask, axis=-1) - 1
    pos = jnp.where(mask > 0, pos, 0)
    if start is not None:
        pos = pos + jnp.asarray(start, jnp.int32)[:, None]
    return jnp.broadcast_to(pos[None], (3,) + pos.shape).astype(jnp.int32)


def mrope_cos_sin(positions: jax.Array, cfg: TextConfig) -> tuple[jax.Array, jax.Array]:
    """cos/sin (B, L, head_dim) for M-RoPE: frequency band j uses the t/h/w row of its section.

    Frequencies [0, s0) rotate with the temporal row, [s0, s0+s1) with height, the rest with
    width (non-interleaved), and the half is duplicated as in `rotate_half` rotary embedding.
    """
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    section_of = np.repeat(np.arange(3), cfg.mrope_section)  # (dim/2,) which row each band uses
    pos = jnp.asarray(positions).astype(jnp.float32)  # (3, B, L)
    pos = jnp.moveaxis(pos[section_of], 0, -1)  # (B, L, dim/2)
    freqs = pos * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)
