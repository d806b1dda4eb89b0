"""Training data: conversations with images -> padded batches with loss masks, through Grain.

Sources (`open_source`):
* a sharegpt JSON file -- ours or the reference's released form (docs/method.md, file formats):
  records `{"conversations": [{"role", "content"} or {"from", "value"}...], "images": [paths]}`;
* a `vilasr synth` dataset folder (its `SYNTH_COMPLETE.json` manifest says sharegpt or TFDS
  ArrayRecord; the latter is read through Grain without TensorFlow).

Each record becomes an `Example` (`encode_example`): the chat-template text tokenized with each
`<image>` expanded to its image tokens, the loss mask (each assistant turn's tokens and its
`<|im_end|>`, not the newline after it: the tokens a rollout marks as model-written), and the
images resized to the run's pixel budget. A bad record (unreadable image, placeholder count that
does not match, nothing to learn) is skipped and counted with its reason, never fatal.

Batches (`batches`) group examples of similar length: each window of `LENGTH_WINDOW` micro-batches
is sorted by length and cut into micro-batches (as transformers' group_by_length does), so one
long conversation no longer pads seven short ones. These batches are padded to a fine length
bucket (`chunk_bucket`: at most ~25 % padding, four widths per octave, at least 64 tokens), and
image tokens to a power-of-two count, so a run compiles once per (length bucket, image-token
bucket): a few programs per octave its sequences span. (GRPO's rollout batches, of mixed lengths,
take power-of-two lengths: fewer programs.)
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import grain
import numpy as np

from drawing_ops.protocol import IMAGE_PLACEHOLDER
from drawing_ops.render_jax import bucket, chunk_bucket
from synth import io as synth_io
from tpu.distributed import host_rows
from vilasr.errors import ConfigError
from vilasr.processing.image import resize_rgb, to_rgb_array
from vilasr.processing.processor import expand_placeholders

MIN_LENGTH_BUCKET = 64
LENGTH_WINDOW = 8   # micro-batches whose examples are grouped by length
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


class BadRecord(ValueError):
    """A record that cannot be trained on; the message says why."""


@dataclasses.dataclass(frozen=True)
class Example:
    input_ids: np.ndarray           # (L,) int32
    loss_mask: np.ndarray           # (L,) bool: the tokens the model is trained to write
    images: tuple[np.ndarray, ...]  # uint8 (H, W, 3), resized, in placeholder order


@dataclasses.dataclass(frozen=True)
class Batch:
    input_ids: np.ndarray       # (B, L) int32, right-padded
    attention_mask: np.ndarray  # (B, L) bool
    loss_mask: np.ndarray       # (B, L) bool
    images: tuple[np.ndarray, ...]   # every row's images, row by row
    num_rows: int               # real rows (the rest are padding)

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())


# ----------------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class Record:
    """One conversation as stored: messages and a way to get its images."""

    conversation: list[dict]
    image_paths: tuple[str, ...] = ()
    images: tuple[np.ndarray, ...] | None = None   # already decoded (TFDS)

    def load_images(self) -> list[np.ndarray]:
        if self.images is not None:
            return list(self.images)
        return [synth_io.read_png(p) for p in self.image_paths]


def open_source(path) -> Sequence[Record]:
    """The records of a sharegpt file or of a `vilasr synth` dataset folder (train split)."""
    path = Path(path)
    if path.is_dir():
        manifest = synth_io.read_manifest(path) if (path / synth_io.MANIFEST).exists() else None
        if manifest is None:
            raise ConfigError(f"{path} is a folder without {synth_io.MANIFEST}: pass a sharegpt .json file or a "
                              "finished `vilasr synth` dataset folder")
        if manifest["format"] == "tfds":
            return _TfdsRecords(path)
        if manifest["format"] != "sharegpt":
            raise ConfigError(f"{path} holds a {manifest['format']!r} dataset (questions only); training needs "
                              "trajectories: write it with `vilasr synth ... --format sharegpt` or tfds")
        path = path / manifest["files"]["train"]
    if not path.is_file():
        raise ConfigError(f"training data {path} does not exist; pass a sharegpt .json file or a synth dataset folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as sharegpt JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path} must hold a non-empty JSON list of sharegpt records")
    base = path.parent
    return [_sharegpt_record(r, base) for r in raw]


def _sharegpt_record(raw: Any, base: Path) -> Record:
    if not isinstance(raw, dict):
        return Record(conversation=[], image_paths=())      # rejected later, with a reason
    messages = raw.get("conversations", raw.get("messages", []))
    paths = tuple(str(p if Path(p).is_absolute() else base / p) for p in (raw.get("images") or []))
    return Record(conversation=list(messages) if isinstance(messages, list) else [], image_paths=paths)


class _TfdsRecords(collections.abc.Sequence):
    """Random access to a synth TFDS dataset's samples as records (decoded lazily)."""

    def __init__(self, folder: Path):
        self._source = synth_io.tfds_data_source(folder)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        sample = synth_io.example_to_sample(self._source[index])
        return Record(conversation=sample.conversation, images=tuple(sample.all_images))


