"""Losses as pure functions of arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vilasr.rollout.sampler import ban_tokens

LOGIT_CHUNK = 2048  # positions whose logits exist at once (a 7B vocabulary is 152k wide)


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Negative log-likelihood of `targets` (...,) under `logits` (..., V), in float32."""
    logits = logits.astype(jnp.float32)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def next_token_loss_sum(hidden: jax.Array, to_logits, input_ids: jax.Array, loss_mask: jax.Array,
                        chunk: int = LOGIT_CHUNK) -> tuple[jax.Array, jax.Array]:
    """(sum of the next-token losses over masked targets, number of masked targets).

    Position t predicts token t + 1, which counts when `loss_mask[t + 1]`. Logits are made
    `chunk` positions at a time and recomputed in the backward pass, so the full (B, L, V)
    logits never exist at once.
    """
    h, targets, weights = hidden[:, :-1], input_ids[:, 1:], loss_mask[:, 1:].astype(jnp.float32)

    @jax.checkpoint
    def chunk_sum(h_c, t_c, w_c):
        return jnp.sum(token_nll(to_logits(h_c), t_c) * w_c)

    total = jnp.zeros((), jnp.float32)
    for start in range(0, h.shape[1], chunk):
        end = min(start + chunk, h.shape[1])
        total = total + chunk_sum(h[:, start:end], targets[:, start:end], weights[:, start:end])
    return total, jnp.sum(weights)


def next_token_logprobs(hidden: jax.Array, to_logits, input_ids: jax.Array, temperature: float = 1.0,
                        banned: tuple[int, ...] = (), chunk: int = LOGIT_CHUNK) -> jax.Array:
    """(B, L − 1) log-probability of token t + 1 under `softmax(logits_t / temperature)` with the
    `banned` ids removed, in float32: what the sampler recorded, recomputed by one teacher-forced
    forward. Logits are made `chunk` positions at a time and recomputed in the backward pass."""
    h, targets = hidden[:, :-1], input_ids[:, 1:]

    @jax.checkpoint
    def chunk_logprobs(h_c, t_c):
        return -token_nll(ban_tokens(to_logits(h_c).astype(jnp.float32), banned) / temperature, t_c)

    return jnp.concatenate([chunk_logprobs(h[:, s:s + chunk], targets[:, s:s + chunk])
                            for s in range(0, h.shape[1], chunk)], axis=1)
