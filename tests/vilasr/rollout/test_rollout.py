"""Sampler and multi-turn rollout on the tiny model: exactness against full forwards, every finish
reason, the table of edge-case turns (tests/turn_cases.py) in both readings, the image cap, the
per-use presets, the model-written-token mask, and failure isolation inside a batch."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from drawing_ops import ImageInfo, PromptTemplate, render, turn_outcome
from turn_cases import CASES, NUM_IMAGES, box, tool_turn
from vilasr.model import CACHE_BLOCK, Qwen25VL, Qwen25VLConfig, cached_attention
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout
from vilasr.errors import ConfigError
from vilasr.rollout.loop import _feedback_cost, _feedback_text, _image_infos, _input_processor, _prompt_text, _tokens
from vilasr.uses import ImageTokens, Use
from drawing_ops.render_jax import chunk_bucket
from vilasr.rollout.sampler import (
    ban_tokens,
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
    # full forwards of one padded width (one compile): a causal model's logits at a position do
    # not depend on the tokens after it
    width = ids.shape[1] + 12
    forward = nnx.jit(lambda m, x: m(x))
    padded = lambda seq: jnp.array([seq + [0] * (width - len(seq))])  # noqa: E731
    seq = ids[0].tolist()
    for _ in range(12):
        seq.append(int(jnp.argmax(forward(model, padded(seq))[0, len(seq) - 1])))
    assert out.tokens[0].tolist() == seq[len(ids[0]):]
    full = jax.nn.log_softmax(forward(model, padded(seq))[0], axis=-1)
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
    """Log-probs of every token under one full forward over the finished conversation, from the
    distribution the sampler draws from (image placeholder tokens banned)."""
    pixels = processor.image_processor(traj.images)
    np.testing.assert_array_equal(pixels["image_grid_thw"], traj.image_grid_thw)
    logits = model(jnp.asarray(traj.token_ids[None]), pixel_values=jnp.asarray(pixels["pixel_values"]),
                   image_grid_thw=pixels["image_grid_thw"])
    lp = jax.nn.log_softmax(ban_tokens(logits[0], model.config.placeholder_ids), axis=-1)
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
    ([draw_turn().replace('"bbox_2d"', '"bbox"')], {}, "ToolError"),           # dropped: nothing left
    ([draw_turn().replace('"bbox_2d"', '"bbox"')], {"strict": True}, "ToolGenError"),
    ([tool_turn([box(1, "a"), {"bbox_2d": [1, 2, 3, 4], "label": "b"}])], {}, "ToolGenError"),
    ([draw_turn(index=5)], {}, "IndexError"),
    ([draw_turn(), draw_turn(2)], {"max_images": 2}, "TooManyImages"),
])
def test_every_finish_reason(model, processor, forced, cfg, reason):
    traj, = run(model, processor, [task()], forced=[forced], **cfg)
    assert traj.finish_reason == reason, traj.turns


def small_scene(seed):
    return np.random.default_rng(seed).integers(0, 256, (56, 56, 3), dtype=np.uint8)


def small_task(n_images, seed, data_type="single_view"):
    return RolloutTask(images=[small_scene(100 * seed + k) for k in range(n_images)], question="Which is left?",
                       data_type=data_type, seed=seed)


CAP = 4  # no table case crosses it from 2 images (each makes at most 2)
CROSSING = tool_turn([box(1, "a"), box(2, "b")])   # 2 new images: from 3 inputs only 1 fits under the cap


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_the_table_of_turns_the_image_cap_and_the_last_turn_through_the_rollout(model, processor, strict):
    """One batch (one compile) holds:
    * every edge-case turn of tests/turn_cases.py as a forced first turn, then an answer on the
      last allowed turn (max_turns=2): the rollout ends or goes on as turn_outcome says, and
      makes the images it says, drawn as the drawing library draws them;
    * the image cap (3 inputs, cap 4): a turn crossing it keeps one new image and goes on with the
      final wording; a drawing at the cap ends as TooManyImages;
    * mazes (3 turns) beside non-mazes (2 turns): the non-mazes answer on their last allowed turn
      (the reference's mixed-batch bug) and only they are told after turn 1 that tools are over;
    * the config's max_pixels (2*56*56, below the tiny processor's 224*224) sizes the inputs."""
    cases = [c for c in CASES if len(processor.tokenizer.encode(c.text)) < 128]  # (not the 400-digit ones)
    assert len(cases) >= 30
    tasks = [small_task(NUM_IMAGES, i) for i in range(len(cases))]
    forced = [[c.text, ANSWER] for c in cases]
    tasks += [small_task(3, 90), small_task(3, 91, "maze"), small_task(NUM_IMAGES, 92, "maze")]
    forced += [[CROSSING, ANSWER], [CROSSING, draw_turn(2)], [draw_turn(), ANSWER]]
    big = np.random.default_rng(7).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    tasks.append(RolloutTask(images=[big, small_scene(8)], question="Which is left?", seed=93))
    forced.append([ANSWER])
    batch = run(model, processor, tasks, forced=forced, max_turn_tokens=128, strict=strict, max_images=CAP,
                max_turns=2, max_turns_maze=3, max_pixels=2 * 56 * 56)

    for case, traj in zip(cases, batch):
        expected = case.strict if strict else case.reason
        first = traj.outcomes[0]
        assert first == turn_outcome(case.text, NUM_IMAGES, max_images=CAP, strict=strict), case.name
        assert first.finish_reason == expected, case.name
        assert traj.finish_reason == (expected or "answer"), case.name
        made = first.new_images if expected is None else ()
        assert len(traj.images) == NUM_IMAGES + len(made), case.name
        assert traj.num_dropped == sum(o.num_dropped for o in traj.outcomes) == len(traj.dropped)
        for k, source in enumerate(made):  # the sources' pixels with the merged drawing on them
            on_source = [a for a in first.actions if a.index == source]
            want = render(traj.images[source - 1], [a for a in on_source if hasattr(a, "bbox_2d")],
                          [a for a in on_source if hasattr(a, "start_point_2d")], backend="numpy")
            np.testing.assert_array_equal(traj.images[NUM_IMAGES + k], want, err_msg=case.name)

    crossed, at_cap, maze, resized = batch[len(cases):]
    assert [im.shape for im in resized.images] == [(56, 56, 3), (56, 56, 3)]
    assert resized.image_grid_thw.tolist() == [[1, 4, 4], [1, 4, 4]]
    assert resized.token_ids.tolist().count(processor.tokenizer.encode("<|image_pad|>")[0]) == 2 * 4
    text = lambda traj: processor.tokenizer.decode(traj.token_ids)  # noqa: E731
    assert crossed.outcomes[0].new_images == (1,) and crossed.outcomes[0].over_cap == (2,)
    assert len(crossed.images) == CAP and crossed.finish_reason == "answer"
    assert text(crossed).count("tools are no longer available") == 1 and "Check the drawing" not in text(crossed)
    assert len(at_cap.images) == CAP and at_cap.finish_reason == "TooManyImages"
    assert at_cap.outcomes[1].new_images == ()
    # a maze's second turn is not its last: its feedback asks for a check, not for the answer
    assert maze.finish_reason == "answer" and len(maze.outcomes) == 2
    assert text(maze).count("Check the drawing") == 1 and "tools are no longer available" not in text(maze)
    for traj in batch[:len(cases)]:   # non-mazes: the second turn is the last, and it answers
        if len(traj.outcomes) == 2:
            assert text(traj).count("tools are no longer available") == 1 and "Check the drawing" not in text(traj)


# ----------------------------------------------------------------------------- prompt templates
REFERENCE_STYLE_TOML = """
system = "You solve spatial puzzles by drawing. Image 1 is {width} pixels wide and {height} high."
single_image_line = "{image}\\nThis is image {index}."
image_line = "{image}This is image {index} (width: {width}, height: {height})."
question_turn = "{images}\\n### Question:\\n{question}\\n{options}\\n\\n{answer_instruction}"
question = "{question}"
options_header = ""
feedback_turn = "{images}\\n{message}\\n"
feedback = "Go on and check the drawing of image {index}."
feedback_final = "No more tools: answer the question now."

