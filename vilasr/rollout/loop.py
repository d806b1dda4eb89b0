"""Multi-turn drawing rollouts with continuous batching, on one persistent KV cache (docs/method.md,
the loop).

`rollout_stream` keeps `slots` rows of one KV cache busy: each row holds one trajectory, and when
one ends its row is emptied and takes the next waiting task at once, so the device decodes for
full rows while tasks wait. Each round: admit tasks into free rows (their input images encoded on
the device), prefill every row's pending chunk (a new prompt, or the feedback turn after a drawing)
in one call, then decode the rows in a turn until one of them ends its turn (a row may be mid-turn
across calls). A row whose turn ended is read (drawing_ops.turn_outcome: the reference's tolerance
for bad tool calls and the image cap; the loop adds the per-turn token cap, the response budget
and the turn budget); its drawing is applied with the JAX batch renderer and only the new images
are encoded (vilasr.rollout.vision). Nothing is ever re-encoded or re-prefilled: a trajectory's
cost is its own new tokens. (`persistent_cache=False` re-prefills the whole conversation every
turn instead -- the reference's way, kept as the benchmark peer and a test oracle.)

A trajectory ends with a `FinishReason`. A bad trajectory ends with its reason; the others go on,
and a task's tokens depend only on its own seed: every row has its own cache length, keys and caps,
so neither its row nor its neighbours nor when it started change them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from typing import Iterable, Iterator, Sequence

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
from vilasr.rollout.sampler import TurnOutput, decode, prefill_rows, resize_cache
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
    position: int = 0         # the task's place in the stream
    slot: int = 0             # its row of the KV cache
    key: jax.Array | None = None
    script: Sequence[str] | None = None   # forced turns
    prompt_len: int = 0
    turn: "_Turn | None" = None           # the model turn being written
    chunk: "_Chunk | None" = None         # tokens waiting to be prefilled

    @property
    def live(self) -> bool:
        return self.finish_reason is None

    def length(self) -> int:
        return sum(len(s.ids) for s in self.segments)

    @property
    def cache_len(self) -> int:
        """Slots the row holds once its pending tokens are in (its turn so far included)."""
        return self.length() + (len(self.turn.ids) if self.turn is not None else 0)

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


# ----------------------------------------------------------------------------- shapes the compiler sees
# Why these buckets: every distinct shape is one more compiled program (seconds each on a CPU, and
# kept in memory), so the loop pads to a few sizes at two per octave -- at most 50 % padding, about
# 20 % on average -- instead of the exact sizes, which differ for every record.
MIN_CHUNK = 64        # prefill chunk widths: 64, 96, 128, 192, 256, ... (a feedback turn is an image + ~40 tokens)
MIN_CACHE = 1024      # cache sizes: 1024, 1536, 2048, 3072, ... slots (grown and shrunk between rounds)
DECODE_WINDOW = 256   # tokens per decode call at most; a longer turn goes on in the next call
# A decode call returns once this share of its rows (at least one) ended their turn: each return
# costs a prefill and a host round, each ended row idles until then. Measured on 64 synth-maze
# records with the demo's settings (2 cores): loop tokens/s at 8 slots 422 / 501 / 536 / 541 for
# a share of 0 (one row) / 0.125 / 0.25 / 0.5, at 32 slots 339 / 372 / 444 / 457.
EXIT_SHARE = 0.25


def two_per_octave(n: int, floor: int) -> int:
    """`n` rounded up to the next of floor * {1, 1.5} * 2^k."""
    size = floor
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size // 3 * 4
    return size


def row_bucket(n: int, slots: int) -> int:
    """Rows of a prefill call: 1, 2, 4, 8, ... up to the slot count. A prefill's cost is its rows
    times its width times the keys it reads, so a padded row costs as much as a real one (powers
    of four had up to 4x the rows at 32 slots: prefill was then half the loop's time)."""
    size = 1
    while size < n:
        size *= 2
    return min(size, slots)


def width_groups(rows: list[_Row]) -> list[list[_Row]]:
    """Pending rows grouped by the width bucket of their chunk, one prefill call each: a new
    prompt (~250 tokens) and a feedback turn (~100) in one call would pad every row to the wider."""
    groups: dict[int, list[_Row]] = {}
    for row in rows:
        groups.setdefault(two_per_octave(len(row.chunk.ids), MIN_CHUNK), []).append(row)
    return [groups[w] for w in sorted(groups)]


# ----------------------------------------------------------------------------- one trajectory
@dataclasses.dataclass
class _Turn:
    """The model turn a row is writing, possibly over several decode calls."""

    number: int        # 1-based
    cap: int           # tokens it may take
    hit_budget: bool   # the cap is the response budget's, not the per-turn limit
    key: jax.Array
    forced: list[int] | None
    ids: list = dataclasses.field(default_factory=list)
    logprobs: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Chunk:
    """Tokens (with their images' features) waiting to be prefilled into a row's slot."""

    ids: list[int]
    feats: list        # device arrays, one per image in the chunk, in order
    grids: list        # (t, h, w) per image
    reset: bool        # empty the slot first (a new task, or the reference's re-prefill)


# ----------------------------------------------------------------------------- the loop
class _Engine:
    """The device side of a rollout: `slots` rows of one KV cache and their next-token logits."""

    def __init__(self, model, processor, config: RolloutConfig, slots: int):
        self.model, self.config, self.slots = model, config, slots
        self.parts = nnx.split(model)
        self.vision = DeviceVision(model, self.parts, processor.image_processor, config.draw_labels)
        self.cache = model.init_cache(slots, MIN_CACHE)
        self.logits = jnp.zeros((slots, model.config.text.vocab_size), jnp.float32)
        self.window = min(config.max_turn_tokens, DECODE_WINDOW)
        self.idle_key = jax.random.key(0)

    def fit(self, need: int) -> None:
        """Give the cache room for `need` slots per row: grown to the bucket, or shrunk once the
        bucket it needs is at most half of what it holds."""
        want = two_per_octave(need, MIN_CACHE)
        if want > self.cache.max_len or 2 * want <= self.cache.max_len:
            self.cache = resize_cache(self.cache, want)

    def prefill(self, rows: list[_Row]) -> None:
        """Each row's pending chunk into its slot, in one call (rows and width padded to buckets)."""
        width = two_per_octave(max(len(r.chunk.ids) for r in rows), MIN_CHUNK)
        count = row_bucket(len(rows), self.slots)
        ids, mask = np.zeros((count, width), np.int32), np.zeros((count, width), bool)
        slot_ids, reset = np.full(count, self.slots, np.int32), np.zeros(count, bool)
        feats, grids = [], []
        for r, row in enumerate(rows):
            ids[r, :len(row.chunk.ids)], mask[r, :len(row.chunk.ids)] = row.chunk.ids, True
            slot_ids[r], reset[r] = row.slot, row.chunk.reset
            feats += row.chunk.feats
            grids += row.chunk.grids
        positions = embeds = None
        if feats:
            starts = np.asarray(jax.device_get(self.cache.next_pos))[np.minimum(slot_ids, self.slots - 1)]
            starts = np.where(reset | (slot_ids >= self.slots), 0, starts)
            positions = prepare_inputs(self.model.config, ids, mask, np.array(grids, np.int32),
                                       start_positions=starts)["positions"]
            embeds = _pack_features(feats, two_per_octave(sum(f.shape[0] for f in feats), MIN_CHUNK))
        self.logits, self.cache = prefill_rows(self.parts, self.cache, self.logits, slot_ids, reset, ids, mask,
                                               positions, embeds)
        for row in rows:
            row.chunk = None

    def decode(self, rows: list[_Row], stop_ids, pad_id: int) -> TurnOutput:
        """One decode call for the rows in a turn; returns once EXIT_SHARE of them ended their turn."""
        active, caps, offsets = np.zeros(self.slots, bool), np.ones(self.slots, np.int32), np.zeros(self.slots, np.int32)
        keys = [self.idle_key] * self.slots
        forced = [None] * self.slots
        for row in rows:
            b, turn = row.slot, row.turn
            active[b], caps[b], offsets[b], keys[b], forced[b] = True, turn.cap, len(turn.ids), turn.key, turn.forced
        out, self.cache = decode(self.parts, self.cache, self.logits, cfg=self.config.sampling, keys=jnp.stack(keys),
                                 caps=caps, stop_ids=stop_ids, max_steps=self.window, pad_id=pad_id, active=active,
                                 forced=forced, banned=self.model.config.placeholder_ids, offsets=offsets,
                                 min_done=max(1, int(EXIT_SHARE * len(rows))))
        self.logits = out.logits
        return out


@functools.partial(jax.jit, donate_argnums=0)
def _place(buffer: jax.Array, feats: jax.Array, offset: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice(buffer, feats.astype(buffer.dtype), (offset, jnp.zeros((), jnp.int32)))


def _pack_features(feats: list[jax.Array], total: int) -> jax.Array:
    """The images' features one after another in a (total, hidden) buffer (zeros after them). Placed
    one by one by a jitted copy: an eager concatenate would compile once per combination of sizes."""
    buffer = jnp.zeros((total, feats[0].shape[1]), feats[0].dtype)
    offset = 0
    for f in feats:
        buffer = _place(buffer, f, jnp.asarray(offset, jnp.int32))
        offset += f.shape[0]
    return buffer


class _Clock:
    """Seconds per phase of the loop (`times` of rollout_stream), the device synchronised first."""

    def __init__(self, times: dict | None):
        self.times = times

    @contextlib.contextmanager
    def __call__(self, phase: str, result=lambda: None):
        if self.times is None:
            yield
            return
        start = time.perf_counter()
        yield
        jax.block_until_ready(result())
        self.times[phase] = self.times.get(phase, 0.0) + time.perf_counter() - start


def rollout_stream(model, processor, tasks: Iterable[RolloutTask], config: RolloutConfig = RolloutConfig(),
                   seed: int = 0, slots: int = 8, forced_turns: Sequence[Sequence[str]] | None = None,
                   progress: bool = False, total: int | None = None,
                   times: dict | None = None) -> Iterator[tuple[int, Trajectory]]:
    """Run the multi-turn drawing loop for every task with continuous batching: `slots` rows of one
    KV cache each hold one trajectory, and a row whose trajectory ends takes the next waiting task
    at once. Yields (task position, Trajectory) as trajectories end (not in task order); tasks are
    read from the iterable only as rows free up.

    A task's tokens depend only on its own seed (`RolloutTask.seed`, else its position): every
    row has its own slots, keys and caps, whichever row it got and whenever.
    `forced_turns[i]` (optional) scripts task i's first model turns: each text (its end-of-turn
    token appended) is emitted instead of sampled, with the model's log-probabilities recorded --
    to score a known trajectory, or to drive the loop deterministically in tests. Later turns
    are sampled. `times` (a dict, optional) gains the seconds spent per phase: prefill, decode,
    vision (encoding and drawing images), the rest is the host's.
    """
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ConfigError(f"slots must be a positive integer, got {slots!r}")
    release_compiled_programs()   # many rollouts in one process meet many shapes (vilasr.compiled)
    engine = _Engine(model, processor, config, slots)
    clock = _Clock(times)
    tok = processor.tokenizer
    stop_ids = sorted(set(tok.eos_ids) | {tok.im_end_id})
    base_key = jax.random.key(seed)
    sizing = _input_processor(processor, config)
    budget = math.inf if config.max_response_tokens is None else config.max_response_tokens
    waiting = iter(enumerate(tasks))
    in_slot: list[_Row | None] = [None] * slots
    bar = tqdm(total=total, desc="rollout", unit="traj", disable=not progress)
    try:
        while True:
            # admit waiting tasks into free slots
            admitted = []
            for b in range(slots):
                if in_slot[b] is None:
                    nxt = next(waiting, None)
                    if nxt is None:
                        break
                    i, task = nxt
                    key = jax.random.fold_in(base_key, task.seed if task.seed is not None else i)
                    in_slot[b] = _new_row(processor, task, i, b, key, config, sizing, engine.vision,
                                          forced_turns[i] if forced_turns is not None and i < len(forced_turns) else None)
                    admitted.append(in_slot[b])
            rows = [r for r in in_slot if r is not None]
            if not rows:
                break
            if admitted:
                with clock("vision", lambda: [r.chunk.feats for r in admitted]):
                    _attach_prompt_features(engine.vision, admitted)
            # room for every row's tokens and one decode window more (before the chunks go in)
            engine.fit(max(r.cache_len for r in rows) + engine.window)
            pending = [r for r in rows if r.chunk is not None]
            if pending:
                with clock("prefill", lambda: engine.logits):
                    for group in width_groups(pending):
                        engine.prefill(group)
            # start turns; a row with no budget left ends here
            for row in rows:
                if row.turn is None:
                    _start_turn(row, config, budget, tok)
            ended = [r for r in rows if not r.live]
            writing = [r for r in rows if r.live]
            if writing:
                with clock("decode"):
                    out = engine.decode(writing, stop_ids, tok.pad_id)
                turn_ends = []
                for row in writing:
                    b = row.slot
                    row.turn.ids += out.tokens[b].tolist()
                    row.turn.logprobs += out.logprobs[b].tolist()
                    if out.ended[b]:
                        turn_ends.append((row, bool(out.stopped[b])))
                _end_turns(turn_ends, processor, config, budget, engine.vision, stop_ids, clock)
                ended += [r for r, _ in turn_ends if not r.live]
            for row in ended:
                in_slot[row.slot] = None
                bar.update(1)
                yield row.position, _finish(row)
            if ended:
                release_compiled_programs()
    finally:
        bar.close()


def rollout(model, processor, tasks: Sequence[RolloutTask], config: RolloutConfig = RolloutConfig(),
            seed: int = 0, forced_turns: Sequence[Sequence[str]] | None = None,
            progress: bool = False, slots: int | None = None) -> list[Trajectory]:
    """Every task's trajectory, in task order (`rollout_stream` through `slots` rows, default one
    row per task)."""
    tasks = list(tasks)
    out: list = [None] * len(tasks)
    for i, traj in rollout_stream(model, processor, tasks, config, seed=seed, slots=slots or max(1, len(tasks)),
                                  forced_turns=forced_turns, progress=progress, total=len(tasks)):
        out[i] = traj
    return out


# ----------------------------------------------------------------------------- host side of a row
def _new_row(processor, task: RolloutTask, position: int, slot: int, key, config: RolloutConfig, sizing,
             vision, script) -> _Row:
    images = []
    for im in task.images:
        im = to_rgb_array(im)
        h, w = sizing.target_size(*im.shape[:2])
        images.append(im if im.shape[:2] == (h, w) else resize_rgb(im, h, w))
    row = _Row(task=task, context=VisualContext(images, max_images=config.max_images, backend="jax",
                                                draw_labels=config.draw_labels),
               max_turns=config.turn_budget(task), position=position, slot=slot, key=key, script=script)
    shapes = [im.shape[:2] for im in images]
    row.messages = _prompt_messages(task, shapes, config.template)
    ids = _tokens(processor, processor.apply_chat_template(row.messages, add_generation_prompt=True), shapes)
    row.add(ids, False)
    row.prompt_len = len(ids)
    grids = [vision.grid(*s) for s in shapes]
    row.grids += grids
    row.images_encoded += len(shapes)
    row.tokens_processed += len(ids)
    row.chunk = _Chunk(ids, [], grids, reset=True)   # features attached once the admitted rows are encoded
    return row


def _attach_prompt_features(vision, rows: list[_Row]) -> None:
    """Encode the admitted rows' input images together (one call per image size)."""
    feats = vision.encode([im for row in rows for im in row.context.images])
    cursor = 0
    for row in rows:
        n = len(row.context.images)
        row.chunk.feats = feats[cursor:cursor + n]
        cursor += n


def _start_turn(row: _Row, config: RolloutConfig, budget: float, tok) -> None:
    cap = int(min(config.max_turn_tokens, max(budget - row.cost, 0)))
    if cap <= 0:
        row.finish_reason = FinishReason.BUDGET
        return
    number = len(row.turns) + 1
    script = row.script[number - 1] if row.script and number <= len(row.script) else None
    row.turn = _Turn(number=number, cap=cap, hit_budget=cap < config.max_turn_tokens,
                     key=jax.random.fold_in(row.key, number),
                     forced=tok.encode(script) + [tok.im_end_id] if script is not None else None)


def _end_turns(ends: list[tuple[_Row, bool]], processor, config: RolloutConfig, budget: float, vision,
               stop_ids, clock: _Clock) -> None:
    """Rows whose model turn ended: read it, decide, draw the new images (all rows' together on
    the device) and queue each row's feedback turn as its next chunk."""
    tok = processor.tokenizer
    jobs = []   # (row, its drawing jobs) for the rows that go on
    for row, stopped in ends:
        turn, row.turn = row.turn, None
        ids = np.asarray(turn.ids, np.int32)
        row.add(ids, True, turn.logprobs)
        row.tokens_processed += len(ids)
        row.cost += len(ids)
        text = tok.decode([t for t in ids.tolist() if t not in stop_ids])
        outcome = turn_outcome(text, len(row.context), max_images=config.max_images, strict=config.strict)
        row.turns.append(text)
        row.messages.append({"role": str(Role.ASSISTANT), "content": text})
        row.outcomes.append(outcome)
        row.answer = outcome.answer
        row.finish_reason = _loop_reason(outcome, stopped, turn.hit_budget, turn.number, row.max_turns)
        if row.finish_reason is None:
            jobs.append((row, row.context.plan_outcome(outcome)))
    flat = [(row, job) for row, js in jobs for job in js]
    with clock("vision"):
        drawn, feats = vision.draw([row.context.images[j.source - 1] for row, j in flat],
                                   [j.annotations for _, j in flat]) if flat else ([], [])
    cursor = 0
    for row, js in jobs:
        row_drawn, row_feats = drawn[cursor:cursor + len(js)], feats[cursor:cursor + len(js)]
        cursor += len(js)
        shapes = [im.shape[:2] for im in row_drawn]
        # the next model turn is the last one: the turn budget, or the cap reached by these images
        final = len(row.turns) + 1 >= row.max_turns or len(row.context) + len(js) >= config.max_images
        body = config.template.feedback_prompt(_image_infos(shapes, first_index=len(row.context) + 1), final=final)
        ids = _tokens(processor, _user_turn_text(body), shapes)
        cost = _feedback_cost(processor, ids, shapes, config.image_tokens)
        if row.cost + cost >= budget:  # no room for the feedback (as the reference, >=): the images are
            row.finish_reason = FinishReason.BUDGET   # not shown, so they do not join the trajectory
            continue
        new = row.context.commit(js, row_drawn)
        row.messages.append({"role": str(Role.USER), "content": body})
        row.cost += cost
        row.add(ids, False)
        grids = [vision.grid(*s) for s in shapes]
        row.grids += grids
        row.images_encoded += len(new)  # encoded when drawn, in either mode
        if config.persistent_cache:
            row.tokens_processed += len(ids)
            row.chunk = _Chunk(list(ids), list(row_feats), grids, reset=False)
        else:  # the reference's way: the whole conversation (all images) prefilled again into an empty slot
            whole = np.concatenate([s.ids for s in row.segments]).tolist()
            row.chunk = _Chunk(whole, vision.encode(row.context.images), list(row.grids), reset=True)
            row.images_encoded += len(row.context.images)
            row.tokens_processed += len(whole)


def _finish(row: _Row) -> Trajectory:
    return Trajectory.from_segments(
        row.segments, task=row.task, prompt_len=row.prompt_len, images=list(row.context.images),
        image_grid_thw=np.array(row.grids, np.int32), turns=row.turns, messages=row.messages,
        parsed=[o.parsed for o in row.outcomes], outcomes=row.outcomes, answer=row.answer,
        finish_reason=row.finish_reason, tokens_processed=row.tokens_processed, images_encoded=row.images_encoded)
