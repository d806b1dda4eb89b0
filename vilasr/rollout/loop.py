"""Multi-turn drawing rollouts for a batch of tasks, on one persistent KV cache (docs/method.md, the loop).

Per turn: decode every live trajectory (vilasr.rollout.sampler), decide what each turn does
(drawing_ops.turn_outcome: the reference's tolerance for bad tool calls and the image cap; the
loop adds the per-turn token cap, the response budget and the turn budget), apply the drawing
to its visual context with the JAX batch renderer, preprocess and encode *only the new images* on
the device (vilasr.rollout.vision), and append the feedback turn to the cache. Nothing is ever
re-encoded or re-prefilled: a trajectory's cost is its own new tokens. (`persistent_cache=False`
re-prefills the whole conversation every turn instead -- the reference's way, kept as the
benchmark peer and a test oracle.)

A trajectory ends with a `FinishReason`. A bad trajectory ends with its reason; the others go on,
and their tokens do not depend on their batch-mates (per-row keys).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from drawing_ops import TurnOutcome, VisualContext, turn_outcome
from drawing_ops.protocol import IMAGE_PLACEHOLDER, FinishReason, ImageInfo, PromptTemplate, Role
from vilasr.compiled import release_compiled_programs
from vilasr.errors import ConfigError
from vilasr.model import prepare_inputs
from vilasr.processing.image import resize_rgb, to_rgb_array
from vilasr.processing.processor import expand_placeholders
from vilasr.processing.tokenizer import IM_END, IM_START
from vilasr.rollout.config import RolloutConfig
from drawing_ops.render_jax import chunk_bucket
from vilasr.rollout.sampler import GROWTH, decode, grow_cache, prefill
from vilasr.rollout.trajectory import RolloutTask, Segment, Trajectory
from vilasr.rollout.vision import DeviceVision
from vilasr.uses import REFERENCE_IMAGE_TOKENS, ImageTokens

VISION_SLOT = "<|vision_start|><|image_pad|><|vision_end|>"


@dataclasses.dataclass
class _Row:
    """A trajectory in progress (host side)."""

    task: RolloutTask
    context: VisualContext
    max_turns: int
    segments: list[Segment] = dataclasses.field(default_factory=list)
    turns: list[str] = dataclasses.field(default_factory=list)
    messages: list[dict] = dataclasses.field(default_factory=list)
    outcomes: list[TurnOutcome] = dataclasses.field(default_factory=list)
    finish_reason: FinishReason | None = None
    answer: str | None = None
    tokens_processed: int = 0
    images_encoded: int = 0
    grids: list = dataclasses.field(default_factory=list)
    cost: int = 0  # response tokens spent, images counted as the config says

    @property
    def live(self) -> bool:
        return self.finish_reason is None

    def length(self) -> int:
        return sum(len(s.ids) for s in self.segments)

    def add(self, ids, is_model: bool, logprobs=None) -> None:
        ids = np.asarray(ids, np.int32)
        lp = np.zeros(len(ids), np.float32) if logprobs is None else np.asarray(logprobs, np.float32)
        self.segments.append(Segment(ids, is_model, lp))


# ----------------------------------------------------------------------------- turn outcome
def _loop_reason(outcome: TurnOutcome, stopped: bool, hit_budget: bool, turn: int,
                 max_turns: int) -> FinishReason | None:
    """Why a trajectory ends after this model turn, or None if its drawing should be applied: the
    loop's own limits around `turn_outcome`'s decision. A turn cut by a token limit ends on that
    limit; an answer ends it on any turn, the last allowed one included (mazes or not); a turn
    budget spent without an answer ends as max_turns."""
    if not stopped:
        return FinishReason.BUDGET if hit_budget else FinishReason.LENGTH
    if outcome.finish_reason is FinishReason.ANSWER:
        return FinishReason.ANSWER
    if turn >= max_turns:
        return FinishReason.MAX_TURNS
    return outcome.finish_reason


# ----------------------------------------------------------------------------- text of the turns
def _image_infos(shapes, first_index: int = 1) -> list[ImageInfo]:
    return [ImageInfo(first_index + k, w, h) for k, (h, w) in enumerate(shapes)]


def _prompt_messages(task: RolloutTask, shapes, template: PromptTemplate) -> list[dict]:
    return template.prompt_messages(task.question, _image_infos(shapes), options=task.options,
                                    problem_type=task.problem_type)


def _prompt_text(processor, task: RolloutTask, shapes, template: PromptTemplate) -> str:
    return processor.apply_chat_template(_prompt_messages(task, shapes, template), add_generation_prompt=True)


def _feedback_text(template: PromptTemplate, new_images: Sequence[ImageInfo], final: bool) -> str:
    return _user_turn_text(template.feedback_prompt(new_images, final=final))


def _user_turn_text(body: str) -> str:
    """The chat-template text of a feedback turn (sharegpt `body`), from after the model's
    end-of-turn token to the start of the next model turn."""
    body = body.replace(IMAGE_PLACEHOLDER, VISION_SLOT)
    return f"\n{IM_START}user\n{body}{IM_END}\n{IM_START}assistant\n"


def _image_tokens(processor, shape) -> int:
    """Tokens of an image already at its model size (the rollout resized it; no second resize)."""
    ip = processor.image_processor
    h, w = shape
    return (h // ip.patch_size) * (w // ip.patch_size) // ip.merge_size ** 2


def _tokens(processor, text: str, image_shapes) -> list[int]:
    """Token ids of `text` with each image slot expanded to its number of image tokens."""
    counts = [_image_tokens(processor, s) for s in image_shapes]
    return processor.tokenizer.encode(expand_placeholders([text], counts, [])[0])


def _feedback_cost(processor, ids, shapes, image_tokens: ImageTokens) -> int:
    """What a feedback turn costs of the response budget: its tokens, or (FLAT) its text tokens
    plus a flat 256 per image, as the reference's RL rollout counts."""
    if image_tokens is ImageTokens.REAL:
        return len(ids)
    real = sum(_image_tokens(processor, s) for s in shapes)
    return len(ids) - real + REFERENCE_IMAGE_TOKENS * len(shapes)


