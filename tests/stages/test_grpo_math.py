"""GRPO math against a NumPy version written out by hand on small arrays."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stages.rl.math import (ADVANTAGES, POLICY_LOSSES, GrpoLossConfig, advantage_fn, advantages_for, grpo_loss,
                            k3_kl, policy_loss_fn, register_advantage)
from vilasr.errors import ConfigError

# -- NumPy references ----------------------------------------------------------------------------------


def np_grpo(scores):
    mean = scores.mean(-1, keepdims=True)
    return (scores - mean) / (scores.std(-1, ddof=1, keepdims=True) + 1e-6)


def np_token_loss(ratio, adv, low, high, dual):
    out = np.empty_like(ratio)
    for idx in np.ndindex(ratio.shape):
        r, a = ratio[idx], adv[idx]
        loss = max(-a * r, -a * min(max(r, 1 - low), 1 + high))
        if dual is not None and a < 0:
            loss = min(loss, -a * dual)
        out[idx] = loss
    return out


def np_reduce(per_token, mask):
    seqs = [per_token[b][mask[b] > 0].mean() for b in range(len(mask)) if mask[b].sum() > 0]
    return float(np.mean(seqs))


# -- a small batch: 2 prompts × 2 rollouts, 5 tokens ---------------------------------------------------
LOGP = np.log(np.array([[0.5, 0.4, 0.3, 0.2, 0.9],
                        [0.1, 0.6, 0.6, 0.3, 0.2],
                        [0.7, 0.2, 0.05, 0.4, 0.4],
                        [0.3, 0.3, 0.3, 0.3, 0.3]], np.float32))
# old probabilities chosen so the ratios land inside, below and above [0.8, 1.3] and above 3
OLD = np.log(np.array([[0.5, 0.2, 0.4, 0.2, 0.2],
                       [0.02, 0.6, 0.9, 0.3, 0.5],
                       [0.7, 0.4, 0.01, 0.5, 0.1],
                       [0.3, 0.1, 0.3, 0.3, 0.3]], np.float32))
MASK = np.array([[1, 1, 1, 0, 0],
                 [1, 1, 1, 1, 1],
                 [0, 1, 1, 1, 1],
                 [1, 1, 0, 0, 0]], np.float32)
SCORES = np.array([[1.0, 0.0], [0.5, 1.5]], np.float32)


def test_grpo_advantages_match_numpy():
    scores = np.array([[1.0, 0.0, 1.0, 0.5], [0.2, 0.2, 0.2, 0.2], [0.0, 1.5, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(advantage_fn("grpo")(jnp.asarray(scores)), np_grpo(scores), rtol=1e-5, atol=1e-6)
    # the unbiased std: a 2-group [1, 0] has std √0.5, so the advantages are ±0.5/√0.5 = ±0.7071
    np.testing.assert_allclose(advantage_fn("grpo")(jnp.array([[1.0, 0.0]])), [[0.70710, -0.70710]], atol=1e-4)
    # equal scores give zero advantages (no division blow-up)
    assert np.all(np.asarray(advantage_fn("grpo")(jnp.full((1, 4), 0.3))) == 0)


def test_dr_grpo_advantages_have_no_std():
    scores = np.array([[1.0, 0.0, 1.0, 0.5]], np.float32)
    np.testing.assert_allclose(advantage_fn("dr_grpo")(jnp.asarray(scores)), scores - scores.mean(), atol=1e-6)


def test_group_of_one_keeps_its_score():
    for name in ("grpo", "dr_grpo"):
        np.testing.assert_allclose(advantage_fn(name)(jnp.array([[0.7], [0.2]])), [[0.7], [0.2]], rtol=1e-5)


@pytest.mark.parametrize("dual", [3.0, None])
def test_ppo_clip_matches_numpy(dual):
    adv = np_grpo(SCORES).reshape(-1)  # per sequence
    config = GrpoLossConfig(dual_clip=dual)
    loss, metrics = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), jnp.asarray(adv), jnp.asarray(MASK), config)
    ratio = np.exp(LOGP - OLD)
    expected = np_reduce(np_token_loss(ratio, np.broadcast_to(adv[:, None], ratio.shape), 0.2, 0.3, dual), MASK)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["kl"]) == 0.0


def test_clip_low_high_and_dual_clip_per_token():
    ratio = np.array([[0.5, 1.0, 1.2, 1.5, 10.0]], np.float32)
    logp, old, mask = jnp.log(jnp.asarray(ratio)), jnp.zeros((1, 5)), jnp.ones((1, 5))
    config = GrpoLossConfig()
    # A > 0: the ratio counts up to 1.3 (clip high); a low ratio is not clipped upwards
    loss, _ = grpo_loss(logp, old, jnp.array([2.0]), mask, config)
    assert float(loss) == pytest.approx(np.mean(-2.0 * np.array([0.5, 1.0, 1.2, 1.3, 1.3])), rel=1e-5)
    # A < 0: the ratio counts down to 0.8 (clip low), up to the ratio itself, capped at dual_clip 3
    loss, _ = grpo_loss(logp, old, jnp.array([-2.0]), mask, config)
    assert float(loss) == pytest.approx(np.mean(2.0 * np.array([0.8, 1.0, 1.2, 1.5, 3.0])), rel=1e-5)
    loss, _ = grpo_loss(logp, old, jnp.array([-2.0]), mask, dataclasses.replace(config, dual_clip=None))
    assert float(loss) == pytest.approx(np.mean(2.0 * np.array([0.8, 1.0, 1.2, 1.5, 10.0])), rel=1e-5)


def test_masked_tokens_are_excluded_and_means_are_per_sequence():
    adv = jnp.array([1.0, -1.0, 0.5, 0.0])
    base, _ = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), adv, jnp.asarray(MASK), GrpoLossConfig())
    # changing masked-out tokens changes nothing
    noisy = jnp.where(jnp.asarray(MASK) > 0, jnp.asarray(LOGP), 5.0)
    again, _ = grpo_loss(noisy, jnp.asarray(OLD), adv, jnp.asarray(MASK), GrpoLossConfig())
    assert float(again) == pytest.approx(float(base), rel=1e-6)
    # ratio 1 everywhere: each sequence's loss is −A whatever its length, so the loss is −mean(A)
    loss, _ = grpo_loss(jnp.asarray(OLD), jnp.asarray(OLD), adv, jnp.asarray(MASK), GrpoLossConfig())
    assert float(loss) == pytest.approx(-0.125, rel=1e-6)
    # a padding row (no masked token) is left out of the mean over sequences
    mask = jnp.asarray(MASK).at[3].set(0.0)
    loss, _ = grpo_loss(jnp.asarray(OLD), jnp.asarray(OLD), adv, mask, GrpoLossConfig())
    assert float(loss) == pytest.approx(-0.5 / 3, rel=1e-6)


def test_per_token_advantages_broadcast_like_per_sequence_ones():
    adv = np.array([1.0, -1.0, 0.5, -0.3], np.float32)
    a, _ = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), jnp.asarray(adv), jnp.asarray(MASK), GrpoLossConfig())
    b, _ = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), jnp.asarray(np.repeat(adv[:, None], 5, 1)),
                     jnp.asarray(MASK), GrpoLossConfig())
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_gspo_matches_numpy():
    adv = np.array([1.0, -1.0, 0.5, -2.0], np.float32)
    config = GrpoLossConfig(loss="gspo", clip_low=0.1, clip_high=0.2)
    loss, _ = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), jnp.asarray(adv), jnp.asarray(MASK), config)
    expected = []
    for b in range(4):
        tokens = MASK[b] > 0
        s = np.exp(np.mean((LOGP - OLD)[b][tokens]))
        expected.append(max(-adv[b] * s, -adv[b] * np.clip(s, 0.9, 1.2)))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)


def test_gspo_gradient_is_the_sequence_mean_of_token_gradients():
    # d/d logp_t of exp(mean(logp − old)) = s / |y| on each of the sequence's tokens
    logp, old, mask = jnp.array([[0.1, -0.2, 0.3]]), jnp.zeros((1, 3)), jnp.array([[1.0, 1.0, 0.0]])
    config = GrpoLossConfig(loss="gspo", clip_low=0.5, clip_high=0.5)
    grad = jax.grad(lambda lp: grpo_loss(lp, old, jnp.array([1.0]), mask, config)[0])(logp)
    s = np.exp((0.1 - 0.2) / 2)
    np.testing.assert_allclose(grad, [[-s / 2, -s / 2, 0.0]], rtol=1e-5)


def test_kl_term():
    ref = np.log(np.array([[0.4, 0.4, 0.4, 0.4, 0.4]] * 4, np.float32))
    adv = jnp.array([1.0, -1.0, 0.5, -0.3])
    off, _ = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), adv, jnp.asarray(MASK), GrpoLossConfig())
    config = GrpoLossConfig(kl_coef=0.1)
    on, metrics = grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), adv, jnp.asarray(MASK), config, ref_logp=jnp.asarray(ref))
    delta = ref - LOGP
    expected_kl = np_reduce(np.exp(delta) - delta - 1, MASK)
    assert float(metrics["kl"]) == pytest.approx(expected_kl, rel=1e-5)
    assert float(on) == pytest.approx(float(off) + 0.1 * expected_kl, rel=1e-5)
    assert np.all(np.asarray(k3_kl(jnp.asarray(LOGP), jnp.asarray(ref))) >= 0)
    with pytest.raises(ConfigError, match="ref_logp"):
        grpo_loss(jnp.asarray(LOGP), jnp.asarray(OLD), adv, jnp.asarray(MASK), config)


def test_loss_jits():
    config = GrpoLossConfig()
    fn = jax.jit(lambda *a: grpo_loss(*a, config))
    loss, _ = fn(jnp.asarray(LOGP), jnp.asarray(OLD), jnp.array([1.0, -1.0, 0.5, -0.3]), jnp.asarray(MASK))
    assert np.isfinite(float(loss))


def test_registries_and_config_errors():
    assert {"grpo", "dr_grpo"} <= set(ADVANTAGES) and {"ppo_clip", "gspo"} <= set(POLICY_LOSSES)
    assert policy_loss_fn("gspo") is POLICY_LOSSES["gspo"]
    config = GrpoLossConfig()
    assert (config.advantage, config.loss, config.clip_low, config.clip_high, config.dual_clip, config.kl_coef) == (
        "grpo", "ppo_clip", 0.2, 0.3, 3.0, 0.0)
    with pytest.raises(ConfigError, match="unknown advantage 'rloo'"):
        advantage_fn("rloo")
    with pytest.raises(ConfigError, match="unknown policy loss"):
        GrpoLossConfig(loss="dpo")
    with pytest.raises(ConfigError):
        GrpoLossConfig(advantage="nope")
    with pytest.raises(ConfigError):
        GrpoLossConfig(dual_clip=0.5)
    with pytest.raises(ConfigError):
        GrpoLossConfig(kl_coef=-1.0)
    with pytest.raises(TypeError):
        GrpoLossConfig("grpo")  # kw_only
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.kl_coef = 1.0


def test_a_registered_variant_is_a_config_change():
    @register_advantage("test_raw_scores")
    def raw(scores):
        return scores

    try:
        config = GrpoLossConfig(advantage="test_raw_scores")
        np.testing.assert_allclose(advantages_for(jnp.asarray(SCORES), config), SCORES)
    finally:
        del ADVANTAGES["test_raw_scores"]
