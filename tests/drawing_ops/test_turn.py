"""drawing_ops.turn_outcome: the reference's tolerance for bad tool calls and the image cap, over the
table of edge-case turns in tests/turn_cases.py, in the default and the strict reading."""

from __future__ import annotations

import numpy as np
import pytest
from turn_cases import CASES, NUM_IMAGES, box, line, tool_turn

from drawing_ops import (Box, FinishReason, ToolCallError, ToolFormatError, ToolSchemaError, TurnOutcome,
                         VisualContext, parse_tool_calls, turn_outcome)


def test_the_table_has_at_least_twenty_cases_with_unique_names():
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_default_reading(case):
    out = turn_outcome(case.text, NUM_IMAGES)
    assert out.finish_reason == case.reason
    assert out.new_images == case.new_images
    if case.reason is None:
        assert tuple(a.label for a in out.actions) == case.drawn
        assert tuple(i.label for i in out.undrawn) == case.undrawn
    else:
        assert out.actions == () and out.undrawn == ()
    assert all(isinstance(d.error, ToolCallError) for d in out.dropped)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_strict_reading(case):
    out = turn_outcome(case.text, NUM_IMAGES, strict=True)
    assert out.finish_reason == case.strict
    if case.strict is None:  # a clean turn: the same images as the default reading
        assert out == turn_outcome(case.text, NUM_IMAGES)
        assert out.dropped == () and out.undrawn == ()
    else:
        assert out.new_images == ()


def test_dropped_items_say_where_and_why():
    text = tool_turn([box(1, "a"), {"index": 1, "bbox_2d": [1, 2, 3, 4]}, box(0, "z")], "[{'index': 1,")
    out = turn_outcome(text, NUM_IMAGES)
    assert out.finish_reason is None and out.new_images == (1,)
    where = sorted((d.block, d.position, type(d.error)) for d in out.dropped)
    assert where == [(1, 1, ToolSchemaError), (1, 2, ToolSchemaError), (2, None, ToolFormatError)]
    assert out.num_dropped == 3
    # the parser reports every one of them too, so a user can count what was dropped
    assert len(parse_tool_calls(text, num_images=NUM_IMAGES).errors) == 3


@pytest.mark.parametrize("num_images, sources, kept, reason", [
    (42, [1, 2, 3], (1, 2, 3), None),          # ends exactly at the cap: all kept
    (43, [1, 2, 3], (1, 2), None),             # crosses it: new images up to the cap, the rest dropped
    (44, [2, 1], (2,), None),
    (45, [1], (), FinishReason.TOO_MANY_IMAGES),  # at the cap: no room for any new image
    (46, [1], (), FinishReason.TOO_MANY_IMAGES),
])
def test_image_cap_edge(num_images, sources, kept, reason):
    text = tool_turn([box(s, f"b{s}") for s in sources])
    out = turn_outcome(text, num_images, max_images=45)
    assert out.finish_reason == reason and out.new_images == kept
    if reason is None:
        assert out.over_cap == tuple(sources[len(kept):])
        assert {a.index for a in out.actions} == set(kept)  # items on cut sources are not drawn


def test_an_answer_ends_the_turn_even_at_the_cap():
    assert turn_outcome("<think>x</think> Action: Answer\n<answer>A</answer>", 50).finish_reason == "answer"


def test_a_context_draws_what_the_outcome_says_undrawn_items_included():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(NUM_IMAGES)]
    ctx = VisualContext(images)
    out = turn_outcome(tool_turn([box(1, "a"), box(2, "bad", (1, 2, 3)), line(1, "p")]), len(ctx))
    assert out.new_images == (1, 2)
    assert ctx.apply_outcome(out) == [3, 4]
    assert ctx.boxes(3) == (Box(1, (5, 5, 40, 40), "a"),) and [x.label for x in ctx.lines(3)] == ["p"]
    # image 4 is a copy of image 2 with its (empty) sets redrawn: the undrawn box made it
    assert ctx.boxes(4) == () and np.array_equal(ctx.images[3], images[1])
    with pytest.raises(ValueError, match="ended the trajectory"):
        ctx.apply_outcome(turn_outcome(tool_turn([box(9, "far")]), len(ctx)))


def test_outcome_is_a_value():
    out = turn_outcome(tool_turn([box(1, "a")]), NUM_IMAGES)
    assert isinstance(out, TurnOutcome) and out.answer is None and out.parsed.action == "Object Mapper"
