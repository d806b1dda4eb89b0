"""Token sampling for Qwen25VL: a jitted chunk prefill and a `lax.while_loop` decode over a donated
state, on the model's fixed-size KV cache (contract in vilasr/model/qwen25vl.py).

Every row of the cache is its own sequence (`KVCache.lengths`): a chunk writes each row's real
tokens after that row's own, so padding never reaches the cache, and `prefill_rows` empties and
refills chosen rows while the others keep theirs -- the slots of continuous batching
(vilasr.rollout.loop). `decode` can stop early, once `min_done` rows have ended their turn, and
resume a row mid-turn (`offsets`): a row's tokens are the same however its turn is cut into calls.

Compilations stay bounded: a prefill compiles once per (row bucket, chunk-length bucket, cache
size), the decode loop once per (batch, cache size, step window, sampling settings, scripted-turn
width bucket); its step limit and exit count are traced values. The rollout picks the few buckets
(vilasr.rollout.loop: why those).

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


def resize_cache(cache: KVCache, max_len: int) -> KVCache:
    """The same cache with room for `max_len` slots (rounded up to CACHE_BLOCK): new slots empty,
    or the last slots cut off (the caller keeps every row's length within the new size)."""
    max_len = -(-max_len // CACHE_BLOCK) * CACHE_BLOCK
    extra = max_len - cache.max_len
    if extra == 0:
        return cache
    if extra < 0:
        return dataclasses.replace(cache, k=cache.k[..., :max_len], v=cache.v[..., :max_len, :])
    k = jnp.pad(cache.k, [(0, 0)] * 4 + [(0, extra)])  # (layers, B, KV, D, S)
    v = jnp.pad(cache.v, [(0, 0)] * 3 + [(0, extra), (0, 0)])  # (layers, B, KV, S, D)
    return dataclasses.replace(cache, k=k, v=v)


def grow_cache(cache: KVCache, max_len: int) -> KVCache:
    """The same cache with room for at least `max_len` slots (never smaller)."""
    return resize_cache(cache, max_len) if max_len > cache.max_len else cache


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


@functools.partial(jax.jit, static_argnums=(0,), donate_argnames=("cache",))
def _prefill_text(graphdef, state, input_ids, mask, cache):
    model = nnx.merge(graphdef, state)
    hidden, cache = model(input_ids, attention_mask=mask, cache=cache, return_hidden=True)
    return _last_real_logits(model, hidden, mask), cache


@functools.partial(jax.jit, static_argnums=(0,), donate_argnames=("cache",))
def _prefill_embeds(graphdef, state, input_ids, mask, positions, image_embeds, cache):
    model = nnx.merge(graphdef, state)
    hidden, cache = model(input_ids, attention_mask=mask, positions=positions, image_embeds=image_embeds,
                          cache=cache, return_hidden=True)
    return _last_real_logits(model, hidden, mask), cache


def prefill(model_parts, cache: KVCache, input_ids: np.ndarray, mask: np.ndarray,
            positions: np.ndarray | None = None, image_embeds: jax.Array | None = None):
    """Append a padded chunk (B, L) to every row of the cache; returns (logits of each row's last
    real token (B, V), cache). Row b needs room for its real tokens; its length then advances by
    them. `positions` (3, B, L) is required when the chunk holds image tokens, and `image_embeds`
    (num_image_tokens, hidden) then fills the image-pad tokens in order."""
    graphdef, state = model_parts
    if image_embeds is None and positions is None:
        return _prefill_text(graphdef, state, jnp.asarray(input_ids), jnp.asarray(mask), cache)
    if positions is None:
        raise ValueError("a chunk with image embeddings needs host positions (model.prepare_inputs)")
    return _prefill_embeds(graphdef, state, jnp.asarray(input_ids), jnp.asarray(mask), jnp.asarray(positions),
                           image_embeds, cache)


def _take_rows(cache: KVCache, rows: jax.Array, reset: jax.Array) -> KVCache:
    """Rows `rows` of the cache (an out-of-range row reads as the last one), emptied where `reset`."""
    pick = lambda a, axis: jnp.take(a, rows, axis=axis, mode="clip")  # noqa: E731
    zero = jnp.zeros((), jnp.int32)
    return KVCache(k=pick(cache.k, 1), v=pick(cache.v, 1), lengths=jnp.where(reset, zero, pick(cache.lengths, 0)),
                   next_pos=jnp.where(reset, zero, pick(cache.next_pos, 0)))


def _put_rows(cache: KVCache, rows: jax.Array, part: KVCache) -> KVCache:
    """`cache` with rows `rows` replaced by `part`'s (out-of-range rows are dropped)."""
    return KVCache(k=cache.k.at[:, rows].set(part.k, mode="drop"), v=cache.v.at[:, rows].set(part.v, mode="drop"),
                   lengths=cache.lengths.at[rows].set(part.lengths, mode="drop"),
                   next_pos=cache.next_pos.at[rows].set(part.next_pos, mode="drop"))


@functools.partial(jax.jit, static_argnums=(0,), donate_argnames=("cache", "slot_logits"))
def _prefill_rows(graphdef, state, cache, slot_logits, rows, reset, input_ids, mask, positions, image_embeds):
    model = nnx.merge(graphdef, state)
    part = _take_rows(cache, rows, reset)
    hidden, part = model(input_ids, attention_mask=mask, positions=positions, image_embeds=image_embeds,
                         cache=part, return_hidden=True)
    logits = _last_real_logits(model, hidden, mask)
    return slot_logits.at[rows].set(logits, mode="drop"), _put_rows(cache, rows, part)


def prefill_rows(model_parts, cache: KVCache, slot_logits: jax.Array, rows: np.ndarray, reset: np.ndarray,
                 input_ids: np.ndarray, mask: np.ndarray, positions: np.ndarray | None = None,
                 image_embeds: jax.Array | None = None) -> tuple[jax.Array, KVCache]:
    """Append chunk row r (R, L) to cache row `rows[r]`, emptied first where `reset[r]`; returns
    (the slots' next-token logits (B, V) with those rows' replaced, cache). A row index past the
    cache's batch is padding (nothing is written). `positions` (3, R, L) must start at each row's
    next position (after the reset) when the chunk holds images; `image_embeds` (n, hidden) fill
    its image-pad tokens in order (extra rows at the end are ignored)."""
    graphdef, state = model_parts
    to = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
    return _prefill_rows(graphdef, state, cache, slot_logits, jnp.asarray(rows, jnp.int32), jnp.asarray(reset, bool),
                         jnp.asarray(input_ids), jnp.asarray(mask), to(positions), image_embeds)


# ----------------------------------------------------------------------------- decode loop
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DecodeState:
    cache: KVCache
    logits: jax.Array       # (B, V) logits for the next token of each row
    tokens: jax.Array       # (B, T) tokens chosen in this call (pad after a row stops)
    logprobs: jax.Array     # (B, T)
    length: jax.Array       # (B,) tokens of the row's turn so far (earlier calls included)
    done: jax.Array         # (B,) row has stopped
    stopped: jax.Array      # (B,) row stopped on a stop token (not on its cap)
    step: jax.Array         # () loop step


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnames=("state",))
def _decode(graphdef, cfg: SamplingConfig, pad_id: int, params, state: DecodeState, keys, caps, stop_ids,
            forced, forced_len, banned, min_done):
    model = nnx.merge(graphdef, params)
    apart = keep_layers_apart()
    if apart:  # XLA:CPU: each layer's weights and cache its own buffers inside the loop (sliced once, here)
        model, state = model.apart(), dataclasses.replace(state, cache=state.cache.per_layer())
    steps = state.tokens.shape[1]
    waiting = ~state.done  # the rows this call decodes for

    def cond(s: DecodeState):
        ended = jnp.sum(waiting & s.done)
        return (s.step < steps) & ~jnp.all(s.done) & ((min_done <= 0) | (ended < min_done))

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
        # a row that did not take part keeps its logits (it may be mid-turn, resumed by a later call)
        logits = jnp.where(live[:, None], logits[:, -1], s.logits)
        return DecodeState(cache=cache, logits=logits, tokens=tokens, logprobs=lps, length=length,
                           done=done, stopped=s.stopped | hit_stop, step=s.step + 1)

    state = jax.lax.while_loop(cond, body, state)
    return dataclasses.replace(state, cache=state.cache.stacked())


@dataclasses.dataclass(frozen=True)
class TurnOutput:
    """What one decode call produced, per row (host arrays)."""

    tokens: list[np.ndarray]     # the row's tokens in this call (stop token included)
    logprobs: list[np.ndarray]
    stopped: np.ndarray          # (B,) ended on a stop token
    ended: np.ndarray            # (B,) ended its turn: a stop token or its cap (False: not yet, resume it)
    logits: jax.Array | None = None   # (B, V) on the device: each row's next-token logits (to resume)


def decode(model_parts, cache: KVCache, logits: jax.Array, *, cfg: SamplingConfig, keys: jax.Array,
           caps: np.ndarray, stop_ids, max_steps: int, pad_id: int, active: np.ndarray | None = None,
           forced: list[np.ndarray] | None = None, banned=(), offsets: np.ndarray | None = None,
           min_done: int = 0) -> tuple[TurnOutput, KVCache]:
    """Decode up to `caps[b]` tokens of each row's turn (at most `max_steps` in this call), ending a
    row at a stop id; returns (what each row produced, cache).

    `keys` (B,) are per-row PRNG keys for this turn; `active` rows take part (the others and their
    logits stay put); `forced[b]` makes row b emit the given tokens first (teacher forcing, for
    scoring scripted turns), sampling freely after them. `banned` token ids are never sampled
    (their probability mass is left out of the log-probabilities). `offsets[b]`: tokens row b
    already produced this turn in earlier calls (its keys, script and cap go on from there).
    `min_done > 0` returns as soon as that many active rows have ended their turn. Every emitted
    token, the stop token included, is written to the cache, so the next chunk continues right after it.
    """
    graphdef, params = model_parts
    b = logits.shape[0]
    active = np.ones(b, bool) if active is None else np.asarray(active, bool)
    offsets = np.zeros(b, np.int32) if offsets is None else np.asarray(offsets, np.int32)
    need = int(np.max(np.asarray(jax.device_get(cache.lengths)))) + max_steps
    if cache.max_len < need:
        cache = grow_cache(cache, need + GROWTH)
    forced = [f for f in forced or []] + [None] * (b - len(forced or []))
    # padded to a power of two so scripted turns of different lengths share compilations
    forced_arr = np.zeros((b, bucket(max([1] + [len(f) for f in forced if f is not None]), 1)), np.int32)
    forced_len = np.zeros(b, np.int32)
    for row, f in enumerate(forced):
        if f is not None and len(f):
            forced_arr[row, : len(f)] = f
            forced_len[row] = len(f)
    state = DecodeState(cache=cache, logits=logits, tokens=jnp.full((b, max_steps), pad_id, jnp.int32),
                        logprobs=jnp.zeros((b, max_steps), jnp.float32), length=jnp.asarray(offsets),
                        done=jnp.asarray(~active), stopped=jnp.zeros(b, bool), step=jnp.zeros((), jnp.int32))
    state = _decode(graphdef, cfg, int(pad_id), params, state, keys, jnp.asarray(caps, jnp.int32),
                    jnp.asarray(np.asarray(stop_ids, np.int32)), jnp.asarray(forced_arr), jnp.asarray(forced_len),
                    jnp.asarray(np.asarray(banned, np.int32)), jnp.asarray(min_done, jnp.int32))
    tokens, logprobs, lengths, stopped, done = jax.device_get(
        (state.tokens, state.logprobs, state.length, state.stopped, state.done))
    counts = np.where(active, lengths - offsets, 0)
    # live tokens sit at consecutive steps from 0, because a row never resumes within a call
    out = TurnOutput(tokens=[tokens[r, : counts[r]] for r in range(b)],
                     logprobs=[logprobs[r, : counts[r]] for r in range(b)], stopped=stopped & active,
                     ended=done & active, logits=state.logits)
    return out, state.cache
