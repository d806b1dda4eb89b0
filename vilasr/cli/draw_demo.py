"""`vilasr draw-demo`: a scripted drawing trajectory on a built-in scene, written as PNGs.

It runs the real path a rollout takes -- parse each assistant turn, apply it to the visual
context, draw -- on a scene made in NumPy (no downloads), including a reflective correction:
the first box for "lamp" is wrong, the next turn redraws the same label in the right place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drawing_ops import Box, Line, VisualContext, parse_tool_calls
from drawing_ops.protocol import Role, format_answer_turn, format_tool_turn
from drawing_ops.render import BACKENDS
from vilasr.cli.flags import HelpFormatter
from synth.raster import contact_sheet

# name -> (x1, y1, x2, y2, rgb) of the objects in the built-in scene
SCENE_OBJECTS = {
    "table": (60, 250, 260, 330, (139, 90, 43)),
    "chair": (300, 230, 370, 360, (70, 110, 160)),
    "lamp": (330, 60, 380, 150, (230, 200, 60)),
    "plant": (40, 120, 100, 240, (60, 150, 70)),
}


def make_scene(height: int = 392, width: int = 448) -> np.ndarray:
    """A simple room: a wall/floor gradient and a few flat-coloured objects."""
    y = np.arange(height, dtype=np.int32)[:, None]
    x = np.arange(width, dtype=np.int32)[None, :]
    wall = np.stack([200 + 0 * x + y // 8, 205 + 0 * x + y // 10, 215 + 0 * x + y // 12], axis=-1)
    floor = np.stack([150 + x // 16 + 0 * y, 130 + x // 20 + 0 * y, 110 + 0 * x + 0 * y], axis=-1)
    scene = np.where((y >= 200)[..., None], floor, wall).clip(0, 255).astype(np.uint8)
    for x1, y1, x2, y2, rgb in SCENE_OBJECTS.values():
        scene[y1:y2, x1:x2] = rgb
    return scene


def _box(label: str, index: int, dx: int = 0, dy: int = 0) -> Box:
    x1, y1, x2, y2, _ = SCENE_OBJECTS[label]
    return Box(index, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), label)


def demo_turns() -> list[str]:
    """The assistant turns of the scripted trajectory (image indices as the context assigns them)."""
    return [
        format_tool_turn("I need the table, the chair and the lamp. I will box them first.",
                         [_box("table", 1), _box("chair", 1), _box("lamp", 1, dx=-120, dy=40)]),
        format_tool_turn("The lamp box on image 2 sits on empty wall, not on the lamp. I redraw it.",
                         [_box("lamp", 2)]),
        format_tool_turn("Now a line from the chair to the lamp to judge the direction.",
                         [Line(3, (335, 295), (355, 105), "chair-to-lamp")]),
        format_answer_turn("The line from the chair goes almost straight up to the lamp, so the lamp is above "
                           "the chair.", "B"),
    ]


DEMO_FILES = ("image_*.png", "trajectory.png", "trajectory.json")


def add_parser(sub) -> None:
    demo = sub.add_parser("draw-demo", help="draw a scripted multi-turn trajectory on a built-in scene",
                          description="Draw a scripted multi-turn trajectory (with a reflective correction) on "
                                      "a built-in scene and write every image as PNG.",
                          formatter_class=HelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("out/draw-demo"),
                      help="output folder: new, empty, or one an earlier demo wrote")
    demo.add_argument("--backend", choices=BACKENDS, default="numpy", help="drawing backend")
    demo.set_defaults(func=run)


def run(args) -> int:
    run_demo(args.out, backend=args.backend)
    return 0


def run_demo(out: Path, backend: str = "numpy") -> list[Path]:
    from vilasr.cli.outputs import prepare_run_folder, write_png

    out = prepare_run_folder(Path(out), "draw-demo", DEMO_FILES)
    context = VisualContext([make_scene()], backend=backend)
    log = [{"role": str(Role.USER), "content": "<image> Is the lamp (A) below or (B) above the chair?"}]
    for text in demo_turns():
        turn = parse_tool_calls(text, num_images=len(context))
        if turn.errors:
            raise RuntimeError(f"the demo script has a bad turn: {turn.errors}")
        log.append({"role": str(Role.ASSISTANT), "content": text})
        if turn.answer is not None:
            break
        new = context.apply(turn.actions)
        log.append({"role": str(Role.USER), "content": " ".join(f"image {k} <image>" for k in new)})
    written = []
    for k, image in enumerate(context.images, start=1):
        path = out / f"image_{k}.png"
        write_png(image, path)
        written.append(path)
    sheet = out / "trajectory.png"
    write_png(contact_sheet(context.images, gap=8), sheet)
    (out / "trajectory.json").write_text(json.dumps(log, indent=2), encoding="utf-8")
    print(f"drew {len(context) - 1} image(s) with the {backend} backend; trajectory: {sheet}")
    for path in written:
        print(f"  {path}")
    return written + [sheet]
