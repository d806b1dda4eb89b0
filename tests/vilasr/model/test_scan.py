"""Scanned layers: the stacked decoder and vision tower against a reference that applies one
module per layer in a Python loop (built here from slices of the stacked parameters), forward
and backward, under every remat policy; the decode cache stacked (scan) and held apart."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vilasr import ConfigError
from vilasr.model import Qwen25VL, Qwen25VLConfig, Remat, TextConfig, VisionConfig, prepare_inputs
from vilasr.model.qwen25vl import DecoderLayer, _scatter_features
from vilasr.model.rope import mrope_cos_sin
from vilasr.model.vision import VisionBlock, vision_rope

# three vision blocks, the middle one with full attention (so the scan picks the attention per
# block), small windows (several per image), three decoder layers with GQA
CFG = Qwen25VLConfig(
    vision=VisionConfig(depth=3, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                        fullatt_block_indexes=(1,), window_size=56),
    text=TextConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, mrope_section=(2, 3, 3)),
    image_token_id=299, video_token_id=298, vision_start_token_id=297, vision_end_token_id=296,
    bos_token_id=295, eos_token_ids=(294,), pad_token_id=295)


def layer(stacked: nnx.Module, fresh: nnx.Module, i: int) -> nnx.Module:
    """Layer i of a stacked module, as a module of its own (`fresh` gives the per-layer structure)."""
    _, params = nnx.split(stacked)
    return nnx.merge(nnx.split(fresh)[0], jax.tree.map(lambda a: a[i], params))


def reference_logits(model: Qwen25VL, ids, pixels, plan, positions):
    """The forward pass one layer after the other, without the model's scan."""
    cfg, kw = model.config, dict(dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    v = model.visual
    n = pixels.shape[0]
    x = v.patch_embed(pixels).reshape(n // 4, 4, -1)[plan.window_index].reshape(n, -1)
    cos, sin = vision_rope(plan.rope_pos, cfg.vision)
    for i in range(cfg.vision.depth):
        block = layer(v.blocks, VisionBlock(cfg.vision, **kw), i)
        x = block(x, cos, sin, plan, i in cfg.vision.fullatt_block_indexes)
    feats = v.merger(x)[plan.reverse_index]
    h = _scatter_features(model.embed_tokens(ids), ids == cfg.image_token_id, feats)
    cos, sin = mrope_cos_sin(positions, cfg.text)
    for i in range(cfg.text.num_hidden_layers):
        h = layer(model.layers, DecoderLayer(cfg.text, **kw), i)(h, cos, sin, jnp.ones(ids.shape, bool))[0]
    return model.logits(model.norm(h))


@pytest.fixture(scope="module")
def case():
    model = Qwen25VL(CFG, rngs=nnx.Rngs(5))
    rs = np.random.RandomState(0)
    grid = np.array([[1, 4, 6], [1, 6, 4]])
    pixels = jnp.asarray(rs.randn(int(grid.prod(-1).sum()), CFG.vision.patch_dim).astype(np.float32))
    span = lambda g: [CFG.vision_start_token_id] + [CFG.image_token_id] * (int(np.prod(g)) // 4) + [  # noqa: E731
        CFG.vision_end_token_id]
    ids = np.array([[1, 2] + span(grid[0]) + [3, 4, 5] + span(grid[1]) + [6, 7]])
    inputs = prepare_inputs(CFG, ids, None, grid)
    return model, jnp.asarray(ids), pixels, inputs["image_plan"], jnp.asarray(inputs["positions"])


def loss_and_grads(forward, model, ids):
    """(loss, logits) and the gradients of the next-token loss of `forward(model)`, jitted."""
    def loss(model):
        logits = forward(model)
        return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], ids[:, 1:]).mean(), logits

    return nnx.jit(nnx.value_and_grad(loss, has_aux=True))(model)


def test_scanned_model_equals_layer_by_layer_reference_forward_and_backward(case):
    model, ids, pixels, plan, positions = case
    stacked = model.layers.attn.q.kernel
    assert stacked.shape[0] == CFG.text.num_hidden_layers
    assert stacked.get_metadata()["out_sharding"][0] == "layers"

    (ref_loss, ref_logits), ref_grads = loss_and_grads(
        lambda m: reference_logits(m, ids, pixels, plan, positions), model, ids)
    np.testing.assert_allclose(model.apart()(ids, pixels, image_plan=plan, positions=positions), ref_logits,
                               atol=2e-5)

    _, state = nnx.split(model)
    for policy in Remat:  # every remat policy: the same logits, loss and gradients as the reference
        rematted = nnx.merge(nnx.split(Qwen25VL(CFG.replace(remat=policy)))[0], state)
        (loss, logits), grads = loss_and_grads(
            lambda m: m(ids, pixels, image_plan=plan, positions=positions), rematted, ids)
        np.testing.assert_allclose(logits, ref_logits, atol=2e-5, err_msg=policy.value)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6, err_msg=policy.value)
        for (path, g), (_, r) in zip(nnx.to_flat_state(grads), nnx.to_flat_state(ref_grads)):
            np.testing.assert_allclose(g.get_value(), r.get_value(), atol=1e-6, rtol=1e-4,
                                       err_msg=f"{policy.value}: {path}")


def test_decode_with_stacked_cache_equals_decode_with_layers_apart(case):
    """The scan writing into the stacked cache in place (TPU's path) and the layers apart on a
    per-layer cache (the CPU decode loop's) give the same logits and the same cache."""
    model, *_ = case
    graphdef, state = nnx.split(model)
    prompt = jnp.asarray(np.random.RandomState(1).randint(0, 290, (2, 9)))
    cache = model.init_cache(2, 16)
    _, cache = model(prompt, cache=cache)

    @jax.jit
    def decode(state, cache, apart: bool):
        model = nnx.merge(graphdef, state)
        if apart:
            model, cache = model.apart(), cache.per_layer()
        token, out = prompt[:, -1:], []
        for _ in range(3):
            logits, cache = model(token, cache=cache)
            token = jnp.argmax(logits[:, -1:], axis=-1)
            out.append(logits[:, -1])
        return jnp.stack(out), cache.stacked()

    decode = jax.jit(decode.__wrapped__, static_argnums=2)
    scanned, scanned_cache = decode(state, cache, False)
    apart, apart_cache = decode(state, cache, True)
    np.testing.assert_allclose(scanned, apart, atol=1e-5)
    for a, b in zip(jax.tree.leaves(scanned_cache), jax.tree.leaves(apart_cache)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert scanned_cache.k.shape == (CFG.text.num_hidden_layers, 2, 2, CFG.text.head_dim, 128)
    with pytest.raises(ValueError, match="model.apart"):
        model(prompt[:, :1], cache=cache.per_layer())


def test_remat_policy_names():
    assert Qwen25VLConfig.preset("tiny").remat is Remat.NONE
    assert CFG.replace(remat=True).remat is Remat.FULL and CFG.replace(remat=False).remat is Remat.NONE
    assert CFG.replace(remat="dots").remat is Remat.DOTS
    with pytest.raises(ConfigError, match="unknown remat policy 'some'"):
        CFG.replace(remat="some")
