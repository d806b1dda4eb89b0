"""`vilasr draw`: apply the tool calls of one model turn to an image and write the new image(s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drawing_ops.render import BACKENDS

EXIT_BAD_INPUT = 2


def add_parser(sub) -> None:
    draw = sub.add_parser("draw", help="apply the tool calls of one model turn to an image",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    draw.add_argument("image", type=Path, help="the input image (image 1)")
    draw.add_argument("--calls", required=True, help="the model's turn text, or a file holding it, or '-'")
    draw.add_argument("--out", type=Path, required=True, help="output PNG (several images: OUT_image<k>.png)")
    draw.add_argument("--backend", choices=BACKENDS, default="numpy", help="drawing backend")
    draw.add_argument("--no-labels", action="store_true", help="do not draw box labels")
    draw.add_argument("--keep-going", action="store_true", help="draw the valid items even if some are bad")
    draw.set_defaults(func=run)


def _read_calls(text_or_file: str) -> str:
    """--calls takes the turn's text itself, or a path to a file holding it ('-' for stdin)."""
    if text_or_file == "-":
        return sys.stdin.read()
    path = Path(text_or_file)
    try:
        if len(text_or_file) < 4096 and path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError:
        pass
    return text_or_file


def output_paths(out: Path, new_indices: list[int]) -> list[Path]:
    """One new image -> OUT itself; several -> OUT_image<k>.png, k the new 1-based image index."""
    if len(new_indices) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_image{k}{out.suffix or '.png'}") for k in new_indices]


def run(args) -> int:
    import numpy as np
    from PIL import Image

    from drawing_ops import ToolCallError, VisualContext, parse_tool_calls

    try:
        image = np.asarray(Image.open(args.image).convert("RGB"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read image {args.image}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    turn = parse_tool_calls(_read_calls(args.calls), num_images=1)
    for err in turn.errors:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
    if turn.errors and not args.keep_going:
        return EXIT_BAD_INPUT
    context = VisualContext([image], backend=args.backend, draw_labels=not args.no_labels)
    try:
        new = context.apply(turn.actions)
    except ToolCallError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k, path in zip(new, output_paths(args.out, new)):
        Image.fromarray(context.images[k - 1]).save(path)
        boxes, lines = context.boxes(k), context.lines(k)
        print(f"image {k}: {len(boxes)} box(es), {len(lines)} line(s) -> {path}")
    return 0
