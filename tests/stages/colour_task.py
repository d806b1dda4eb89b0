"""The colour task the stage tests train on: one object in a 56x56 image, a 4-option question
about its colour, answered after boxing the object (a two-turn drawing trajectory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drawing_ops import Box, ImageInfo, VisualContext, parse_tool_calls
from drawing_ops.protocol import PromptTemplate, format_answer_turn, format_tool_turn
from synth.io import png_bytes

TEMPLATE = PromptTemplate(system="Draw, look, answer.", closing="")
COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
OPTIONS = ("A. red", "B. green", "C. blue", "D. yellow")
QUESTION = "What colour is the object?"
BOX = Box(1, (16, 12, 36, 40), "o")


def scene(color: str, shade: int) -> np.ndarray:
    image = np.full((56, 56, 3), 235, np.uint8)
    image[12:40, 16:36] = np.clip(np.array(COLORS[color]) + 8 * (shade - 2), 0, 255)
    return image


def letter(color: str) -> str:
    return "ABCD"[list(COLORS).index(color)]


def write_trajectories(folder: Path, trajectories) -> Path:
    """A sharegpt file of (messages, input images) trajectories whose first assistant turn draws:
    the drawn image is made by the real renderer and written beside the inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (messages, images) in enumerate(trajectories):
        context = VisualContext(images)
        context.apply(parse_tool_calls(messages[2]["content"]).actions)
        paths = []
        for j, im in enumerate(context.images):
            (folder / f"{i}_{j}.png").write_bytes(png_bytes(im))
            paths.append(f"{i}_{j}.png")
        records.append({"conversations": messages, "images": paths})
    path = folder / "train.json"
    path.write_text(json.dumps(records))
    return path


def write_cold_start_data(folder: Path, seed: int = 0) -> Path:
    """Trajectories that box the object, look, and answer with a *random* letter: the cold start
    teaches the protocol, not the task (its accuracy stays at chance for GRPO to improve)."""
    rng = np.random.default_rng(seed)
    trajectories = []
    for color, shade in ((c, s) for c in COLORS for s in range(4)):
        messages = TEMPLATE.prompt_messages(QUESTION, [ImageInfo(1, 56, 56)], options=list(OPTIONS))
        messages.append({"role": "assistant", "content": format_tool_turn("Box it.", [BOX])})
        messages.append({"role": "user", "content": TEMPLATE.feedback_prompt([ImageInfo(2, 56, 56)], final=True)})
        messages.append({"role": "assistant", "content": format_answer_turn("Look.", "ABCD"[rng.integers(4)])})
        trajectories.append((messages, [scene(color, shade)]))
    return write_trajectories(folder, trajectories)