def _input_processor(processor, config: RolloutConfig):
    """The image processor that sizes input images: the model's, with the config's max_pixels."""
    ip = processor.image_processor
    if config.max_pixels is None:
        return ip
    if config.max_pixels < ip.min_pixels:
        raise ConfigError(f"RolloutConfig.max_pixels={config.max_pixels} is below the processor's min_pixels="
                          f"{ip.min_pixels}; raise max_pixels")
    return dataclasses.replace(ip, max_pixels=config.max_pixels)


def prompt_length(processor, task: RolloutTask, config: RolloutConfig = RolloutConfig()) -> int:
    """Tokens of a task's prompt, images included at the size the rollout gives them."""
    sizing = _input_processor(processor, config)
    shapes = [sizing.target_size(*np.asarray(im).shape[:2]) for im in task.images]
    return len(_tokens(processor, _prompt_text(processor, task, shapes, config.template), shapes))


# ----------------------------------------------------------------------------- the loop
def _chunk(rows_ids: list[list[int] | None]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (B, chunk_bucket) ids and mask; None rows are all padding."""
    longest = max((len(r) for r in rows_ids if r is not None), default=1)
    width = chunk_bucket(longest)
    ids = np.zeros((len(rows_ids), width), np.int32)
    mask = np.zeros((len(rows_ids), width), bool)
    for b, r in enumerate(rows_ids):
        if r:
            ids[b, : len(r)] = r
            mask[b, : len(r)] = True
    return ids, mask


def _prefill_chunk(model, parts, cache, rows_ids, row_feats, grids):
    """Append one chunk (rows' token ids with their images' features, in order) to the cache."""
    ids, mask = _chunk(rows_ids)
    need = int(cache.index) + ids.shape[1]
    if need > cache.max_len:
        cache = grow_cache(cache, need + GROWTH)
    feats = [f for fs in row_feats for f in fs]
    if not feats:
        return prefill(parts, cache, ids, mask)
    inputs = prepare_inputs(model.config, ids, mask, np.array(grids, np.int32),
                            start_positions=np.asarray(jax.device_get(cache.next_pos)))
    embeds = jnp.concatenate(feats, axis=0)
    return prefill(parts, cache, ids, mask, positions=inputs["positions"], image_embeds=embeds)


def rollout(model, processor, tasks: Sequence[RolloutTask], config: RolloutConfig = RolloutConfig(),
            seed: int = 0, forced_turns: Sequence[Sequence[str]] | None = None,
            progress: bool = False) -> list[Trajectory]:
    """Run the multi-turn drawing loop for every task; one Trajectory per task, in order.

    `forced_turns[i]` (optional) scripts task i's first model turns: each text (its end-of-turn
    token appended) is emitted instead of sampled, with the model's log-probabilities recorded --
    to score a known trajectory, or to drive the loop deterministically in tests. Later turns
    are sampled.
    """
    release_compiled_programs()   # many rollouts in one process meet many shapes (vilasr.compiled)
    parts = nnx.split(model)
    vision = DeviceVision(model, parts, processor.image_processor, config.draw_labels)
    tok = processor.tokenizer
    stop_ids = sorted(set(tok.eos_ids) | {tok.im_end_id})
    base_key = jax.random.key(seed)
    sizing = _input_processor(processor, config)
    rows = []
    for i, task in enumerate(tasks):
        images = []
        for im in task.images:
            im = to_rgb_array(im)
            h, w = sizing.target_size(*im.shape[:2])
            images.append(im if im.shape[:2] == (h, w) else resize_rgb(im, h, w))
        rows.append(_Row(task=task, context=VisualContext(images, max_images=config.max_images, backend="jax",
                                                          draw_labels=config.draw_labels),
                         max_turns=config.turn_budget(task)))
    row_keys = jnp.stack([jax.random.fold_in(base_key, t.seed if t.seed is not None else i)
                          for i, t in enumerate(tasks)])

    # the prompt chunk: every task's system + question turns with its input images
    prompt_ids, grids = [], []
    for row in rows:
        shapes = [im.shape[:2] for im in row.context.images]
        row.messages = _prompt_messages(row.task, shapes, config.template)
        ids = _tokens(processor, processor.apply_chat_template(row.messages, add_generation_prompt=True), shapes)
        row.add(ids, False)
        row.grids += [vision.grid(*s) for s in shapes]
        prompt_ids.append(ids)
        grids += [vision.grid(*s) for s in shapes]
        row.images_encoded += len(shapes)
    prompt_feats = _encode_per_row(vision, [row.context.images for row in rows])
    prompt_lens = [len(ids) for ids in prompt_ids]
    cache = model.init_cache(len(rows), chunk_bucket(max(prompt_lens)) + config.max_turn_tokens + 256)
    logits, cache = _prefill_chunk(model, parts, cache, prompt_ids, prompt_feats, grids)
    for row, n in zip(rows, prompt_lens):
        row.tokens_processed += n

    turn = 0
    bar = tqdm(total=len(rows), desc="rollout", unit="traj", disable=not progress)
    while any(r.live for r in rows):
        turn += 1
        bar.set_postfix(turn=turn)
        if not config.persistent_cache and turn > 1:
            logits, cache = _reprefill(model, parts, vision, rows)
        used = np.array([r.cost for r in rows])
        total = math.inf if config.max_response_tokens is None else config.max_response_tokens
        caps = np.minimum(config.max_turn_tokens, np.maximum(total - used, 0)).astype(np.int64)
        active = np.array([r.live for r in rows]) & (caps > 0)
        for r, c in zip(rows, caps):
            if r.live and c <= 0:
                r.finish_reason = FinishReason.BUDGET
        if not active.any():
            break
        keys = jax.vmap(jax.random.fold_in)(row_keys, jnp.full(len(rows), turn))
        forced = [tok.encode(script[turn - 1]) + [tok.im_end_id] if script and turn <= len(script) else None
                  for script in (forced_turns or [None] * len(rows))]
        out, cache = decode(parts, cache, logits, cfg=config.sampling, keys=keys, caps=caps, stop_ids=stop_ids,
                            max_steps=config.max_turn_tokens, pad_id=tok.pad_id, active=active, forced=forced,
                            banned=model.config.placeholder_ids)

        # host: read each turn, decide, plan the drawings
        jobs = {}
        for b, row in enumerate(rows):
            if not active[b]:
                continue
            ids = out.tokens[b]
            row.add(ids, True, out.logprobs[b])
            row.tokens_processed += len(ids)
            row.cost += len(ids)
            text = tok.decode([t for t in ids if t not in stop_ids])
            outcome = turn_outcome(text, len(row.context), max_images=config.max_images, strict=config.strict)
            row.turns.append(text)
            row.messages.append({"role": str(Role.ASSISTANT), "content": text})
            row.outcomes.append(outcome)
            row.answer = outcome.answer
            row.finish_reason = _loop_reason(outcome, bool(out.stopped[b]), caps[b] < config.max_turn_tokens, turn,
                                             row.max_turns)
            if row.finish_reason is None:
                jobs[b] = row.context.plan_outcome(outcome)

        # device: draw and encode the new images; then the feedback turns
        flat = [(b, job) for b, js in jobs.items() for job in js]
        drawn, feats = vision.draw([rows[b].context.images[j.source - 1] for b, j in flat],
                                   [j.annotations for _, j in flat]) if flat else ([], [])
        chunk_ids: list = [None] * len(rows)
        chunk_feats: list = [[] for _ in rows]
        chunk_grids = []
        cursor = 0
        for b, js in jobs.items():
            row = rows[b]
            row_drawn, row_feats = drawn[cursor:cursor + len(js)], feats[cursor:cursor + len(js)]
            cursor += len(js)
            shapes = [im.shape[:2] for im in row_drawn]
            # the next model turn is the last one: the turn budget, or the cap reached by these images
            final = turn + 1 >= row.max_turns or len(row.context) + len(js) >= config.max_images
            body = config.template.feedback_prompt(_image_infos(shapes, first_index=len(row.context) + 1),
                                                   final=final)
            ids = _tokens(processor, _user_turn_text(body), shapes)
            cost = _feedback_cost(processor, ids, shapes, config.image_tokens)
            if row.cost + cost >= total:  # no room for the feedback (as the reference, >=): the images are
                row.finish_reason = FinishReason.BUDGET   # not shown, so they do not join the trajectory
                continue
            new = row.context.commit(js, row_drawn)
            row.messages.append({"role": str(Role.USER), "content": body})
            row.cost += cost
            row.add(ids, False)
            row.grids += [vision.grid(*s) for s in shapes]
            row.images_encoded += len(new)  # encoded when drawn, in either mode
            if config.persistent_cache:
                row.tokens_processed += len(ids)
            chunk_ids[b], chunk_feats[b] = ids, row_feats
            chunk_grids += [vision.grid(*s) for s in shapes]
        if any(c is not None for c in chunk_ids) and config.persistent_cache:
            logits, cache = _prefill_chunk(model, parts, cache, chunk_ids, chunk_feats, chunk_grids)
        bar.update(sum(1 for r in rows if not r.live) - bar.n)
    bar.close()
    return [_finish(row, n) for row, n in zip(rows, prompt_lens)]


def _encode_per_row(vision, images_per_row):
    """Each row's image features, all rows' images encoded together (one call per image size)."""
    feats = vision.encode([im for images in images_per_row for im in images])
    out, cursor = [], 0
    for images in images_per_row:
        out.append(feats[cursor:cursor + len(images)])
        cursor += len(images)
    return out


def _reprefill(model, parts, vision, rows):
    """The reference's way: a fresh cache and the whole conversation (all images) prefilled again."""
    seqs, feats, grids = [], [], []
    for row in rows:
        seqs.append(np.concatenate([s.ids for s in row.segments]).tolist() if row.live else None)
        if row.live:
            feats.append(vision.encode(row.context.images))
            grids += row.grids
            row.images_encoded += len(row.context.images)
            row.tokens_processed += len(seqs[-1])
        else:
            feats.append([])
    longest = max(len(s) for s in seqs if s is not None)
    cache = model.init_cache(len(rows), chunk_bucket(longest) + 1024)
    logits, cache = _prefill_chunk(model, parts, cache, seqs, feats, grids)
    return logits, cache


def _finish(row: _Row, prompt_len: int) -> Trajectory:
    return Trajectory.from_segments(
        row.segments, task=row.task, prompt_len=prompt_len, images=list(row.context.images),
        image_grid_thw=np.array(row.grids, np.int32), turns=row.turns, messages=row.messages,
        parsed=[o.parsed for o in row.outcomes], outcomes=row.outcomes, answer=row.answer,
        finish_reason=row.finish_reason, tokens_processed=row.tokens_processed, images_encoded=row.images_encoded)
