"""The table of edge-case turns (SPEC §1 and our choices where it is silent), shared by the pure
`turn_outcome` tests and the rollout tests. Every case is read with 2 images in the context and the
evaluation cap (45).

Columns: the turn's text; the labels drawn and the labels kept undrawn; the source index of each
new image; the finish reason in the default reading and in the strict one (None: the trajectory
goes on). A case whose default reason is None and whose strict reason is None makes the same
images in both readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from drawing_ops import FinishReason as R

NUM_IMAGES = 2
TGE, TE, IE = R.TOOL_GEN_ERROR, R.TOOL_ERROR, R.INDEX_ERROR


def box(index, label, bbox=(5, 5, 40, 40)):
    return {"index": index, "bbox_2d": list(bbox), "label": label}


def line(index, label, start=(5, 5), end=(40, 30)):
    return {"index": index, "start_point_2d": list(start), "end_point_2d": list(end), "label": label}


def no_index(item):
    return {k: v for k, v in item.items() if k != "index"}


def tool_turn(*blocks, action="Object Mapper") -> str:
    """A turn with each block (a Python value, written with repr, or raw text) in its own fence."""
    body = "\n".join(f"```json\n{b if isinstance(b, str) else repr(b)}\n```" for b in blocks)
    return f"<think>I mark it.</think> Action: {action}\n{body}"


@dataclass(frozen=True)
class TurnCase:
    name: str
    text: str
    drawn: tuple[str, ...] = ()
    undrawn: tuple[str, ...] = ()
    new_images: tuple[int, ...] = ()
    reason: R | None = None
    strict: R | None = None


CASES = [
    # -- clean turns: both readings agree
    TurnCase("one box", tool_turn([box(1, "a")]), ("a",), (), (1,)),
    TurnCase("boxes' sources come first", tool_turn([line(2, "p"), box(1, "a")]), ("a", "p"), (), (1, 2)),
    TurnCase("one image per source", tool_turn([box(2, "a"), box(2, "b"), line(2, "p")]), ("a", "b", "p"), (), (2,)),
    TurnCase("python literal: quotes, tuples, trailing commas",
             tool_turn("[{'index': 2, 'bbox_2d': (1, 2, 30, 40,), 'label': 'a',},]"), ("a",), (), (2,)),
    TurnCase("unterminated block is cut at </think>",
             f"<think>\n```json\n{[box(1, 'a')]!r}\n</think> Action: Object Mapper", ("a",), (), (1,)),
    TurnCase("two blocks, two sources", tool_turn([box(2, "a")], [line(1, "p")]), ("a", "p"), (), (2, 1)),
    TurnCase("a box item with line keys too is a box",
             tool_turn([box(1, "a") | {"start_point_2d": [1, 2], "end_point_2d": [3, 4]}]), ("a",), (), (1,)),
    # -- answers and empty turns
    TurnCase("answer beside a block: the answer wins",
             tool_turn([box(1, "a")], action="Answer") + "\n<answer>B</answer>", reason=R.ANSWER, strict=R.ANSWER),
    TurnCase("no block and no answer", "<think>hmm</think> Action: Object Mapper\nI would draw.", reason=TE, strict=TE),
    TurnCase("an empty list", tool_turn([]), reason=TE, strict=TE),
    TurnCase("```JSON is no fence", tool_turn([box(1, "a")]).replace("```json", "```JSON"), reason=TE, strict=TE),
    # -- blocks that do not read
    TurnCase("JSON true is not a Python literal", tool_turn('[{"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "a", '
                                                            '"ok": true}]'), reason=TE, strict=TGE),
    TurnCase("JSON null is not a Python literal", tool_turn('[{"index": null, "bbox_2d": [1, 2, 3, 4], "label": "a"}]'),
             reason=TE, strict=TGE),
    TurnCase("a single object gives no items", tool_turn(box(1, "a")), reason=TE, strict=TGE),
    TurnCase("an unreadable block beside a good one", tool_turn("[{'index': 1,", [box(2, "a")]), ("a",), (), (2,),
             strict=TGE),
    # -- items without their required keys are dropped
    TurnCase("a box without label is dropped", tool_turn([box(1, "a"), {"index": 2, "bbox_2d": [1, 2, 3, 4]}]),
             ("a",), (), (1,), strict=TGE),
    TurnCase("the only item lacks bbox_2d", tool_turn([{"index": 1, "bbox": [1, 2, 3, 4], "label": "a"}]),
             reason=TE, strict=TGE),
    TurnCase("a line without end point is dropped",
             tool_turn([{"index": 1, "start_point_2d": [1, 2], "label": "p"}, box(2, "a")]), ("a",), (), (2,),
             strict=TGE),
    TurnCase("items that are not objects are dropped", tool_turn([1, "box", box(1, "a")]), ("a",), (), (1,),
             strict=TGE),
    # -- a kept item without index ends the trajectory
    TurnCase("missing index on the first grouped item", tool_turn([no_index(box(1, "a")), box(1, "b")]),
             reason=TE, strict=TGE),
    TurnCase("missing index after a grouped item", tool_turn([box(1, "a"), no_index(box(1, "b"))]),
             reason=TGE, strict=TGE),
    TurnCase("boxes are grouped before lines (line first in text)", tool_turn([no_index(line(1, "p")), box(1, "a")]),
             reason=TGE, strict=TGE),
    TurnCase("a box after a line is still grouped first", tool_turn([line(1, "p"), no_index(box(1, "a"))]),
             reason=TE, strict=TGE),
    TurnCase("missing index wins over a far index", tool_turn([box(5, "a"), no_index(box(1, "b"))]),
             reason=TGE, strict=TGE),
    # -- kept but not drawn: the image is still made
    TurnCase("bbox of three numbers", tool_turn([box(1, "a", (1, 2, 3))]), (), ("a",), (1,), strict=TGE),
    TurnCase("bbox with a string", tool_turn([box(1, "good"), box(2, "bad", (1, 2, "x", 4))]), ("good",), ("bad",),
             (1, 2), strict=TGE),
    TurnCase("non-finite coordinate", tool_turn("[{'index': 1, 'bbox_2d': [1, 2, 3, 1e999], 'label': 'a'}]"),
             (), ("a",), (1,), strict=TGE),
    TurnCase("a 400-digit coordinate", tool_turn([box(1, "a", (1, 2, 3, 10 ** 400)), box(1, "b")]), ("b",), ("a",),
             (1,), strict=TGE),
    TurnCase("a line point of three numbers", tool_turn([line(2, "p", (1, 2, 3))]), (), ("p",), (2,), strict=TGE),
    TurnCase("an empty label", tool_turn([box(1, "")]), (), ("",), (1,), strict=TGE),
    # -- indices
    TurnCase("index 0 draws nothing, the rest goes on", tool_turn([box(0, "a"), box(1, "b")]), ("b",), (), (1,),
             strict=TGE),
    TurnCase("only indices <= 0", tool_turn([box(0, "a"), line(-1, "p")]), reason=TE, strict=TGE),
    TurnCase("index past the last image", tool_turn([box(1, "a"), box(3, "b")]), reason=IE, strict=IE),
    TurnCase("a 400-digit index", tool_turn([box(10 ** 400, "a")]), reason=IE, strict=IE),
    TurnCase("a far index beside index 0", tool_turn([box(0, "a"), line(3, "p")]), reason=IE, strict=TGE),
    TurnCase("index '1' (a string)", tool_turn([box("1", "a")]), reason=TGE, strict=TGE),
    TurnCase("index 1.0 (a float)", tool_turn([box(1.0, "a")]), reason=TGE, strict=TGE),
    TurnCase("index True", tool_turn([box(True, "a")]), reason=TGE, strict=TGE),
    TurnCase("a non-integer index wins over a far one", tool_turn([box(3, "a"), box(1.0, "b")]), reason=TGE,
             strict=TGE),
]
