"""GRPO math as pure JAX functions: group advantages, policy losses, the KL term (SPEC §5).

Advantages and policy losses sit in small registries, so a variant (Dr. GRPO, GSPO) is a change
of `GrpoLossConfig`, not a fork; `register_advantage` / `register_policy_loss` add new ones.

Shapes: scores are (P, G) -- P prompts, G rollouts each; per-token arrays are (B, T) with
B = P·G rows in prompt-major order; `mask` is 1 on the tokens the loss trains on (model-written,
end-of-turn included) and 0 elsewhere. Advantages come per sequence, (B,), or per token, (B, T).

Reduction ("token mean per sequence"): each sequence's per-token terms are averaged over its own
masked tokens, then the sequences are averaged; a sequence with no masked token (padding) is left
out of that mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from vilasr.errors import ConfigError

GROUP_STD_EPS = 1e-6

AdvantageFn = Callable[[jax.Array], jax.Array]
# (logp, old_logp, advantages (B, T), mask, config) -> (per-sequence loss (B,), clip fraction ())
PolicyLossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, "GrpoLossConfig"], tuple[jax.Array, jax.Array]]

ADVANTAGES: dict[str, AdvantageFn] = {}
POLICY_LOSSES: dict[str, PolicyLossFn] = {}


def register_advantage(name: str):
    def register(fn: AdvantageFn) -> AdvantageFn:
        ADVANTAGES[name] = fn
        return fn
    return register


def register_policy_loss(name: str):
    def register(fn: PolicyLossFn) -> PolicyLossFn:
        POLICY_LOSSES[name] = fn
        return fn
    return register


def _lookup(registry: dict, kind: str, name: str):
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {sorted(registry)} "
                          f"(or register yours with register_{kind.replace(' ', '_')})") from None


def advantage_fn(name: str) -> AdvantageFn:
    return _lookup(ADVANTAGES, "advantage", name)


def policy_loss_fn(name: str) -> PolicyLossFn:
    return _lookup(POLICY_LOSSES, "policy loss", name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrpoLossConfig:
    """Which advantage and policy loss, and their settings (SPEC §5's values by default).

    clip_low / clip_high: the ratio is clipped to [1 − clip_low, 1 + clip_high].
    dual_clip: for negative advantages the per-token loss is capped at −A·dual_clip (ppo_clip
    only); None turns it off. kl_coef: weight of the k3 KL to a frozen reference (0: off).
    """

    advantage: str = "grpo"
    loss: str = "ppo_clip"
    clip_low: float = 0.2
    clip_high: float = 0.3
    dual_clip: float | None = 3.0
    kl_coef: float = 0.0

    def __post_init__(self):
        advantage_fn(self.advantage)
        policy_loss_fn(self.loss)
        if not (0.0 <= self.clip_low < 1.0 and self.clip_high >= 0.0):
            raise ConfigError(f"clip_low must be in [0, 1) and clip_high >= 0, got {self.clip_low}, {self.clip_high}")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ConfigError(f"dual_clip must be > 1 (or None to turn it off), got {self.dual_clip}")
        if self.kl_coef < 0.0:
            raise ConfigError(f"kl_coef must be >= 0, got {self.kl_coef}")


# -- advantages: scores (P, G) -> advantages (P, G) --------------------------------------------------
def _group_mean(scores: jax.Array) -> jax.Array:
    # A group of one has nothing to compare with: its baseline is 0 (verl does the same).
    if scores.shape[-1] == 1:
        return jnp.zeros_like(scores)
    return jnp.mean(scores, axis=-1, keepdims=True)


@register_advantage("grpo")
def grpo_advantages(scores: jax.Array) -> jax.Array:
    """(S − group mean) / (unbiased group std + 1e-6); a group of one keeps its score (std 1)."""
    scores = scores.astype(jnp.float32)
    std = jnp.std(scores, axis=-1, ddof=1, keepdims=True) if scores.shape[-1] > 1 else jnp.ones_like(scores)
    return (scores - _group_mean(scores)) / (std + GROUP_STD_EPS)


@register_advantage("dr_grpo")
def dr_grpo_advantages(scores: jax.Array) -> jax.Array:
    """Dr. GRPO: S − group mean, no division by the std (which favours easy and hard groups)."""
    scores = scores.astype(jnp.float32)
    return scores - _group_mean(scores)


# -- reductions ----------------------------------------------------------------------------------------
def sequence_token_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, T) -> (B,): each row's mean over its masked tokens (0 for a row with none)."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def mean_over_sequences(per_sequence: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of (B,) values over the rows that have at least one masked token."""
    present = (jnp.sum(mask, axis=-1) > 0).astype(jnp.float32)
    return jnp.sum(per_sequence * present) / jnp.maximum(jnp.sum(present), 1.0)


# -- policy losses ------------------------------------------------------------------------------------
@register_policy_loss("ppo_clip")
def ppo_clip_loss(logp, old_logp, advantages, mask, config: GrpoLossConfig):
    """Token-level PPO clip with separate low/high epsilon and dual-clip.

    ratio_t = exp(logp_t − old_logp_t); loss_t = max(−A·ratio_t, −A·clip(ratio_t, 1 − ε_low,
    1 + ε_high)); for A < 0 with dual-clip c, loss_t = min(loss_t, −A·c) (a huge ratio on a bad
    token cannot blow the loss up). Token mean per sequence.
    """
    ratio = jnp.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - config.clip_low, 1.0 + config.clip_high)
    loss = jnp.maximum(unclipped, clipped)
    if config.dual_clip is not None:
        loss = jnp.where(advantages < 0, jnp.minimum(loss, -advantages * config.dual_clip), loss)
    clip_frac = mean_over_sequences(sequence_token_mean((clipped > unclipped).astype(jnp.float32), mask), mask)
    return sequence_token_mean(loss, mask), clip_frac


