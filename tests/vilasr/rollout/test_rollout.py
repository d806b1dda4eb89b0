"""Sampler and multi-turn rollout on the tiny model: exactness against full forwards, every finish
reason, the model-written-token mask, and failure isolation inside a batch."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from drawing_ops import ImageInfo, render
from vilasr.model import CACHE_BLOCK, Qwen25VL, Qwen25VLConfig, cached_attention
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout
from vilasr.rollout.loop import _feedback_text, _prompt_text, _tokens
from vilasr.rollout.sampler import (
    choose_tokens,
    decode,
    filter_logits,
    first_argmax,
    prefill,
    token_logprobs,
)

GREEDY = SamplingConfig(greedy=True)


@pytest.fixture(scope="module")
def model():
    return Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def processor():
    return Processor.tiny()


def scene(seed=0, h=112, w=140):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def draw_turn(index=1, label="cup", box=(10, 10, 60, 50)):
    block = json.dumps([{"index": index, "bbox_2d": list(box), "label": label}])
    return f"<think>I box the {label}.</think> Action: Object Mapper\n```json\n{block}\n```"


ANSWER = "<think>It is on the left.</think> Action: Answer\n<answer>A</answer>"


def task(seed=0, **kw):
    return RolloutTask(images=[scene(seed)], question="Is the cup on the (A) left or (B) right?", seed=seed, **kw)


def run(model, processor, tasks, forced=None, **cfg):
    cfg.setdefault("max_turn_tokens", 96)
    cfg.setdefault("sampling", GREEDY)
    return rollout(model, processor, tasks, RolloutConfig(**cfg), forced_turns=forced)


# ----------------------------------------------------------------------------- sampler
def test_greedy_decode_equals_stepwise_full_forward_argmax(model, processor):
    ids = np.array([processor.tokenizer.encode("<|im_start|>user\nHow many chairs are there?<|im_end|>\n"
                                               "<|im_start|>assistant\n")], np.int32)
    parts = nnx.split(model)
    cache = model.init_cache(1, 128)
    logits, cache = prefill(parts, cache, ids, np.ones_like(ids, bool))
    out, _ = decode(parts, cache, logits, cfg=GREEDY, keys=jax.random.split(jax.random.key(0), 1),
                    caps=np.array([12]), stop_ids=[-1], max_steps=12, pad_id=0)
    seq = ids[0].tolist()
    for _ in range(12):
        seq.append(int(jnp.argmax(model(jnp.array([seq]))[0, -1])))
    assert out.tokens[0].tolist() == seq[len(ids[0]):]
    full = jax.nn.log_softmax(model(jnp.array([seq]))[0], axis=-1)
    want = [float(full[len(ids[0]) - 1 + i, t]) for i, t in enumerate(out.tokens[0])]
    np.testing.assert_allclose(out.logprobs[0], want, atol=1e-4)


def test_top_k_and_top_p_filtering():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda cfg: np.isfinite(np.asarray(filter_logits(logits, cfg)))[0].tolist()  # noqa: E731
    assert kept(SamplingConfig(top_k=2)) == [True, True, False, False]
    assert kept(SamplingConfig(top_p=0.7)) == [True, True, False, False]
    assert kept(SamplingConfig(top_p=0.1)) == [True, False, False, False]
    toks, _ = choose_tokens(jnp.repeat(logits, 64, 0), jax.random.split(jax.random.key(1), 64), SamplingConfig(top_k=1))
    assert set(np.asarray(toks).tolist()) == {0}


@pytest.mark.parametrize("chunk", [1, 5])
def test_whole_cache_and_blockwise_reads_agree(chunk):
    # a cache of three blocks, two of them (partly) written; the second row is left-padded
    b, kv, groups, d, slots = 2, 2, 2, 8, 3 * CACHE_BLOCK
    used = CACHE_BLOCK + 40
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(b, chunk, kv * groups, d)), jnp.float32)
    ck = jnp.asarray(rng.normal(size=(b, kv, d, slots)), jnp.float32)
    cv = jnp.asarray(rng.normal(size=(b, kv, slots, d)), jnp.float32)
    written = np.arange(slots) < used
    real = np.stack([written, written & (np.arange(slots) >= 7)])
    causal = np.arange(slots)[None, :] <= (used - chunk + np.arange(chunk))[:, None]  # (L, S)
    mask = jnp.asarray(real[:, None, :] & causal[None])
    # layer 1 of a stacked cache of two layers (layer 0 holds other values)
    stack_k, stack_v = jnp.stack([ck + 1.0, ck]), jnp.stack([cv - 1.0, cv])
    whole = cached_attention(q, stack_k, stack_v, mask, used, groups, jnp.float32, layer=1, whole=True)
    blocks = cached_attention(q, stack_k, stack_v, mask, used, groups, jnp.float32, layer=1, whole=False)
    np.testing.assert_allclose(np.asarray(whole), np.asarray(blocks), rtol=1e-5, atol=1e-5)
    # and both are plain softmax attention over the visible slots
    scores = jnp.einsum("blkgd,bkds->blkgs", q.reshape(b, chunk, kv, groups, d), ck) * d ** -0.5
    p = jax.nn.softmax(jnp.where(mask[:, :, None, None], scores, -jnp.inf), axis=-1)
    want = jnp.einsum("blkgs,bksd->blkgd", p, cv).reshape(b, chunk, kv * groups, d)
    np.testing.assert_allclose(np.asarray(whole), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_greedy_choice_and_logprobs_match_argmax_and_log_softmax():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(6, 50)) * 4, jnp.float32)
    logits = logits.at[2, 7].set(logits[2].max() + 1).at[2, 30].set(logits[2].max() + 1)  # a tie: first wins
    np.testing.assert_array_equal(first_argmax(logits), jnp.argmax(logits, axis=-1))
    tokens = jnp.arange(6, dtype=jnp.int32) * 7
    for cfg in (GREEDY, SamplingConfig(temperature=0.7)):
        scale = 1.0 if cfg.is_greedy else cfg.temperature
        want = jnp.take_along_axis(jax.nn.log_softmax(logits / scale, axis=-1), tokens[:, None], axis=-1)[:, 0]
        np.testing.assert_allclose(token_logprobs(logits, tokens, cfg), want, atol=1e-5)


# ----------------------------------------------------------------------------- rollout exactness
def full_forward_logprobs(model, processor, traj):
    """Log-probs of every token under one full forward over the finished conversation."""
    pixels = processor.image_processor(traj.images)
    np.testing.assert_array_equal(pixels["image_grid_thw"], traj.image_grid_thw)
    logits = model(jnp.asarray(traj.token_ids[None]), pixel_values=jnp.asarray(pixels["pixel_values"]),
                   image_grid_thw=pixels["image_grid_thw"])
    lp = jax.nn.log_softmax(logits[0], axis=-1)
    return np.array([float(lp[i - 1, t]) for i, t in enumerate(traj.token_ids) if i > 0 and traj.model_mask[i]])


def test_cache_continued_turns_match_a_full_forward(model, processor):
    traj, = run(model, processor, [task()], forced=[[draw_turn(), draw_turn(2, "plate", (70, 30, 130, 100)), ANSWER]])
    assert traj.finish_reason == "answer" and traj.answer == "A"
    assert len(traj.images) == 3 and traj.images_encoded == 3
    np.testing.assert_allclose(traj.logprobs[traj.model_mask], full_forward_logprobs(model, processor, traj),
                               atol=2e-4)
    # the drawn images are what the drawing library makes from the resized input
    np.testing.assert_array_equal(traj.images[1], render(traj.images[0], traj.parsed[0].actions, [], backend="numpy"))
    # every token went through the model exactly once
    assert traj.tokens_processed == len(traj.token_ids)


def test_reprefill_mode_gives_the_same_trajectory(model, processor):
    forced = [[draw_turn(), ANSWER]]
    a, = run(model, processor, [task()], forced=forced)
    b, = run(model, processor, [task()], forced=forced, persistent_cache=False)
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-4)
    assert b.tokens_processed > a.tokens_processed == len(a.token_ids)
    assert b.images_encoded > a.images_encoded


def test_model_mask_on_a_hand_built_conversation(model, processor):
    traj, = run(model, processor, [task()], forced=[[draw_turn(), ANSWER]])
    tok = processor.tokenizer
    shape = traj.images[0].shape[:2]
    prompt = _tokens(processor, _prompt_text(processor, task(), [shape], RolloutConfig().template), [shape])
    turn1 = tok.encode(draw_turn()) + [tok.im_end_id]
    feedback = _tokens(processor, _feedback_text(RolloutConfig().template, [ImageInfo(2, shape[1], shape[0])],
                                                 final=False), [shape])
    turn2 = tok.encode(ANSWER) + [tok.im_end_id]
    expected_ids = prompt + turn1 + feedback + turn2
    expected_mask = [False] * len(prompt) + [True] * len(turn1) + [False] * len(feedback) + [True] * len(turn2)
    assert traj.token_ids.tolist() == expected_ids
    assert traj.model_mask.tolist() == expected_mask
    assert traj.prompt_len == len(prompt)
    assert np.all(traj.logprobs[~traj.model_mask] == 0) and np.all(traj.logprobs[traj.model_mask] < 0)
    # the feedback announces the new image with its size and asks for a check
    text = tok.decode(feedback)
    assert f"Image 2 ({shape[1]}x{shape[0]} pixels)" in text and "Check the drawing" in text


# ----------------------------------------------------------------------------- finish reasons
@pytest.mark.parametrize("forced, cfg, reason", [
    ([ANSWER], {}, "answer"),
    (["<think>" + "very long thinking " * 40], {"max_turn_tokens": 24}, "length"),
    ([draw_turn(), "<think>" + "more " * 60], {"max_response_tokens": 150}, "budget"),
    ([draw_turn(), draw_turn(2)], {"max_turns": 2}, "max_turns"),
    (["<think>no tool here</think> Action: Object Mapper"], {}, "ToolError"),
    ([draw_turn().replace('"bbox_2d"', '"bbox"')], {}, "ToolGenError"),
    ([draw_turn(index=5)], {}, "IndexError"),
    ([draw_turn(), draw_turn(2)], {"max_images": 2}, "TooManyImages"),
])
def test_every_finish_reason(model, processor, forced, cfg, reason):
    traj, = run(model, processor, [task()], forced=[forced], **cfg)
    assert traj.finish_reason == reason, traj.turns


def test_final_turn_wording_on_the_truly_last_turn(model, processor):
    tok = processor.tokenizer
    traj, = run(model, processor, [task()], forced=[[draw_turn(), draw_turn(2), ANSWER]], max_turns=3)
    text = tok.decode(traj.token_ids)
    assert text.count("Check the drawing") == 1
    assert text.count("tools are no longer available") == 1
    assert text.index("Check the drawing") < text.index("tools are no longer available")
    assert traj.finish_reason == "answer"


# ----------------------------------------------------------------------------- isolation
def test_bad_trajectories_do_not_disturb_good_ones(model, processor):
    sampling = SamplingConfig(temperature=1.0, top_k=50)
    good_forced = [draw_turn(), ANSWER]
    tasks = [task(0), task(1), task(2), task(3)]
    forced = [good_forced, [draw_turn(index=7)], ["<think>broken</think> Action: Object Mapper\n```json\n[{'index': 1,"],
              [draw_turn()]]  # row 3 samples freely after its first drawing
    batch = run(model, processor, tasks, forced=forced, sampling=sampling)
    assert [t.finish_reason for t in batch[:3]] == ["answer", "IndexError", "ToolError"]
    for i in (0, 3):
        alone, = run(model, processor, [tasks[i]], forced=[forced[i]], sampling=sampling)
        np.testing.assert_array_equal(batch[i].token_ids, alone.token_ids)
        np.testing.assert_allclose(batch[i].logprobs, alone.logprobs, atol=2e-4)
        assert batch[i].finish_reason == alone.finish_reason
