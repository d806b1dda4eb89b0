import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drawing_ops import (Box, Line, ParsedTurn, ToolCallError, ToolFormatError, ToolIndexError,
                         ToolSchemaError, parse_tool_calls)

FENCE = "```"


def turn(block: str, think="I look at the image.", action="Object Mapper") -> str:
    return f"<think>{think}</think> Action: {action}\n{FENCE}json\n{block}\n{FENCE}"


def test_strict_json_box_and_line_in_one_block():
    items = [{"index": 1, "bbox_2d": [10, 20, 30, 40], "label": "chair"},
             {"index": 2, "start_point_2d": [1, 2], "end_point_2d": [3.5, 4], "label": "path"}]
    parsed = parse_tool_calls(turn(json.dumps(items)))
    assert parsed.errors == []
    assert parsed.think == "I look at the image."
    assert parsed.action == "Object Mapper"
    assert parsed.actions == [Box(1, (10, 20, 30, 40), "chair"), Line(2, (1, 2), (3.5, 4), "path")]
    assert parsed.boxes == [parsed.actions[0]] and parsed.lines == [parsed.actions[1]]
    assert parsed.answer is None


def test_python_literal_style_single_quotes_trailing_commas_tuples():
    block = "[{'index': 1, 'bbox_2d': (1, 2, 3, 4,), 'label': 'a',}, {'index': 1, 'bbox_2d': [5, 6, 7, 8], 'label': 'b'},]"
    parsed = parse_tool_calls(turn(block))
    assert parsed.errors == []
    assert [a.label for a in parsed.actions] == ["a", "b"]
    assert parsed.actions[0].bbox_2d == (1, 2, 3, 4)


def test_fence_line_may_be_indented_and_a_bare_object_gives_no_items():
    item = '{"index": 1, "start_point_2d": [0, 0], "end_point_2d": [9, 9], "label": "l"}'
    text = "<think>t</think> Action: Path Tracer\n   ```json   \n" + f"[{item}]\n```"
    assert parse_tool_calls(text).actions == [Line(1, (0, 0), (9, 9), "l")]
    # the reference iterates a bare object's keys, which are no items: nothing is read
    bare = parse_tool_calls(text.replace(f"[{item}]", item))
    assert bare.actions == [] and bare.items == ()
    assert len(bare.errors) == 1 and isinstance(bare.errors[0], ToolSchemaError) and "not a list" in str(bare.errors[0])


@pytest.mark.parametrize("block", ['[{"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "a", "hidden": true}]',
                                   '[{"index": 1, "bbox_2d": [1, 2, 3, 4], "label": null}]',
                                   '[{"index": 1, "bbox_2d": [1, 2, 3, NaN], "label": "a"}]'])
def test_json_that_is_not_a_python_literal_makes_the_block_unreadable(block):
    parsed = parse_tool_calls(turn(block))
    assert parsed.actions == [] and parsed.items == ()
    assert len(parsed.errors) == 1 and isinstance(parsed.errors[0], ToolFormatError)
    assert "not a Python literal" in str(parsed.errors[0])


def test_only_exact_json_fence_opens_a_block():
    parsed = parse_tool_calls('<think>t</think> Action: x\n```JSON\n[{"index":1,"bbox_2d":[1,2,3,4],"label":"a"}]\n```')
    assert parsed.actions == [] and parsed.num_blocks == 0
    assert len(parsed.errors) == 1 and isinstance(parsed.errors[0], ToolFormatError)


def test_unterminated_block_is_cut_at_think_close():
    text = '<think>box it\n```json\n[{"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "a"}]\n</think> Action: Object Mapper'
    parsed = parse_tool_calls(text)
    assert parsed.errors == []
    assert parsed.actions == [Box(1, (1, 2, 3, 4), "a")]


