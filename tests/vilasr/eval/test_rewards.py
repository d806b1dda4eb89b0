"""`trajectory_reward` against a table of trajectories worked out from SPEC §4 (RL semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vilasr.eval.rewards import format_blocks
from vilasr.rewards import trajectory_reward

MC, REG = "multiple choice", "regression"


def box(label="cup", bbox=(10, 20, 30, 40), index=1):
    fields = [f'"index": {index}'] if index is not None else []
    fields += [f'"bbox_2d": {list(bbox)}', f'"label": "{label}"']
    return "{" + ", ".join(fields) + "}"


def line(label="path"):
    return '{"index": 1, "start_point_2d": [1, 2], "end_point_2d": [3, 4], "label": "' + label + '"}'


def tool(*items, think="look", action="Object Mapper"):
    return f"<think>{think}</think> Action: {action}\n```json\n[\n" + ",\n".join(items) + "\n]\n```"


def tool_block(block, think="look"):
    return f"<think>{think}</think> Action: Object Mapper\n```json\n{block}\n```"


def answer(text="B", think="so"):
    return f"<think>{think}</think> Action: Answer\n<answer>{text}</answer>"


# (name, turns, truth, problem_type, accuracy, format, reflection)
TABLE = [
    ("well-formed", [tool(box()), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("answer only", [answer()], "B", MC, 1.0, 1.0, 0.0),
    ("wrong answer", [tool(box()), answer("C")], "B", MC, 0.0, 1.0, 0.0),
    ("lower-case letter is wrong in RL", [answer("b")], "B", MC, 0.0, 1.0, 0.0),
    ("boxes and lines in one block", [tool(box(), line()), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("item without index is fine", [tool(box(index=None)), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("missing think", ["Action: Object Mapper\n```json\n[" + box() + "]\n```", answer()], "B", MC, 1.0, 0.0, 0.0),
    ("leading space before think", [" " + tool(box()), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("no Action after think", ["<think>look</think>\n```json\n[" + box() + "]\n```", answer()], "B", MC, 1.0, 0.0, 0.0),
    ("empty think and action are fine", ["<think></think>Action:", answer()], "B", MC, 1.0, 1.0, 0.0),
    ("answer in a middle turn", [answer(), tool(box()), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("closing tag only in a middle turn", [tool(box()) + "</answer>", answer()], "B", MC, 1.0, 0.0, 0.0),
    ("last turn without answer", [tool(box()), tool(box())], "B", MC, 0.0, 0.0, 0.0),
    ("last turn with unclosed answer", [tool(box()), "<think>so</think> Action: Answer\n<answer>B"],
     "B", MC, 0.0, 0.0, 0.0),
    ("unparsable block", [tool_block("[{'bbox_2d': [1, 2, 3, 4], 'label': 'cup'"), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("JSON true is not a Python literal", [tool_block('[{"bbox_2d": [1, 2, 3, 4], "label": "cup", "ok": true}]'),
                                           answer()], "B", MC, 1.0, 0.0, 0.0),
    ("Python literal True is fine", [tool_block("[{'bbox_2d': [1, 2, 3, 4], 'label': 'cup', 'ok': True}]"),
                                     answer()], "B", MC, 1.0, 1.0, 0.0),
    ("a dict, not a list", [tool_block(box()), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("a number, not a list", [tool_block("3"), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("tuple of items (no brackets)", [tool_block(box() + ", " + box("lamp")), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("empty list", [tool_block("[]"), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("item missing its label", [tool_block('[{"bbox_2d": [1, 2, 3, 4]}]'), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("line missing an end point", [tool_block('[{"start_point_2d": [1, 2], "label": "x"}]'), answer()],
     "B", MC, 1.0, 0.0, 0.0),
    ("item that is not a dict", [tool_block('["bbox_2d label"]'), answer()], "B", MC, 1.0, 0.0, 0.0),
    ("unterminated block swallows the next turn", ["<think>a</think> Action: Object Mapper\n```json\n[" + box() + "]",
                                                   answer()], "B", MC, 1.0, 0.0, 0.0),
    ("block in the answer turn also checked", [answer() + "\n```json\nnot a literal\n```"], "B", MC, 1.0, 0.0, 0.0),
    # reflection: the logged metric (boxes only, same turn counts, needs format = 1)
    ("reflective across turns", [tool(box()), tool(box(bbox=(11, 20, 30, 40))), answer()], "B", MC, 1.0, 1.0, 1.0),
    ("reflective within one turn", [tool(box(), box(bbox=(0, 0, 5, 5))), answer()], "B", MC, 1.0, 1.0, 1.0),
    ("same box again is not reflective", [tool(box()), tool(box(bbox=(10.0, 20, 30, 40))), answer()],
     "B", MC, 1.0, 1.0, 0.0),
    ("other label is not reflective", [tool(box()), tool(box("lamp", (0, 0, 5, 5))), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("redrawn box without index counts", [tool(box()), tool(box(bbox=(1, 2, 3, 4), index=None)), answer()],
     "B", MC, 1.0, 1.0, 1.0),
    ("lines do not count", [tool(line()), tool(line().replace("[3, 4]", "[5, 6]")), answer()], "B", MC, 1.0, 1.0, 0.0),
    ("no reflection without format", [tool(box()), tool(box(bbox=(0, 0, 5, 5))), answer(), answer()],
     "B", MC, 1.0, 0.0, 0.0),
    ("reflective but wrong", [tool(box()), tool(box(bbox=(0, 0, 5, 5))), answer("A")], "B", MC, 0.0, 1.0, 1.0),
    # accuracy from the last turn, RL number reading
    ("regression, first number", [tool(box()), answer("about 11 metres")], "10", REG, 0.9, 1.0, 0.0),
    ("regression, far off", [answer("100")], "10", REG, 0.0, 1.0, 0.0),
    ("no assistant turn", [], "B", MC, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("name, turns, truth, problem_type, acc, fmt, refl", TABLE, ids=[row[0] for row in TABLE])
def test_trajectory_reward_table(name, turns, truth, problem_type, acc, fmt, refl):
    reward = trajectory_reward(turns, truth, problem_type)
    assert set(reward) == {"overall", "accuracy", "format", "reflection"}
    assert reward["accuracy"] == pytest.approx(acc, abs=1e-6)
    assert reward["format"] == fmt
    assert reward["reflection"] == refl
    expected_overall = 0.5 * reward["accuracy"] + 0.5 * fmt if reward["accuracy"] > 0 else reward["accuracy"]
    assert reward["overall"] == expected_overall


def test_overall_formula_values():
    assert trajectory_reward([tool(box()), answer()], "B", MC)["overall"] == 1.0
    assert trajectory_reward([tool(box()), "oops " + answer()], "B", MC)["overall"] == 0.5  # right, bad format
    assert trajectory_reward([tool(box()), answer("C")], "B", MC)["overall"] == 0.0        # wrong, good format
    partial = trajectory_reward([answer("11")], "10", REG)
    assert partial["overall"] == pytest.approx(0.5 * 0.9 + 0.5)


def test_format_blocks_have_no_think_cut():
    text = "<think>a</think> Action: Object Mapper\n```json\n[1]\n</think> more"
    assert format_blocks(text) == ["[1]\n</think> more"]
    assert format_blocks("```json\n[1]\n```\n  ```json  \n[2]```") == ["[1]\n", "[2]"]


@settings(max_examples=200, deadline=None)
@given(turns=st.lists(st.text(), max_size=4), truth=st.text(max_size=5),
       problem_type=st.sampled_from([MC, REG, "numerical", "vci", "x"]))
def test_garbage_never_raises(turns, truth, problem_type):
    reward = trajectory_reward(turns, truth, problem_type)
    assert all(0.0 <= value <= 1.0 for value in reward.values())


@pytest.mark.parametrize("turns", [None, "a string", [None], [answer(), 3]])
def test_non_list_or_non_string_turns(turns):
    assert trajectory_reward(turns, "B", MC) == {"overall": 0.0, "accuracy": 0.0, "format": 0.0, "reflection": 0.0}


def test_a_non_string_middle_turn_breaks_only_the_format():
    assert trajectory_reward([3, answer()], "B", MC) == {"overall": 0.5, "accuracy": 1.0, "format": 0.0,
                                                         "reflection": 0.0}
