"""Token sampling for Qwen25VL: a jitted chunk prefill and a `lax.while_loop` decode over a donated
state, on the model's fixed-size KV cache (contract in vilasr/model/qwen25vl.py).

Compilations stay bounded. A prefill compiles once per (batch, chunk-length bucket, cache size):
chunks are right-padded to a chunk bucket (`chunk_bucket`: 16, 32, 64, then four widths per
octave). A chunk advances the cache's write index by its longest row, not by its padded width, so
the next chunk or decode step overwrites the padding slots: the cache holds no padding holes from
chunk buckets, and attention reads only what a row needs. The decode loop compiles once per
(batch, cache size, turn cap, sampling settings, scripted-turn width bucket): its step limit is a
traced value. The cache grows in steps of GROWTH slots, so a rollout of N response tokens sees at
most ~N / 512 cache sizes; the rollout's image encoder and renderer compile once per (image size,
power-of-two group size, primitive-count buckets).

Log-probabilities are those of the chosen token under `softmax(logits / temperature)` (the
untruncated distribution; `log_softmax(logits)` for greedy), which is what GRPO's ratio uses.
The image placeholder tokens (`Qwen25VLConfig.placeholder_ids`) are banned first: the model
never writes one, and the distribution the log-probabilities come from is the one without them
(`ban_tokens`; GRPO's teacher-forced forward applies the same ban).
Each row samples with its own key, folded with its own step count, so a row's tokens do not
depend on which other rows share the batch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from drawing_ops.render_jax import bucket as power_of_two
from vilasr.model import CACHE_BLOCK, KVCache, keep_layers_apart
from vilasr.rollout.config import SamplingConfig

MIN_BUCKET = 16
GROWTH = 512  # spare slots added whenever a cache must grow (each new size compiles once)


def bucket(length: int, minimum: int = MIN_BUCKET) -> int:
    """The padded length for a chunk: the next power of two, at least `minimum`."""
    return power_of_two(length, minimum)


def grow_cache(cache: KVCache, max_len: int) -> KVCache:
    """The same cache with room for `max_len` slots (new slots empty)."""
    max_len = -(-max_len // CACHE_BLOCK) * CACHE_BLOCK
    extra = max_len - cache.max_len
    if extra <= 0:
        return cache
    k = jnp.pad(cache.k, [(0, 0)] * 4 + [(0, extra)])  # (layers, B, KV, D, S)
    v = jnp.pad(cache.v, [(0, 0)] * 3 + [(0, extra), (0, 0)])  # (layers, B, KV, S, D)
    return dataclasses.replace(cache, k=k, v=v, mask=jnp.pad(cache.mask, [(0, 0), (0, extra)]))


# ----------------------------------------------------------------------------- token choice
def ban_tokens(logits: jax.Array, banned: jax.Array | tuple[int, ...]) -> jax.Array:
    """(..., V) logits with the `banned` token ids at -inf."""
    if len(banned) == 0:
        return logits
    return logits.at[..., jnp.asarray(banned, jnp.int32)].set(-jnp.inf)


def filter_logits(logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """Temperature, top-k and top-p applied to (B, V) logits; removed entries become -inf."""
    logits = logits / cfg.temperature
    if cfg.top_k:
        kth = jax.lax.top_k(logits, cfg.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if cfg.top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # keep a token while the mass before it is below top_p (the first token always stays)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < cfg.top_p
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits


def first_argmax(logits: jax.Array) -> jax.Array:
    """(B,) int32 index of each row's first largest entry, as `jnp.argmax` (no NaN handling).

    Two plain reductions (max, then the smallest index holding it): XLA:CPU runs these several
    times faster than argmax's single two-value reduction, which matters once per decode step.
    """
    vocab = logits.shape[-1]
    top = logits.max(axis=-1, keepdims=True)
    first = jnp.min(jnp.where(logits == top, jnp.arange(vocab, dtype=jnp.int32), vocab), axis=-1)
    return jnp.minimum(first, vocab - 1)


def pick_tokens(logits: jax.Array, keys: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """(B,) int32 tokens for (B, V) float32 logits and (B,) per-row keys."""
    if cfg.is_greedy:
        return first_argmax(logits)
    return jax.vmap(jax.random.categorical)(keys, filter_logits(logits, cfg)).astype(jnp.int32)


def token_logprobs(logits: jax.Array, tokens: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """(B,) log-probabilities of `tokens` under the untruncated sampling distribution
    (`logit - logsumexp(logits)`, without materialising the whole log-softmax)."""
    scaled = logits if cfg.is_greedy else logits / cfg.temperature
    top = jax.lax.stop_gradient(scaled.max(axis=-1, keepdims=True))
    log_total = jnp.log(jnp.sum(jnp.exp(scaled - top), axis=-1)) + top[:, 0]
    return jnp.take_along_axis(scaled, tokens[:, None], axis=-1)[:, 0] - log_total


def choose_tokens(logits: jax.Array, keys: jax.Array, cfg: SamplingConfig) -> tuple[jax.Array, jax.Array]:
    """(tokens, log-probs) for (B, V) float32 logits and (B,) per-row keys."""
    tokens = pick_tokens(logits, keys, cfg)
    return tokens, token_logprobs(logits, tokens, cfg)


# ----------------------------------------------------------------------------- prefill
def _last_real_logits(model, hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, V) logits of each row's last real token, from the chunk's hidden states (B, L, E): the
    vocabulary projection runs on one position per row, not the whole padded chunk ((B, L, V)
    float32 logits are GBs at GRPO batch sizes with a 152k vocabulary)."""
    last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
    return model.logits(jnp.take_along_axis(hidden, last[:, None, None], axis=1))[:, 0]


