"""Small benchmark files in each benchmark's form (SPEC §6), made by the tests, and a recorded /
scripted stand-in for a model's trajectories."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from drawing_ops.protocol import FinishReason


def png(path: Path, color=(120, 60, 200), size=(56, 56)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), color, np.uint8)).save(path)
    return path.name


def write_video(path: Path, n: int = 40, size=(64, 48)) -> Path:
    """A tiny MJPG video whose frame k is a flat grey of level 5k (so a frame tells its index)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.full((size[1], size[0], 3), 5 * k, np.uint8))
    writer.release()
    return path


def write_benchmark_files(root: Path) -> dict[str, Path]:
    """One small record file per benchmark form; images under root/img."""
    img = root / "img"
    for k in range(16):
        png(img / f"frame_{k}.png", color=(10 * k, 0, 0))
    png(img / "maze.png")
    png(img / "view1.png")
    png(img / "view2.png")
    write_video(img / "clip.avi")
    files = {
        # the reference's maze and SpatialEval files give image_path as one string
        "maze": [{"question": "Which way?", "options": ["A. up", "B. down", "C. left", "D. right"], "answer": "B",
                  "problem_type": "multiple choice", "data_type": "maze", "image_path": "maze.png", "grid_size": 4}],
        "spatialeval": [{"question": "Is the cup left of the plate?\nA. yes\nB. no", "answer": "A",
                         "problem_type": "multiple choice", "data_type": "single_view", "image_path": ["view1.png"]}],
        "vsi": [{"id": 7, "question": "How many chairs?", "answer": "3", "problem_type": "numerical",
                 "data_type": "video", "image_path": [f"frame_{k}.png" for k in range(16)],
                 "original_question_type": "object_counting"},
                {"id": 8, "question": "Which is closer?", "options": ["A. x", "B. y"], "answer": "A",
                 "problem_type": "multiple choice", "data_type": "video", "image_path": ["clip.avi"],
                 "original_question_type": "object_rel_direction_hard"}],
        "spar": [{"question": "How did the view change?", "answer": "move_right:1.2,rotate_left:30",
                  "problem_type": "vci", "data_type": "multi_view", "image_path": ["view1.png", "view2.png"],
                  "original_question_type": "view_change_infer"},
                 {"question": "Depth of the lamp?", "answer": "2.5", "problem_type": "regression",
                  "data_type": "single_view", "image_path": ["view1.png"],
                  "original_question_type": "depth_prediction_oc"}],
        "mmsi": [{"id": "mmsi-1", "question": "Where is the door?", "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "C",
                  "problem_type": "multiple choice", "data_type": "multi_view",
                  "image_path": ["view1.png", "view2.png"]}],
    }
    paths = {}
    for name, records in files.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(records), encoding="utf-8")
    return paths


@dataclasses.dataclass
class Recorded:
    """What the runner reads of a Trajectory, recorded or scripted."""

    turns: list[str]
    finish_reason: FinishReason
    response_len: int
    images: list[np.ndarray]
    messages: list[dict]


def scripted_generate(script: dict[str, list[str]], calls: list | None = None):
    """A `generate` that answers each task with the turns scripted for its question; every second
    turn draws one image (a feedback turn with one <image>)."""
    def generate(tasks):
        if calls is not None:
            calls.append([t.question for t in tasks])
        out = []
        for task in tasks:
            turns = script[task.question]
            images = [np.asarray(im) for im in task.images]
            messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "<image>q"}]
            for k, text in enumerate(turns):
                messages.append({"role": "assistant", "content": text})
                if k < len(turns) - 1:
                    images.append(np.full_like(images[0], 255))
                    messages.append({"role": "user", "content": "<image> go on"})
            reason = FinishReason.ANSWER if "<answer>" in turns[-1] else FinishReason.LENGTH
            out.append(Recorded(turns, reason, 10 * len(turns), images, messages))
        return out
    return generate
