"""The visual context of one trajectory: its images and each image's box and line sets (docs/method.md §2).

A turn's actions are grouped by source image. Each source yields one new image, appended with the
next 1-based index: its annotation sets start from the source's, an incoming item whose label is
already there replaces it in place, new labels are appended, and a kind the turn does not touch is
inherited unchanged. The merged sets are drawn on a copy of the source's pixels (so a drawn source
keeps its earlier strokes). Sources are ordered as the reference orders them: by first appearance
among the turn's boxes, then among its lines.

Planning (`plan_turn`) is pure and separate from drawing, so a device-side rollout can plan on the
host and draw a whole batch with the JAX renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from drawing_ops.actions import Action, Box, Line
from drawing_ops.errors import ToolFormatError, ToolIndexError, TooManyImages, ToolSchemaError
from drawing_ops.protocol import DEFAULT_MAX_IMAGES
from drawing_ops.render import render


@dataclass(frozen=True)
class Annotations:
    """The boxes and lines drawn so far on one image, each in drawing order, labels unique."""

    boxes: tuple[Box, ...] = ()
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True)
class DrawJob:
    """One new image to make: draw `annotations` on a copy of image `source` (1-based)."""

    source: int
    annotations: Annotations


def merge_by_label(old: Sequence, new: Sequence) -> tuple:
    """Replace items of `old` whose label appears in `new` in place; append the other new labels.
    Within `new`, a repeated label keeps its first position and its last value (as the reference)."""
    incoming: dict[str, object] = {}
    for item in new:
        incoming[item.label] = item
    merged = [incoming.pop(item.label, item) for item in old]
    merged.extend(incoming.values())
    return tuple(merged)


def group_by_source(actions: Sequence[Action]) -> dict[int, tuple[list[Box], list[Line]]]:
    """Source index -> (its boxes, its lines), ordered by first appearance among boxes, then lines."""
    groups: dict[int, tuple[list[Box], list[Line]]] = {}
    for act in [a for a in actions if isinstance(a, Box)] + [a for a in actions if isinstance(a, Line)]:
        boxes, lines = groups.setdefault(act.index, ([], []))
        (boxes if isinstance(act, Box) else lines).append(act)
    return groups


def plan_turn(annotations: Sequence[Annotations], actions: Sequence[Action],
              max_images: int = DEFAULT_MAX_IMAGES) -> list[DrawJob]:
    """The new images one turn makes, given every existing image's annotations. Pure; raises
    ToolFormatError (nothing to draw), ToolSchemaError, ToolIndexError or TooManyImages."""
    if not actions:
        raise ToolFormatError("the turn has no drawing actions")
    for act in actions:
        if not isinstance(act, (Box, Line)):
            raise ToolSchemaError(f"actions must be Box or Line, got {type(act).__name__}")
        if act.index > len(annotations):
            raise ToolIndexError(f"'{act.label}' addresses image {act.index}, "
                                 f"but only images 1..{len(annotations)} exist")
    sources = list(group_by_source(actions))
    if len(annotations) + len(sources) > max_images:
        raise TooManyImages(f"the turn would make {len(sources)} new image(s) on top of {len(annotations)}, "
                            f"past the cap of {max_images}; answer with what is drawn so far")
    return plan_images(annotations, sources, actions)


def plan_images(annotations: Sequence[Annotations], sources: Sequence[int],
                actions: Sequence[Action]) -> list[DrawJob]:
    """One DrawJob per source (1-based, in the order the new images take): the source's sets merged
    with the turn's actions on that source. A source with no drawable action still makes its
    image (the reference's undrawn items do). Pure; the caller has checked the sources."""
    groups = group_by_source(actions)
    jobs = []
    for source in sources:
        base = annotations[source - 1]
        boxes, lines = groups.get(source, ((), ()))
        jobs.append(DrawJob(source, Annotations(merge_by_label(base.boxes, boxes),
                                                merge_by_label(base.lines, lines))))
    return jobs


def as_rgb_array(image) -> np.ndarray:
    """A PIL image or an array (H, W), (H, W, 3) or (H, W, 4) -> a new uint8 (H, W, 3) array."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image without importing PIL
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3]).copy()


class VisualContext:
    """A trajectory's images (1-based, inputs first) with the annotation sets of each.

    `apply(actions)` makes the turn's new images and returns their 1-based indices. It is atomic:
    on any ToolCallError nothing is added.
    """

    def __init__(self, images, max_images: int = DEFAULT_MAX_IMAGES, *, backend: str = "numpy",
                 draw_labels: bool = True):
        images = [as_rgb_array(im) for im in images]
        if not images:
            raise ValueError("a visual context needs at least one image")
        if len(images) > max_images:
            raise TooManyImages(f"{len(images)} input images exceed the cap of {max_images}")
        self.images: list[np.ndarray] = images
        self.annotations: list[Annotations] = [Annotations() for _ in images]
        self.max_images = max_images
        self.backend = backend
        self.draw_labels = draw_labels

    def __len__(self) -> int:
        return len(self.images)

    def boxes(self, index: int) -> tuple[Box, ...]:
        return self.annotations[index - 1].boxes

    def lines(self, index: int) -> tuple[Line, ...]:
        return self.annotations[index - 1].lines

    def plan(self, actions: Sequence[Action]) -> list[DrawJob]:
        return plan_turn(self.annotations, actions, self.max_images)

    def commit(self, jobs: Sequence[DrawJob], drawn: Sequence[np.ndarray]) -> list[int]:
        """Append already drawn images (e.g. from a batched device render) for `jobs`."""
        first = len(self.images) + 1
        for job, image in zip(jobs, drawn, strict=True):
            self.images.append(as_rgb_array(image))
            self.annotations.append(job.annotations)
        return list(range(first, len(self.images) + 1))

    def plan_outcome(self, outcome) -> list[DrawJob]:
        """The jobs of a `drawing_ops.turn_outcome` result that goes on (its sources, in order)."""
        if outcome.finish_reason is not None:
            raise ValueError(f"the turn ended the trajectory ({outcome.finish_reason}); nothing to draw")
        return plan_images(self.annotations, outcome.new_images, outcome.actions)

    def draw(self, jobs: Sequence[DrawJob]) -> list[int]:
        """Draw `jobs` on the host with this context's backend and append the images."""
        drawn = [render(self.images[j.source - 1], j.annotations.boxes, j.annotations.lines,
                        backend=self.backend, draw_labels=self.draw_labels) for j in jobs]
        return self.commit(jobs, drawn)

    def apply(self, actions: Sequence[Action]) -> list[int]:
        """Make the images of valid actions (raises ToolCallError, adds nothing, on any problem)."""
        return self.draw(self.plan(actions))

    def apply_outcome(self, outcome) -> list[int]:
        """Make the images a `turn_outcome` result says the turn makes (undrawn items included)."""
        return self.draw(self.plan_outcome(outcome))
