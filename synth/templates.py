"""The words of synthetic trajectories: varied phrasings for the thinking text. The prompts around
the model's turns come from `drawing_ops.protocol.PromptTemplate` -- the rollout's own -- so
cold-start data and rollouts show the model exactly the same system prompt, question layout and
tool feedback. All wording is ours; the protocol (tool names, JSON keys, tags) is the reference's.

Phrase banks are lists of format strings; `pick(rng, bank, **fields)` chooses one with the
sample's own random generator, so the same seed always gives the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drawing_ops.protocol import DEFAULT_TEMPLATE, ImageInfo, PromptTemplate


def image_infos(images: Sequence[np.ndarray], indices: Sequence[int] | None = None) -> list[ImageInfo]:
    """Index and size of each image as a prompt announces it (indices default to 1, 2, ...)."""
    indices = range(1, len(images) + 1) if indices is None else indices
    return [ImageInfo(k, im.shape[1], im.shape[0]) for k, im in zip(indices, images)]


def prompt_messages(sample, template: PromptTemplate = DEFAULT_TEMPLATE) -> list[dict]:
    """The system and question turns a sample's conversation starts with."""
    return template.prompt_messages(sample.question, image_infos(sample.images), options=sample.options,
                                    problem_type=sample.problem_type)


def feedback_prompt(new_indices, images, template: PromptTemplate = DEFAULT_TEMPLATE) -> str:
    """The user turn after a tool call: the new image(s), announced with their sizes."""
    return template.feedback_prompt(image_infos([images[k - 1] for k in new_indices], new_indices), final=False)


def pick(rng: np.random.Generator, bank: list[str], **fields) -> str:
    return bank[int(rng.integers(len(bank)))].format(**fields)


def fmt_point(p) -> str:
    return f"({round(p[0])}, {round(p[1])})"


def fmt_box(b) -> str:
    return "[" + ", ".join(str(round(v)) for v in b) + "]"


# -- shared phrases -------------------------------------------------------------------------------

OPENERS = [
    "Let me work out what the question needs before drawing anything.",
    "First I want to pin down the relevant parts of the image.",
    "I should locate the things the question is about.",
    "To answer reliably I will mark the key elements first.",
]

CHECK_OK = [
    "The drawing in image {img} sits where I meant it to.",
    "Image {img} confirms the marks are in the right places.",
    "Looking at image {img}, everything I drew lines up with the scene.",
    "Image {img} shows the drawing matching my intention.",
]

MISTAKE_SPOTTED = [
    "Wait - in image {img} the {what} '{label}' is not where it should be: {why}. I will redraw it with the same label.",
    "Checking image {img}: the {what} '{label}' is off, because {why}. Let me correct it.",
    "Image {img} reveals a mistake - {why}, so the {what} '{label}' is wrong. I redraw it.",
    "That is not right: in image {img} the {what} '{label}' misses, since {why}. Fixing it now.",
]

ANSWER_CLOSERS = [
    "So the answer is {answer}.",
    "Therefore the correct choice is {answer}.",
    "This gives {answer}.",
    "Hence {answer}.",
]