def test_several_blocks_malformed_one_is_reported_and_dropped():
    good = '[{"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "a"}]'
    text = f"<think>t</think> Action: Object Mapper\n```json\n[{{'index': 1, \n```\nmore\n```json\n{good}\n```"
    parsed = parse_tool_calls(text)
    assert parsed.actions == [Box(1, (1, 2, 3, 4), "a")]
    assert len(parsed.errors) == 1 and isinstance(parsed.errors[0], ToolFormatError)
    assert "block 1" in str(parsed.errors[0])


@pytest.mark.parametrize("item, needle", [
    ({"index": 1, "bbox_2d": [1, 2, 3], "label": "a"}, "4 numbers"),
    ({"index": 1, "bbox_2d": [1, 2, 3, "x"], "label": "a"}, "non-number"),
    ({"index": 1, "bbox_2d": [1, 2, 3, True], "label": "a"}, "non-number"),
    ({"index": 1, "bbox_2d": [1, 2, 3, float("inf")], "label": "a"}, "non-finite"),
    ({"index": 1, "bbox_2d": [1, 2, 3, 10 ** 400], "label": "a"}, "too large"),
    ({"index": 1, "bbox_2d": "1,2,3,4", "label": "a"}, "list of 4"),
    ({"index": 0, "bbox_2d": [1, 2, 3, 4], "label": "a"}, "1-based"),
    ({"index": "1", "bbox_2d": [1, 2, 3, 4], "label": "a"}, "integer"),
    ({"index": 1, "bbox_2d": [1, 2, 3, 4], "label": ""}, "label"),
    ({"index": 1, "bbox_2d": [1, 2, 3, 4]}, "missing ['label']"),
    ({"bbox_2d": [1, 2, 3, 4], "label": "a"}, "missing ['index']"),
    ({"index": 1, "start_point_2d": [1, 2], "label": "a"}, "missing ['end_point_2d']"),
    ({"index": 1, "start_point_2d": [1, 2, 3], "end_point_2d": [1, 2], "label": "a"}, "2 numbers"),
    ({"index": 1, "point": [1, 2], "label": "a"}, "neither"),
])
def test_schema_errors_name_the_problem(item, needle):
    parsed = parse_tool_calls(turn(repr([item]).replace("inf", "1e999")))
    assert parsed.actions == []
    assert len(parsed.errors) == 1
    err = parsed.errors[0]
    assert isinstance(err, ToolSchemaError), err
    assert needle in str(err)


def test_non_list_block_and_non_object_items_are_schema_errors():
    assert isinstance(parse_tool_calls(turn("42")).errors[0], ToolSchemaError)
    parsed = parse_tool_calls(turn('[1, {"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "a"}]'))
    assert len(parsed.actions) == 1 and isinstance(parsed.errors[0], ToolSchemaError)


def test_index_out_of_range_with_num_images():
    block = json.dumps([{"index": 3, "bbox_2d": [1, 2, 3, 4], "label": "far"},
                        {"index": 2, "bbox_2d": [1, 2, 3, 4], "label": "near"}])
    parsed = parse_tool_calls(turn(block), num_images=2)
    assert [a.label for a in parsed.actions] == ["near"]
    assert isinstance(parsed.errors[0], ToolIndexError) and "image 3" in str(parsed.errors[0])
    assert parse_tool_calls(turn(block)).errors == []  # without num_images there is no range check