# ----------------------------------------------------------------------------- one example
def encode_example(record: Record, processor, max_seq_len: int) -> Example:
    """Tokens, loss mask and resized images of one conversation; raises BadRecord."""
    if not record.conversation:
        raise BadRecord("the record has no conversation")
    try:
        text = processor.apply_chat_template(record.conversation, add_generation_prompt=False)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"the conversation does not fit the chat template ({exc})") from None
    n_slots = text.count(VISION_START)
    try:
        images = [to_rgb_array(im) for im in record.load_images()]
    except (OSError, ValueError) as exc:
        raise BadRecord(f"an image cannot be read ({exc})") from None
    if n_slots != len(images):
        raise BadRecord(f"{n_slots} {IMAGE_PLACEHOLDER} placeholders but {len(images)} images")
    ip = processor.image_processor
    sizes = [ip.target_size(*im.shape[:2]) for im in images]
    images = [im if im.shape[:2] == size else resize_rgb(im, *size) for im, size in zip(images, sizes)]
    counts = [processor.num_image_tokens(*im.shape[:2]) for im in images]
    ids = np.asarray(processor.tokenizer.encode(expand_placeholders([text], counts, [])[0]), np.int32)
    mask = processor.assistant_token_mask(ids)
    ids, mask, images = _truncate(ids, mask, images, max_seq_len, processor)
    if not mask.any():
        raise BadRecord("no assistant tokens to learn from (within max_seq_len)")
    return Example(ids, mask, tuple(images))


def _truncate(ids, mask, images, max_len: int, processor):
    """Cut at `max_len` tokens; an image whose tokens would be cut is dropped with everything after it."""
    if len(ids) <= max_len:
        return ids, mask, images
    start_id = processor.tokenizer.token_to_id(VISION_START)
    end_id = processor.tokenizer.token_to_id(VISION_END)
    starts, ends = np.flatnonzero(ids == start_id), np.flatnonzero(ids == end_id)
    cut = max_len
    kept = 0
    for s, e in zip(starts, ends):
        if e < cut:
            kept += 1
        else:
            cut = min(cut, int(s))
            break
    return ids[:cut], mask[:cut], images[:kept]


# ----------------------------------------------------------------------------- batches
def collate(examples: Sequence[Example], pad_id: int, rows: int, *, fine: bool = False) -> Batch:
    """Right-pad `examples` into a batch of `rows` rows (missing rows are all padding), to a
    power-of-two length, or with `fine` (batches of similar lengths) to a `chunk_bucket` length."""
    longest = max(len(e.input_ids) for e in examples)
    width = max((chunk_bucket if fine else bucket)(longest), MIN_LENGTH_BUCKET)
    ids = np.full((rows, width), pad_id, np.int32)
    attn = np.zeros((rows, width), bool)
    loss = np.zeros((rows, width), bool)
    for b, e in enumerate(examples):
        n = len(e.input_ids)
        ids[b, :n], attn[b, :n], loss[b, :n] = e.input_ids, True, e.loss_mask
    return Batch(ids, attn, loss, tuple(im for e in examples for im in e.images), len(examples))


@dataclasses.dataclass
class SkipLog:
    """Records skipped so far, by reason (reported at the end of a run and in the metrics)."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def batches(records: Sequence[Record], processor, *, micro_batch: int, max_seq_len: int, seed: int,
            epochs: int, skipped: SkipLog, host: int = 0, hosts: int = 1):
    """A checkpointable Grain iterator of `Batch`es: `epochs` passes over the records, each in its
    own shuffled order, encoded, bad ones skipped (and counted in `skipped`), grouped by length
    (`LengthGrouped`) `micro_batch` at a time. On several hosts, host `host` of `hosts` reads and
    encodes every `hosts`-th record of that order only, `micro_batch / hosts` at a time."""
    if micro_batch % hosts:
        raise ConfigError(f"a micro-batch of {micro_batch} sequences does not split over {hosts} hosts; "
                          f"use a multiple of {hosts}")

    def encode(record):
        try:
            return encode_example(record, processor, max_seq_len)
        except BadRecord as exc:
            skipped.add(str(exc))
            return None

    # a new permutation each pass (as epoch-wise trainers do), fixed by the seed
    order = np.concatenate([np.random.default_rng([seed, epoch]).permutation(len(records))
                            for epoch in range(epochs)])
    ds = host_rows(grain.MapDataset.source(order), host, hosts).map(lambda i: encode(records[int(i)]))
    rows = micro_batch // hosts
    windows = (ds.to_iter_dataset().filter(lambda e: e is not None)
               .batch(rows * LENGTH_WINDOW, drop_remainder=False, batch_fn=list))
    grouped = LengthGrouped(rows, processor.tokenizer.pad_id)
    return iter(grain.experimental.FlatMapIterDataset(windows, grouped))


class LengthGrouped(grain.experimental.FlatMapTransform):
    """A window of examples -> its full micro-batches, each of examples of similar length, from
    the shortest to the longest (equal lengths keep the window's order)."""

    max_fan_out = LENGTH_WINDOW

    def __init__(self, micro_batch: int, pad_id: int):
        self.micro_batch, self.pad_id = micro_batch, pad_id

    def flat_map(self, window: list[Example]) -> list[Batch]:
        lengths = [len(e.input_ids) for e in window]
        by_length = sorted(range(len(window)), key=lengths.__getitem__)
        m = self.micro_batch
        groups = [by_length[k:k + m] for k in range(0, len(window) - m + 1, m)]   # a short tail is dropped
        return [collate([window[i] for i in g], self.pad_id, m, fine=True) for g in groups]