@register_policy_loss("gspo")
def gspo_loss(logp, old_logp, advantages, mask, config: GrpoLossConfig):
    """GSPO: one importance ratio per sequence,

        s_i = exp( (1/|y_i|) Σ_t (logp_t − old_logp_t) )   over the sequence's masked tokens,
        loss_i = max(−A_i·s_i, −A_i·clip(s_i, 1 − ε_low, 1 + ε_high)),

    with A_i the sequence's advantage (the token mean of a per-token advantage). GSPO's paper
    uses much narrower clip ranges than PPO's (order 1e-3); no dual-clip.
    """
    seq_adv = sequence_token_mean(advantages, mask)
    ratio = jnp.exp(sequence_token_mean(logp - old_logp, mask))
    unclipped = -seq_adv * ratio
    clipped = -seq_adv * jnp.clip(ratio, 1.0 - config.clip_low, 1.0 + config.clip_high)
    clip_frac = mean_over_sequences((clipped > unclipped).astype(jnp.float32), mask)
    return jnp.maximum(unclipped, clipped), clip_frac


def k3_kl(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Per-token low-variance KL estimate to the reference: exp(r − logp) − (r − logp) − 1 ≥ 0."""
    delta = ref_logp - logp
    return jnp.exp(delta) - delta - 1.0


def grpo_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, mask: jax.Array,
              config: GrpoLossConfig, ref_logp: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The policy loss of `config.loss` plus `kl_coef`·k3 KL (both token mean per sequence, then
    mean over sequences). Returns (loss, metrics: policy_loss, kl, clip_frac)."""
    logp, old_logp = logp.astype(jnp.float32), old_logp.astype(jnp.float32)
    advantages = advantages.astype(jnp.float32)
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    advantages = jnp.broadcast_to(advantages, logp.shape)
    per_sequence, clip_frac = policy_loss_fn(config.loss)(logp, old_logp, advantages, mask, config)
    policy_loss = mean_over_sequences(per_sequence, mask)
    kl = jnp.zeros((), jnp.float32)
    if config.kl_coef > 0.0:
        if ref_logp is None:
            raise ConfigError(f"kl_coef={config.kl_coef} needs the reference model's log-probabilities (ref_logp)")
        kl = mean_over_sequences(sequence_token_mean(k3_kl(logp, ref_logp.astype(jnp.float32)), mask), mask)
    loss = policy_loss + config.kl_coef * kl
    return loss, {"policy_loss": policy_loss, "kl": kl, "clip_frac": clip_frac}


def advantages_for(scores: jax.Array, config: GrpoLossConfig) -> jax.Array:
    """Group advantages of the (P, G) scores under `config.advantage`."""
    return advantage_fn(config.advantage)(scores)