def test_a_400_digit_number_spoils_only_its_own_item():
    good = {"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "good"}
    for bad in ({"index": 1, "bbox_2d": [1, 2, 3, 10 ** 400], "label": "huge"},
                {"index": 10 ** 400, "bbox_2d": [1, 2, 3, 4], "label": "far"},
                {"index": 1, "start_point_2d": [10 ** 400, 0], "end_point_2d": [1, 2], "label": "huge"}):
        parsed = parse_tool_calls(turn(repr([good, bad, good | {"label": "also good"}])), num_images=2)
        assert [a.label for a in parsed.actions] == ["good", "also good"]
        assert len(parsed.errors) == 1 and isinstance(parsed.errors[0], (ToolSchemaError, ToolIndexError))


def test_empty_list_block_says_it_holds_no_items():
    parsed = parse_tool_calls(turn("[]"))
    assert parsed.num_blocks == 1 and "hold no items" in str(parsed.errors[0])


def test_answer_turn():
    parsed = parse_tool_calls("<think>It is left.</think> Action: Answer\n<answer> B </answer>")
    assert parsed.answer == "B"
    assert parsed.action == "Answer"
    assert parsed.errors == [] and parsed.actions == []


def test_no_block_and_no_answer_is_a_format_error():
    parsed = parse_tool_calls("<think>hmm</think> Action: Object Mapper\nI would draw a box.")
    assert isinstance(parsed.errors[0], ToolFormatError)


def test_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    block = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    parsed = parse_tool_calls(turn(block))
    assert not marker.exists()
    assert isinstance(parsed.errors[0], ToolFormatError)


@pytest.mark.parametrize("text", [None, 3, b"```json\n[]\n```", "", "```json", "```json\n" + "[" * 5000,
                                  "```json\n" + "1" * 10000, "```json\n1e999999\n```"])
def test_hostile_inputs_return_typed_errors(text):
    parsed = parse_tool_calls(text)
    assert isinstance(parsed, ParsedTurn)
    assert all(isinstance(e, ToolCallError) for e in parsed.errors)


GOOD_TURNS = [
    turn(json.dumps([{"index": 1, "bbox_2d": [12.5, 40, 200, 310], "label": "red chair"},
                     {"index": 2, "start_point_2d": [5, 9], "end_point_2d": [100, 120], "label": "route"}])),
    turn("[{'index': 1, 'bbox_2d': (0, 0, 10, 10), 'label': 'a',},]"),
    "<think>done</think> Action: Answer\n<answer>A</answer>",
]
MUTATION_ALPHABET = list("[]{}(),:'\"`\n 0123456789.-+eE_abcxyzNaInfTrueFalseNone\\") + [
    "```json\n", "```", "</think>", "<answer>", "NaN", "Infinity", "1e308", "bbox_2d", "index", "label",
    "start_point_2d", "end_point_2d", "\x00", "é", "💥"]


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(text))
        op = rng.random()
        if op < 0.4:
            text = text[:pos] + rng.choice(MUTATION_ALPHABET) + text[pos:]
        elif op < 0.7:
            text = text[:pos] + text[pos + rng.randint(1, 8):]
        elif op < 0.9:
            text = text[:pos] + rng.choice(MUTATION_ALPHABET) + text[pos + 1:]
        else:
            a, b = sorted(rng.sample(range(len(text) + 1), 2)) if len(text) > 1 else (0, 0)
            text = text[:pos] + text[a:b] + text[pos:]
    return text


def check_contract(parsed):
    assert isinstance(parsed, ParsedTurn)
    assert all(isinstance(e, ToolCallError) for e in parsed.errors)
    for act in parsed.actions:
        assert isinstance(act, (Box, Line))
        assert act.index >= 1 and isinstance(act.label, str) and act.label


def test_fuzz_thousands_of_mutated_turns_never_raise_untyped():
    rng = random.Random(1234)
    kinds = set()
    for i in range(6000):
        parsed = parse_tool_calls(mutate(GOOD_TURNS[i % len(GOOD_TURNS)], rng), num_images=rng.randint(1, 3))
        check_contract(parsed)
        kinds.update(type(e).__name__ for e in parsed.errors)
    # the mutations reach every error kind the parser can give
    assert {"ToolFormatError", "ToolSchemaError", "ToolIndexError"} <= kinds


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_returns(text):
    check_contract(parse_tool_calls(text))
    check_contract(parse_tool_calls(f"{FENCE}json\n{text}\n{FENCE}"))