def _rewind_padding(cache: KVCache, start: jax.Array, mask: jax.Array) -> KVCache:
    """The cache with its write index just after the chunk's last real slot (of any row), not after
    its padded width: later writes overwrite the padding slots (masked off until then)."""
    filled = jnp.max(jnp.where(mask, jnp.arange(1, mask.shape[1] + 1), 0))
    return dataclasses.replace(cache, index=(start + filled).astype(cache.index.dtype))


@functools.partial(jax.jit, static_argnums=(0,), donate_argnames=("cache",))
def _prefill_text(graphdef, state, input_ids, mask, cache):
    model = nnx.merge(graphdef, state)
    start = cache.index
    hidden, cache = model(input_ids, attention_mask=mask, cache=cache, return_hidden=True)
    return _last_real_logits(model, hidden, mask), _rewind_padding(cache, start, mask)


@functools.partial(jax.jit, static_argnums=(0,), donate_argnames=("cache",))
def _prefill_embeds(graphdef, state, input_ids, mask, positions, image_embeds, cache):
    model = nnx.merge(graphdef, state)
    start = cache.index
    hidden, cache = model(input_ids, attention_mask=mask, positions=positions, image_embeds=image_embeds,
                          cache=cache, return_hidden=True)
    return _last_real_logits(model, hidden, mask), _rewind_padding(cache, start, mask)


def prefill(model_parts, cache: KVCache, input_ids: np.ndarray, mask: np.ndarray,
            positions: np.ndarray | None = None, image_embeds: jax.Array | None = None):
    """Append a right-padded chunk (B, L) to the cache; returns (logits of each row's last real
    token (B, V), cache). The cache needs room for all L slots; its index then advances by the
    chunk's longest row. `positions` (3, B, L) is required when the chunk holds image tokens, and
    `image_embeds` (num_image_tokens, hidden) then fills the image-pad tokens in order."""
    graphdef, state = model_parts
    if image_embeds is None and positions is None:
        return _prefill_text(graphdef, state, jnp.asarray(input_ids), jnp.asarray(mask), cache)
    if positions is None:
        raise ValueError("a chunk with image embeddings needs host positions (model.prepare_inputs)")
    return _prefill_embeds(graphdef, state, jnp.asarray(input_ids), jnp.asarray(mask), jnp.asarray(positions),
                           image_embeds, cache)