[answer_instructions]
"multiple choice" = "Answer with the option's letter."
"""


def slot(h, w):
    return "<|vision_start|>" + "<|image_pad|>" * ((h // 28) * (w // 28)) + "<|vision_end|>"


def test_a_template_file_reproduces_a_hand_written_layout_token_for_token(processor, tmp_path):
    path = tmp_path / "reference_style.toml"
    path.write_text(REFERENCE_STYLE_TOML)
    template = RolloutConfig(template=PromptTemplate.from_file(path)).template
    encode = processor.tokenizer.encode

    def prompt_ids(shapes, **task_fields):
        task = RolloutTask(images=[np.zeros((*s, 3), np.uint8) for s in shapes], **task_fields)
        return _tokens(processor, _prompt_text(processor, task, shapes, template), shapes)

    # several images: each placeholder followed by its index and size
    shapes = [(84, 112), (56, 56)]
    assert prompt_ids(shapes, question="Which object is larger?", options=["A. the cup", "B. the pot"]) == encode(
        "<|im_start|>system\nYou solve spatial puzzles by drawing. Image 1 is 112 pixels wide and 84 high.<|im_end|>\n"
        "<|im_start|>user\n" + slot(84, 112) + "This is image 1 (width: 112, height: 84).\n" + slot(56, 56) +
        "This is image 2 (width: 56, height: 56).\n### Question:\nWhich object is larger?\nA. the cup\nB. the pot\n\n"
        "Answer with the option's letter.<|im_end|>\n<|im_start|>assistant\n")
    # one image: its index only (its size is in the system prompt); no options, no instruction
    assert prompt_ids([(56, 84)], question="How far?", problem_type="regression") == encode(
        "<|im_start|>system\nYou solve spatial puzzles by drawing. Image 1 is 84 pixels wide and 56 high.<|im_end|>\n"
        "<|im_start|>user\n" + slot(56, 84) + "\nThis is image 1.\n### Question:\nHow far?\n<|im_end|>\n"
        "<|im_start|>assistant\n")
    # feedback turns, one new image and two, the final one
    one = _tokens(processor, _feedback_text(template, [ImageInfo(2, 84, 56)], final=False), [(56, 84)])
    assert one == encode("\n<|im_start|>user\n" + slot(56, 84) + "\nThis is image 2.\nGo on and check the drawing of "
                         "image 2.\n<|im_end|>\n<|im_start|>assistant\n")
    two = _tokens(processor, _feedback_text(template, [ImageInfo(3, 84, 56), ImageInfo(4, 56, 56)], final=True),
                  [(56, 84), (56, 56)])
    assert two == encode("\n<|im_start|>user\n" + slot(56, 84) + "This is image 3 (width: 84, height: 56).\n" +
                         slot(56, 56) + "This is image 4 (width: 56, height: 56).\nNo more tools: answer the question "
                         "now.\n<|im_end|>\n<|im_start|>assistant\n")


# ----------------------------------------------------------------------------- settings per use
def test_per_use_presets_hold_the_reference_values():
    ev, rl = RolloutConfig.for_eval(), RolloutConfig.for_rl()
    assert (ev.max_turn_tokens, ev.max_response_tokens, ev.max_images, ev.max_pixels) == (16384, None, 45, 448 * 28 * 28)
    assert (ev.sampling.temperature, ev.sampling.top_p, ev.image_tokens) == (0.75, 0.9, ImageTokens.REAL)
    assert (rl.max_turn_tokens, rl.max_response_tokens, rl.max_images, rl.max_pixels) == (1024, 13312, 42, 256 * 28 * 28)
    assert (rl.sampling.temperature, rl.sampling.top_p, rl.image_tokens) == (1.0, 1.0, ImageTokens.FLAT)
    for cfg in (ev, rl):
        assert (cfg.max_turns, cfg.max_turns_maze, cfg.strict) == (10, 20, False)
        assert cfg.turn_budget(RolloutTask(images=[], question="", data_type="maze")) == 20
    assert Use.SFT.max_pixels == 1280 * 28 * 28 == 1_003_520 and Use.EVAL.max_pixels == 351_232
    assert RolloutConfig.for_use("rl", strict=True, max_images=9) == dataclasses.replace(rl, strict=True, max_images=9)
    for bad, needle in [("sft", "has no rollout"), ("train", "unknown use")]:
        with pytest.raises(ConfigError, match=needle):
            RolloutConfig.for_use(bad)
    with pytest.raises(ConfigError, match="image_tokens"):
        RolloutConfig(image_tokens="tokens")
    with pytest.raises(ConfigError, match="max_pixels"):
        RolloutConfig(max_pixels=0)


def test_input_sizing_and_the_image_budget_count(processor):
    # the eval preset's 448*28*28 and the RL preset's 256*28*28 decide the size, not the processor's
    assert _input_processor(processor, RolloutConfig.for_eval()).target_size(616, 616) == (588, 588)
    assert _input_processor(processor, RolloutConfig.for_rl()).target_size(616, 616) == (448, 448)
    assert _input_processor(processor, RolloutConfig()).target_size(616, 616) == (224, 224)  # tiny processor's cap
    with pytest.raises(ConfigError, match="min_pixels"):
        _input_processor(processor, RolloutConfig(max_pixels=100))
    # a feedback turn with two 56x84 images (6 tokens each): real count vs the reference's flat 256
    shapes = [(56, 84), (56, 84)]
    ids = _tokens(processor, _feedback_text(RolloutConfig().template, _image_infos(shapes, 3), final=False), shapes)
    assert _feedback_cost(processor, ids, shapes, ImageTokens.REAL) == len(ids)
    assert _feedback_cost(processor, ids, shapes, ImageTokens.FLAT) == len(ids) - 12 + 2 * 256


def test_images_without_room_for_their_feedback_do_not_join_the_trajectory(model, processor):
    turn_len = len(processor.tokenizer.encode(draw_turn())) + 1
    for image_tokens in ("real", "flat"):
        traj, = run(model, processor, [task()], forced=[[draw_turn()]], max_response_tokens=turn_len + 5,
                    image_tokens=image_tokens)
        assert traj.finish_reason == "budget" and traj.outcomes[0].new_images == (1,)
        assert len(traj.images) == len(traj.image_grid_thw) == 1 and traj.response_len == turn_len


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


def test_a_padded_chunk_advances_each_row_by_its_own_tokens(model, processor):
    # two rows, right-padded to one chunk width: each row's length is its own real tokens (the
    # padding never reaches the cache), and decoding from there matches a cache that never saw it
    enc = processor.tokenizer.encode
    rows = [enc("<|im_start|>user\nHow many chairs?<|im_end|>\n<|im_start|>assistant\n"),
            enc("<|im_start|>user\nIs the lamp left of the sofa, or right?<|im_end|>\n<|im_start|>assistant\n")]
    width = chunk_bucket(max(map(len, rows))) + 16
    ids, mask = np.zeros((2, width), np.int32), np.zeros((2, width), bool)
    for b, r in enumerate(rows):
        ids[b, : len(r)], mask[b, : len(r)] = r, True
    parts, keys = nnx.split(model), jax.random.split(jax.random.key(0), 2)
    logits, cache = prefill(parts, model.init_cache(2, 256), ids, mask)
    assert np.asarray(cache.lengths).tolist() == [len(r) for r in rows]
    out, _ = decode(parts, cache, logits, cfg=GREEDY, keys=keys, caps=np.array([10, 10]), stop_ids=[-1],
                    max_steps=10, pad_id=0)
    for b, r in enumerate(rows):
        alone_logits, alone = prefill(parts, model.init_cache(1, 256), np.array([r], np.int32),
                                      np.ones((1, len(r)), bool))
        want, _ = decode(parts, alone, alone_logits, cfg=GREEDY, keys=keys[b:b + 1], caps=np.array([10]),
                         stop_ids=[-1], max_steps=10, pad_id=0)
        assert out.tokens[b].tolist() == want.tokens[0].tolist()
        np.testing.assert_allclose(out.logprobs[b], want.logprobs[0], atol=1e-5)
