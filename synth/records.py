"""One dataclass for one synthetic sample: the task, its exact ground truth and (optionally) a
drawing trajectory with the images the drawing produced.

Images are uint8 (H, W, 3) arrays. `images` are the inputs (image 1..k); `drawn_images` are the
images the trajectory's tool calls produced, in order (image k+1, k+2, ...). `conversation` is
the sharegpt-style list of {"role", "content"} messages; its `<image>` placeholders name, in
order, `images + drawn_images`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drawing_ops import Box, Line, assistant_turns

FAMILIES = ("maze", "static", "multiview")
TRAJECTORY_KINDS = ("none", "cold", "reflective")
PROBLEM_TYPES = ("multiple choice", "numerical", "regression", "vci")


@dataclass
class Sample:
    """A synthetic spatial task with exact answers, ground-truth drawings and a trajectory."""

    id: str
    family: str
    question: str                 # the question alone (no options, no instructions)
    options: list[str]            # ["A. ...", "B. ...", ...]; [] for numeric answers
    answer: str                   # "B", "3.25", or "move_right:0.6,rotate_left:20"
    problem_type: str             # one of PROBLEM_TYPES
    data_type: str                # "maze", "single_view", "multi_view"
    images: list[np.ndarray]      # input images, image 1..k
    boxes: list[Box] = field(default_factory=list)   # ground-truth boxes (1-based image index)
    lines: list[Line] = field(default_factory=list)  # ground-truth lines
    meta: dict[str, Any] = field(default_factory=dict)  # family facts (JSON-able): grid, poses, kind...
    trajectory: str = "none"      # one of TRAJECTORY_KINDS
    conversation: list[dict[str, str]] = field(default_factory=list)
    drawn_images: list[np.ndarray] = field(default_factory=list)

    @property
    def all_images(self) -> list[np.ndarray]:
        return list(self.images) + list(self.drawn_images)

    @property
    def question_kind(self) -> str:
        return self.meta.get("question_kind", "")

    def assistant_turns(self) -> list[str]:
        return assistant_turns(self.conversation)

    # -- JSON form of everything but the pixels ------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Every field except the pixels, JSON-able; `num_images` / `num_drawn` say how many."""
        return {
            "id": self.id,
            "family": self.family,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "problem_type": self.problem_type,
            "data_type": self.data_type,
            "boxes": [b.to_json() for b in self.boxes],
            "lines": [ln.to_json() for ln in self.lines],
            "meta": self.meta,
            "trajectory": self.trajectory,
            "conversation": self.conversation,
            "num_images": len(self.images),
            "num_drawn": len(self.drawn_images),
        }

    @classmethod
    def from_header(cls, header: dict[str, Any], all_images) -> "Sample":
        """Inverse of `header`: `all_images` holds the inputs followed by the drawn images."""
        all_images = [np.ascontiguousarray(np.asarray(im, dtype=np.uint8)) for im in all_images]
        k = int(header["num_images"])
        if len(all_images) != k + int(header["num_drawn"]):
            raise ValueError(f"record {header.get('id')!r} announces {k}+{header['num_drawn']} images "
                             f"but carries {len(all_images)}")
        return cls(
            id=header["id"], family=header["family"], question=header["question"],
            options=list(header["options"]), answer=header["answer"],
            problem_type=header["problem_type"], data_type=header["data_type"],
            images=all_images[:k],
            boxes=[Box(**b) for b in header["boxes"]],
            lines=[Line(**ln) for ln in header["lines"]],
            meta=header["meta"], trajectory=header["trajectory"],
            conversation=[dict(m) for m in header["conversation"]],
            drawn_images=all_images[k:],
        )

    def digest(self) -> str:
        """SHA-256 of the header (canonical JSON) and every image's shape and pixels."""
        h = hashlib.sha256(canonical_json(self.header()).encode("utf-8"))
        for im in self.all_images:
            h.update(repr(im.shape).encode())
            h.update(np.ascontiguousarray(im).tobytes())
        return h.hexdigest()

    def same_as(self, other: "Sample") -> bool:
        return self.digest() == other.digest()


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def dataset_digest(samples) -> str:
    """One hash for a sequence of samples (order matters)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.digest().encode())
    return h.hexdigest()


def option_letter(k: int) -> str:
    return "ABCDEFGH"[k]


def lettered(options: list[str]) -> list[str]:
    return [f"{option_letter(k)}. {text}" for k, text in enumerate(options)]