# ----------------------------------------------------------------------------- decode loop
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DecodeState:
    cache: KVCache
    logits: jax.Array       # (B, V) logits for the next token of each row
    tokens: jax.Array       # (B, T) chosen tokens (pad after a row stops)
    logprobs: jax.Array     # (B, T)
    length: jax.Array       # (B,) tokens chosen this turn
    done: jax.Array         # (B,) row has stopped
    stopped: jax.Array      # (B,) row stopped on a stop token (not on its cap)
    step: jax.Array         # () loop step


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnames=("state",))
def _decode(graphdef, cfg: SamplingConfig, pad_id: int, params, state: DecodeState, keys, caps, stop_ids,
            forced, forced_len, banned):
    model = nnx.merge(graphdef, params)
    apart = keep_layers_apart()
    if apart:  # XLA:CPU: each layer's weights and cache its own buffers inside the loop (sliced once, here)
        model, state = model.apart(), dataclasses.replace(state, cache=state.cache.per_layer())
    steps = state.tokens.shape[1]

    def cond(s: DecodeState):
        return (s.step < steps) & ~jnp.all(s.done)

    def body(s: DecodeState):
        step_keys = jax.vmap(jax.random.fold_in)(keys, s.length)
        forced_tok = jnp.take_along_axis(forced, jnp.minimum(s.length, forced.shape[1] - 1)[:, None], axis=1)[:, 0]
        logits = ban_tokens(s.logits, banned)
        tok = jnp.where(s.length < forced_len, forced_tok, pick_tokens(logits, step_keys, cfg))
        logprobs = token_logprobs(logits, tok, cfg)
        live = ~s.done
        tok = jnp.where(live, tok, pad_id)
        tokens = s.tokens.at[:, s.step].set(tok)
        lps = s.logprobs.at[:, s.step].set(jnp.where(live, logprobs, 0.0))
        length = s.length + live
        hit_stop = live & jnp.any(tok[:, None] == stop_ids[None, :], axis=1)
        done = s.done | hit_stop | (length >= caps)
        logits, cache = model(tok[:, None], attention_mask=live[:, None], cache=s.cache)
        return DecodeState(cache=cache, logits=logits[:, -1], tokens=tokens, logprobs=lps, length=length,
                           done=done, stopped=s.stopped | hit_stop, step=s.step + 1)

    state = jax.lax.while_loop(cond, body, state)
    return dataclasses.replace(state, cache=state.cache.stacked())


@dataclasses.dataclass(frozen=True)
class TurnOutput:
    """What one decode call produced, per row (host arrays)."""

    tokens: list[np.ndarray]     # the row's tokens this turn (stop token included)
    logprobs: list[np.ndarray]
    stopped: np.ndarray          # (B,) ended on a stop token; False = hit its cap


def decode(model_parts, cache: KVCache, logits: jax.Array, *, cfg: SamplingConfig, keys: jax.Array,
           caps: np.ndarray, stop_ids, max_steps: int, pad_id: int, active: np.ndarray | None = None,
           forced: list[np.ndarray] | None = None, banned=()) -> tuple[TurnOutput, KVCache]:
    """Decode up to `caps[b]` tokens per row (at most `max_steps`), stopping a row at a stop id.

    `keys` (B,) are per-row PRNG keys for this turn; `active` rows take part (others stay put);
    `forced[b]` makes row b emit the given tokens first (teacher forcing, for scoring scripted
    turns), sampling freely after them. `banned` token ids are never sampled (their probability
    mass is left out of the log-probabilities). Every emitted token, the stop token included, is written to
    the cache, so the next chunk continues right after it.
    """
    graphdef, params = model_parts
    b = logits.shape[0]
    active = np.ones(b, bool) if active is None else np.asarray(active, bool)
    if cache.max_len < int(cache.index) + max_steps:
        cache = grow_cache(cache, int(cache.index) + max_steps + GROWTH)
    forced = [f for f in forced or []] + [None] * (b - len(forced or []))
    # padded to a power of two so scripted turns of different lengths share compilations
    forced_arr = np.zeros((b, bucket(max([1] + [len(f) for f in forced if f is not None]), 1)), np.int32)
    forced_len = np.zeros(b, np.int32)
    for row, f in enumerate(forced):
        if f is not None and len(f):
            forced_arr[row, : len(f)] = f
            forced_len[row] = len(f)
    state = DecodeState(cache=cache, logits=logits, tokens=jnp.full((b, max_steps), pad_id, jnp.int32),
                        logprobs=jnp.zeros((b, max_steps), jnp.float32), length=jnp.zeros(b, jnp.int32),
                        done=jnp.asarray(~active), stopped=jnp.zeros(b, bool), step=jnp.zeros((), jnp.int32))
    state = _decode(graphdef, cfg, int(pad_id), params, state, keys,
                    jnp.asarray(np.minimum(caps, max_steps), jnp.int32), jnp.asarray(np.asarray(stop_ids, np.int32)),
                    jnp.asarray(forced_arr), jnp.asarray(forced_len), jnp.asarray(np.asarray(banned, np.int32)))
    tokens, logprobs, lengths, stopped = jax.device_get((state.tokens, state.logprobs, state.length, state.stopped))
    # live tokens sit at consecutive steps from 0, because a row never resumes after stopping
    out = TurnOutput(tokens=[tokens[r, : lengths[r]] for r in range(b)],
                     logprobs=[logprobs[r, : lengths[r]] for r in range(b)], stopped=stopped)
    return out, state.cache
