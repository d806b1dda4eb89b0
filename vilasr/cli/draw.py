"""`vilasr draw`: apply the tool calls of one model turn to an image and write the new image(s)."""

from __future__ import annotations

from pathlib import Path

from drawing_ops.render import BACKENDS
from vilasr.cli.flags import HelpFormatter


def add_parser(sub) -> None:
    draw = sub.add_parser("draw", help="apply the tool calls of one model turn to an image",
                          description="Apply the tool calls of one model turn (a file holding the turn's text, "
                                      "with a ```json block of boxes and/or lines) to an image and write the "
                                      "drawn image(s) as PNG.",
                          formatter_class=HelpFormatter)
    draw.add_argument("image", type=Path, help="the input image (image 1), e.g. examples/room.png")
    draw.add_argument("--calls", required=True, metavar="FILE",
                      help="file holding the model's turn, e.g. examples/turn.txt; '-' reads standard input")
    draw.add_argument("--out", type=Path, required=True,
                      help="output PNG; a turn that draws on several images writes OUT_image<k>.png")
    draw.add_argument("--backend", choices=BACKENDS, default="numpy", help="drawing backend")
    draw.add_argument("--no-labels", action="store_true", help="do not draw box labels")
    draw.add_argument("--keep-going", action="store_true", help="draw the valid items even if some are bad")
    draw.add_argument("--overwrite", action="store_true", help="replace existing output files")
    draw.set_defaults(func=run)


def output_paths(out: Path, new_indices: list[int]) -> list[Path]:
    """One new image -> OUT itself; several -> OUT_image<k>.png, k the new 1-based image index."""
    if len(new_indices) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_image{k}{out.suffix}") for k in new_indices]


def _nothing_to_draw(text: str, source: str, turn) -> str | None:
    """Why a turn without errors draws nothing, in the command line's words (None if it draws)."""
    if turn.actions:
        return None
    if turn.answer is not None:
        return f"the turn in {source} is a final answer ({turn.answer!r}); there is nothing to draw"
    return f"the tool-call block in {source} holds no items; there is nothing to draw"


def _bare_json(text: str) -> bool:
    return text.lstrip().startswith(("[", "{"))


def _only_empty_blocks(text: str) -> bool:
    from drawing_ops.parser import extract_blocks

    blocks = extract_blocks(text)
    return bool(blocks) and all(b.strip() in ("[]", "()") for b in blocks)


def run(args) -> int:
    import sys

    from drawing_ops import VisualContext, parse_tool_calls
    from vilasr.cli.inputs import read_image, read_text
    from vilasr.cli.outputs import check_png_target, write_png
    from vilasr.errors import InputError

    text = read_text(args.calls)
    source = "standard input" if args.calls == "-" else args.calls
    if not text.strip():
        raise InputError(f"{source} is empty; it should hold the model's turn, as in examples/turn.txt")
    image = read_image(args.image)
    check_png_target(args.out, overwrite=args.overwrite, inputs=[args.image])
    turn = parse_tool_calls(text, num_images=1)
    if turn.errors and not turn.actions and _bare_json(text):
        raise InputError(f"{source} holds bare JSON, not a model turn: put the list in a ```json fenced block "
                         "after the turn's <think>...</think> Action: line, as in examples/turn.txt")
    if not turn.actions and _only_empty_blocks(text):
        raise InputError(f"the ```json block in {source} is an empty list; there is nothing to draw")
    if turn.errors and not (args.keep_going and turn.actions):
        if len(turn.errors) == 1:
            raise turn.errors[0]  # printed by main as one line
        for err in turn.errors:
            print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        more = "; or pass --keep-going to draw the valid ones" if turn.actions else ""
        raise InputError(f"{len(turn.errors)} bad item(s) in {source}: fix them{more}")
    for err in turn.errors:
        print(f"skipped: {type(err).__name__}: {err}", file=sys.stderr)
    empty = _nothing_to_draw(text, source, turn)
    if empty:
        raise InputError(empty)
    context = VisualContext([image], backend=args.backend, draw_labels=not args.no_labels)
    new = context.apply(turn.actions)
    paths = output_paths(args.out, new)
    if len(paths) > 1:  # the names are known only now
        for path in paths:
            check_png_target(path, overwrite=args.overwrite, inputs=[args.image])
    for k, path in zip(new, paths):
        write_png(context.images[k - 1], path)
        boxes, lines = context.boxes(k), context.lines(k)
        print(f"image {k}: {len(boxes)} box(es), {len(lines)} line(s) -> {path}")
    return 0
