"""Qwen25VL (Flax NNX) against transformers' Qwen2_5_VLForConditionalGeneration, float32 on CPU.

Each reference is a tiny random torch model built here (eager attention, all parameters
randomised, norms included), saved with `save_pretrained` and loaded with our
`Qwen25VL.from_pretrained`. Logits must agree to 1e-4 (max abs) on text, one image, several
images of different sizes, a video, a left/right padded batch, and a KV-cache decode.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from vilasr.model import (Qwen25VL, Qwen25VLConfig, TextConfig, VisionConfig, get_rope_index,  # noqa: E402
                          prepare_inputs, vision_plan)

TOL = 1e-4

_SPECIAL = dict(image_token_id=505, video_token_id=506, vision_start_token_id=503, vision_end_token_id=504,
                bos_token_id=500, eos_token_ids=(502, 500), pad_token_id=500)

CONFIGS = {
    # the shipped tiny preset: window 112 (4x4 merged tokens), full attention in blocks 1 and 3, GQA 2
    "tiny": Qwen25VLConfig.preset("tiny"),
    # small windows (2x2 merged tokens), one full-attention block first, GQA 4, tied embeddings
    "win56_gqa4_tied": Qwen25VLConfig(
        vision=VisionConfig(depth=3, hidden_size=64, intermediate_size=96, num_heads=2, out_hidden_size=64,
                            fullatt_block_indexes=(0,), window_size=56),
        text=TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=1, mrope_section=(2, 3, 3)),
        tie_word_embeddings=True, **_SPECIAL),
    # one window covers a 224 px image, no full-attention block, plain multi-head attention
    "win224_mha": Qwen25VLConfig(
        vision=VisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=96,
                            fullatt_block_indexes=(), window_size=224),
        text=TextConfig(vocab_size=512, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=3, num_key_value_heads=3, mrope_section=(8, 4, 4),
                        rope_theta=10000.0),
        **_SPECIAL),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory, hf_reference):
    cfg = CONFIGS[request.param]
    hf = hf_reference.build(cfg)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    ours = Qwen25VL.from_pretrained(path)
    assert ours.config == cfg
    return request.param, cfg, hf, ours


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory, hf_reference):
    cfg = CONFIGS["tiny"]
    hf = hf_reference.build(cfg, seed=1)
    path = tmp_path_factory.mktemp("tiny_single")
    hf.save_pretrained(path)
    return cfg, hf, Qwen25VL.from_pretrained(path)


# ----------------------------------------------------------------------------- input builders
def images(cfg, sizes_px, rs):
    """Random pixel patches for images of the given (height, width) in pixels (multiples of 28)."""
    p = cfg.vision.patch_size
    grid = np.array([[1, h // p, w // p] for h, w in sizes_px], dtype=np.int64)
    pixels = rs.randn(int(grid.prod(-1).sum()), cfg.vision.patch_dim).astype(np.float32)
    return pixels, grid


def span(cfg, g, token=None):
    token = cfg.image_token_id if token is None else token
    n = int(np.prod(g)) // cfg.vision.merge_unit
    return [cfg.vision_start_token_id] + [token] * n + [cfg.vision_end_token_id]


def words(rs, n, cfg):
    return rs.randint(0, min(cfg.vision_start_token_id, cfg.bos_token_id), size=n).tolist()


def hf_logits(hf, cfg, ids, pixels=None, grid=None, mask=None, videos=None, video_grid=None, seconds=None):
    kw = {"input_ids": torch.tensor(ids)}
    types = (ids == cfg.image_token_id) * 1 + (ids == cfg.video_token_id) * 2
    if pixels is not None:
        kw.update(pixel_values=torch.tensor(pixels), image_grid_thw=torch.tensor(grid))
    if videos is not None:
        kw.update(pixel_values_videos=torch.tensor(videos), video_grid_thw=torch.tensor(video_grid))
        if seconds is not None:
            kw["second_per_grid_ts"] = torch.tensor(seconds)
    if pixels is not None or videos is not None:
        kw["mm_token_type_ids"] = torch.tensor(types.astype(np.int64))
    if mask is not None:
        kw["attention_mask"] = torch.tensor(mask.astype(np.int64))
    with torch.no_grad():
        return hf(**kw).logits.float().numpy()


def padded_batch(cfg, rs, side="left"):
    """Three rows: image + text, text only, two images; padded to one length with a mask."""
    pix_a, grid_a = images(cfg, [(224, 224)], rs)
    pix_b, grid_b = images(cfg, [(56, 112), (84, 56)], rs)
    rows = [
        words(rs, 3, cfg) + span(cfg, grid_a[0]) + words(rs, 5, cfg),
        words(rs, 9, cfg),
        words(rs, 2, cfg) + span(cfg, grid_b[0]) + words(rs, 1, cfg) + span(cfg, grid_b[1]) + words(rs, 2, cfg),
    ]
    length = max(map(len, rows))
    ids = np.full((len(rows), length), cfg.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, r in enumerate(rows):
        sl = slice(length - len(r), length) if side == "left" else slice(0, len(r))
        ids[i, sl] = r
        mask[i, sl] = 1
    return ids, mask, np.concatenate([pix_a, pix_b]), np.concatenate([grid_a, grid_b])


def max_err(a, b, where=None):
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(d[where].max() if where is not None else d.max())


# ----------------------------------------------------------------------------- parity
def test_text_only(pair):
    name, cfg, hf, ours = pair
    rs = np.random.RandomState(0)
    ids = np.array([words(rs, 21, cfg), words(rs, 21, cfg)])
    err = max_err(ours(ids), hf_logits(hf, cfg, ids))
    print(f"[{name}] text-only max abs err {err:.2e}")
    assert err <= TOL


def test_one_image(pair):
    name, cfg, hf, ours = pair
    rs = np.random.RandomState(1)
    pixels, grid = images(cfg, [(224, 224)], rs)
    ids = np.array([words(rs, 4, cfg) + span(cfg, grid[0]) + words(rs, 6, cfg)])
    err = max_err(ours(ids, pixels, grid), hf_logits(hf, cfg, ids, pixels, grid))
    print(f"[{name}] one image max abs err {err:.2e}")
    assert err <= TOL


def test_several_images_of_different_sizes(pair):
    name, cfg, hf, ours = pair
    rs = np.random.RandomState(2)
    pixels, grid = images(cfg, [(224, 224), (140, 308), (56, 84)], rs)
    ids = np.array([words(rs, 3, cfg) + span(cfg, grid[0]) + words(rs, 2, cfg) + span(cfg, grid[1])
                    + span(cfg, grid[2]) + words(rs, 4, cfg)])
    err = max_err(ours(ids, pixels, grid), hf_logits(hf, cfg, ids, pixels, grid))
    print(f"[{name}] three images max abs err {err:.2e}")
    assert err <= TOL


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch(pair, side):
    name, cfg, hf, ours = pair
    rs = np.random.RandomState(3)
    ids, mask, pixels, grid = padded_batch(cfg, rs, side)
    ref = hf_logits(hf, cfg, ids, pixels, grid, mask)
    err = max_err(ours(ids, pixels, grid, mask), ref, mask.astype(bool))
    print(f"[{name}] {side}-padded batch max abs err {err:.2e}")
    assert err <= TOL


def test_video_and_image(tiny_pair):
    cfg, hf, ours = tiny_pair
    rs = np.random.RandomState(4)
    pixels, grid = images(cfg, [(112, 168)], rs)
    video_grid = np.array([[4, 8, 6]], dtype=np.int64)
    videos = rs.randn(int(video_grid.prod()), cfg.vision.patch_dim).astype(np.float32)
    ids = np.array([words(rs, 2, cfg) + span(cfg, grid[0]) + words(rs, 2, cfg)
                    + span(cfg, video_grid[0], cfg.video_token_id) + words(rs, 3, cfg)])
    seconds = np.array([1.5])
    ref = hf_logits(hf, cfg, ids, pixels, grid, videos=videos, video_grid=video_grid, seconds=seconds)
    out = ours(ids, pixels, grid, pixel_values_videos=videos, video_grid_thw=video_grid, second_per_grid_ts=seconds)
    err = max_err(out, ref)
    print(f"[tiny] image + video max abs err {err:.2e}")
    assert err <= TOL


def test_real_image_through_hf_processor(tiny_pair):
    cfg, hf, ours = tiny_pair
    proc_cls = getattr(transformers, "Qwen2VLImageProcessorPil", None) or transformers.Qwen2VLImageProcessor
    rs = np.random.RandomState(5)
    imgs = [rs.randint(0, 255, (224, 224, 3), dtype=np.uint8), rs.randint(0, 255, (150, 300, 3), dtype=np.uint8)]
    batch = proc_cls()(images=imgs, return_tensors="np")
    pixels, grid = batch["pixel_values"].astype(np.float32), batch["image_grid_thw"]
    ids = np.array([words(rs, 2, cfg) + span(cfg, grid[0]) + span(cfg, grid[1]) + words(rs, 2, cfg)])
    err = max_err(ours(ids, pixels, grid), hf_logits(hf, cfg, ids, pixels, grid))
    assert err <= TOL


# ----------------------------------------------------------------------------- KV cache
def test_kv_cache_decode_matches_full_forward(tiny_pair):
    """Prefill a left-padded batch with images into the cache, then decode token by token (jitted)."""
    cfg, hf, ours = tiny_pair
    rs = np.random.RandomState(6)
    ids, mask, pixels, grid = padded_batch(cfg, rs, "left")
    steps = 5
    ids = np.concatenate([ids, rs.randint(0, 400, (ids.shape[0], steps))], axis=1)
    mask = np.concatenate([mask, np.ones((ids.shape[0], steps), np.int64)], axis=1)
    full = np.asarray(ours(ids, pixels, grid, mask))
    ref = hf_logits(hf, cfg, ids, pixels, grid, mask)
    valid = mask.astype(bool)
    assert max_err(full, ref, valid) <= TOL

    prompt = ids.shape[1] - steps
    cache = ours.init_cache(ids.shape[0], ids.shape[1] + 3)
    inputs = prepare_inputs(cfg, ids[:, :prompt], mask[:, :prompt], grid)
    prefill, cache = ours(ids[:, :prompt], pixels, attention_mask=mask[:, :prompt], cache=cache,
                          positions=inputs["positions"], image_plan=inputs["image_plan"])
    assert max_err(prefill, ref[:, :prompt], valid[:, :prompt]) <= TOL
    # next_pos == rope delta + number of real tokens (transformers' decode positions)
    np.testing.assert_array_equal(np.asarray(cache.next_pos), inputs["rope_deltas"] + mask[:, :prompt].sum(1))

    @nnx.jit
    def decode(model, token, cache):
        return model(token, cache=cache)

    errs = []
    for s in range(prompt, ids.shape[1]):
        logits, cache = decode(ours, jnp.asarray(ids[:, s:s + 1]), cache)
        errs.append(max_err(logits[:, 0], ref[:, s]))
    print(f"[tiny] cache decode max abs err vs transformers {max(errs):.2e}")
    assert max(errs) <= TOL
    np.testing.assert_array_equal(np.asarray(cache.lengths), mask.sum(1))  # padding never reaches the cache


def test_kv_cache_inside_while_loop(tiny_pair):
    """The cache is a fixed-shape pytree: greedy decoding runs in one lax.while_loop."""
    cfg, _, ours = tiny_pair
    rs = np.random.RandomState(7)
    prompt = rs.randint(0, 400, (2, 6))
    steps = 4
    graphdef, state = nnx.split(ours)

    @jax.jit
    def generate(state, prompt):
        model = nnx.merge(graphdef, state)
        cache = model.init_cache(prompt.shape[0], prompt.shape[1] + steps)
        logits, cache = model(prompt, cache=cache)
        first = jnp.argmax(logits[:, -1], -1)
        out = jnp.zeros((prompt.shape[0], steps), jnp.int32).at[:, 0].set(first)

        def body(carry):
            i, out, cache = carry
            logits, cache = model(jax.lax.dynamic_slice_in_dim(out, i - 1, 1, axis=1), cache=cache)
            return i + 1, out.at[:, i].set(jnp.argmax(logits[:, 0], -1)), cache

        _, out, _ = jax.lax.while_loop(lambda c: c[0] < steps, body, (1, out, cache))
        return out

    got = np.asarray(generate(state, jnp.asarray(prompt)))
    seq = prompt
    for _ in range(steps):  # reference: re-run the full forward each step
        nxt = np.asarray(ours(seq))[:, -1].argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(got, seq[:, prompt.shape[1]:])


# ----------------------------------------------------------------------------- host-side pieces
def test_get_rope_index_matches_transformers(tiny_pair):
    cfg, hf, _ = tiny_pair
    rs = np.random.RandomState(8)
    ids, mask, _, grid = padded_batch(cfg, rs, "left")
    video_grid = np.array([[3, 4, 6]])
    extra = np.array([words(rs, 2, cfg) + span(cfg, video_grid[0], cfg.video_token_id) + words(rs, 1, cfg)])
    length = max(ids.shape[1], extra.shape[1])
    ids = np.concatenate([np.pad(ids, ((0, 0), (length - ids.shape[1], 0)), constant_values=cfg.pad_token_id),
                          np.pad(extra, ((0, 0), (length - extra.shape[1], 0)), constant_values=cfg.pad_token_id)])
    mask = np.concatenate([np.pad(mask, ((0, 0), (length - mask.shape[1], 0))),
                           np.pad(np.ones_like(extra), ((0, 0), (length - extra.shape[1], 0)))])
    types = (ids == cfg.image_token_id) * 1 + (ids == cfg.video_token_id) * 2
    seconds = np.array([2.0])
    ref_pos, ref_delta = hf.model.get_rope_index(
        torch.tensor(ids), torch.tensor(types), image_grid_thw=torch.tensor(grid),
        video_grid_thw=torch.tensor(video_grid), second_per_grid_ts=torch.tensor(seconds),
        attention_mask=torch.tensor(mask))
    pos, delta = get_rope_index(cfg, ids, grid, video_grid, mask, seconds)
    np.testing.assert_array_equal(pos, ref_pos.numpy())
    np.testing.assert_array_equal(delta, ref_delta.numpy().reshape(-1))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_vision_plan_matches_transformers_window_index(name):
    from transformers.vision_utils import get_vision_cu_seqlens, get_vision_window_index

    v = CONFIGS[name].vision
    grid = np.array([[1, 16, 16], [1, 10, 22], [2, 8, 6], [1, 4, 6]])
    plan = vision_plan(grid, v)
    ref_index, ref_cu = get_vision_window_index(torch.tensor(grid), v.spatial_merge_size, v.window_size, v.patch_size)
    np.testing.assert_array_equal(plan.window_index, ref_index.numpy())

    def boundaries(segments):
        change = np.flatnonzero(np.diff(segments)) + 1
        return np.concatenate([[0], change, [segments.size]])

    np.testing.assert_array_equal(boundaries(plan.window_segments), ref_cu.numpy())
    np.testing.assert_array_equal(boundaries(plan.full_segments), get_vision_cu_seqlens(torch.tensor(grid)).numpy())


def test_jit_forward_matches_eager(tiny_pair):
    cfg, _, ours = tiny_pair
    rs = np.random.RandomState(9)
    ids, mask, pixels, grid = padded_batch(cfg, rs, "left")
    eager = np.asarray(ours(ids, pixels, grid, mask))
    extras = prepare_inputs(cfg, ids, mask, grid)
    extras.pop("rope_deltas")

    @nnx.jit
    def forward(model, ids, pixels, mask, extras):
        return model(ids, pixels, attention_mask=mask, **extras)

    jitted = np.asarray(forward(ours, ids, pixels, mask, extras))
    assert max_err(jitted, eager, mask.astype(bool)) <= 1e-5


def test_bf16_compute():
    """bfloat16 compute stays close to float32 (float32 logits); remat: tests/vilasr/model/test_scan.py."""
    base = CONFIGS["win224_mha"]
    cfg = base.replace(vision=dataclasses.replace(base.vision, depth=1),
                       text=dataclasses.replace(base.text, num_hidden_layers=1))
    ours = Qwen25VL(cfg, rngs=nnx.Rngs(3))
    rs = np.random.RandomState(10)
    pixels, grid = images(cfg, [(56, 56)], rs)
    ids = np.array([words(rs, 3, cfg) + span(cfg, grid[0]) + words(rs, 3, cfg)])
    extras = prepare_inputs(cfg, ids, None, grid)
    extras.pop("rope_deltas")
    _, state = nnx.split(ours)
    bf16 = nnx.merge(nnx.split(Qwen25VL(cfg, dtype=jnp.bfloat16))[0], state)
    lo = np.asarray(bf16(ids, pixels, **extras))
    hi = np.asarray(ours(ids, pixels, **extras))
    assert lo.dtype == np.float32
    assert np.abs(lo - hi).max() < 0.05 * np.abs(hi).max()


@pytest.mark.parametrize("lengths, block", [
    ([16, 16, 16, 16], -16),  # segments tile blocks exactly
    ([16, 16, 16, 7], -16),  # ... with a shorter last segment
    ([5, 16, 3, 16, 9, 12, 16, 1], 16),  # banded: keys from the neighbouring blocks
    ([16, 12], 16),  # one block covers everything: dense block-diagonal mask
])
def test_segment_attention_equals_per_segment_softmax(lengths, block):
    from vilasr.model.vision import segment_attention

    rs = np.random.RandomState(11)
    n, h, d = sum(lengths), 2, 8
    q, k, v = (rs.randn(n, h, d).astype(np.float32) for _ in range(3))
    segments = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    got = np.asarray(segment_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(segments),
                                       block, jnp.float32))
    want = np.zeros_like(q)
    start = 0
    for length in lengths:
        sl = slice(start, start + length)
        s = np.einsum("qhd,khd->hqk", q[sl], k[sl]) / np.sqrt(d)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        want[sl] = np.einsum("hqk,khd->qhd", p, v[sl])
        start += length
    np.testing.assert_allclose(got, want, atol=2e-6)
