"""Parse one assistant turn of the ViLaSR protocol into thoughts, drawing actions and an answer.

Block rules (SPEC §1, as the reference reads them): a block starts after any line whose stripped
text is exactly ```json and runs to the next ``` (anywhere after it); a block with no closing
fence is cut at </think>. Each block holds a list of items, read as strict JSON first and then as
a Python literal (single quotes, trailing commas, tuples) -- never with `eval`. A bare object is
taken as a one-item list. Malformed blocks and items are reported and skipped; the good ones are
kept, in order.

`parse_tool_calls` returns on any string whatsoever; every problem is a `ToolCallError` in
`ParsedTurn.errors`, never a raised exception.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drawing_ops.actions import Action, Box, Line
from drawing_ops.errors import ToolCallError, ToolFormatError, ToolIndexError, ToolSchemaError
from drawing_ops.protocol import (ANSWER_CLOSE, ANSWER_OPEN, BOX_KEYS, CLOSE_FENCE, KEY_BBOX, KEY_END, KEY_START,
                                  LINE_KEYS, OPEN_FENCE, THINK_CLOSE, THINK_OPEN, SHAREGPT_ROLES, Role,
                                  reflective_labels)

_THINK = re.compile(re.escape(THINK_OPEN) + "(.*?)" + re.escape(THINK_CLOSE), re.DOTALL)
_ACTION = re.compile(r"Action:[ \t]*(.*?)[ \t]*(?=\n|$)")
_ANSWER = re.compile(re.escape(ANSWER_OPEN) + "(.*?)" + re.escape(ANSWER_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class ParsedTurn:
    """What one assistant turn says: its thinking, the tool named, the drawing actions, the answer."""

    think: str | None
    action: str | None
    actions: list[Action] = field(default_factory=list)
    answer: str | None = None
    errors: list[ToolCallError] = field(default_factory=list)
    num_blocks: int = 0

    @property
    def boxes(self) -> list[Box]:
        return [a for a in self.actions if isinstance(a, Box)]

    @property
    def lines(self) -> list[Line]:
        return [a for a in self.actions if isinstance(a, Line)]


def extract_blocks(text: str) -> list[str]:
    """The raw text of every fenced ```json block, in order (SPEC §1 rules)."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != OPEN_FENCE:
            continue
        rest = "\n".join(lines[i + 1 :])
        if CLOSE_FENCE in rest:
            blocks.append(rest.split(CLOSE_FENCE, 1)[0])
        else:
            blocks.append(rest.split(THINK_CLOSE, 1)[0].strip())
    return blocks


def read_literal(block: str):
    """Strict JSON, else a Python literal; raises ToolFormatError when neither reads."""
    try:
        return json.loads(block)
    except (ValueError, RecursionError):
        pass
    try:
        with warnings.catch_warnings():  # odd escapes in model text are not the user's concern
            warnings.simplefilter("ignore")
            return ast.literal_eval(block.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, OverflowError) as exc:
        reason = type(exc).__name__
    raise ToolFormatError(f"the ```json block is neither JSON nor a Python literal ({reason}); "
                          "write a list of objects like [{\"index\": 1, \"bbox_2d\": [x1, y1, x2, y2], "
                          "\"label\": \"name\"}]")


def item_to_action(item) -> Action:
    """One block item -> Box or Line; ToolSchemaError names what is wrong with it."""
    if not isinstance(item, dict):
        raise ToolSchemaError(f"each item must be an object with keys, got {type(item).__name__}: {item!r:.80}")
    keys = set(item)
    if KEY_BBOX in keys:
        kind, required = Box, BOX_KEYS
    elif KEY_START in keys or KEY_END in keys:
        kind, required = Line, LINE_KEYS
    else:
        raise ToolSchemaError(f"item has neither 'bbox_2d' nor 'start_point_2d'/'end_point_2d': {item!r:.120}")
    missing = sorted(required - keys)
    if missing:
        raise ToolSchemaError(f"{kind.__name__} item is missing {missing}: {item!r:.120}")
    return kind(**{k: item[k] for k in required})


def _action_name(raw: str) -> str:
    """The tool name after `Action:`, without an answer or a fence written on the same line."""
    return raw.split(ANSWER_OPEN, 1)[0].split(CLOSE_FENCE, 1)[0].strip()


def parse_tool_calls(text, num_images: int | None = None) -> ParsedTurn:
    """Parse one assistant turn. With `num_images`, items addressing a missing image are
    dropped with a ToolIndexError. Never raises."""
    try:
        return _parse(text, num_images)
    except Exception as exc:  # noqa: BLE001 -- the contract is "never raises"; keep the reason
        return ParsedTurn(think=None, action=None, errors=[ToolFormatError(f"unreadable turn ({exc!r:.200})")])


def _parse(text, num_images: int | None) -> ParsedTurn:
    if not isinstance(text, str):
        return ParsedTurn(think=None, action=None,
                          errors=[ToolFormatError(f"a turn must be a string, got {type(text).__name__}")])
    think = _THINK.search(text)
    after_think = text[think.end():] if think else text
    action = _ACTION.search(after_think)
    answer = _ANSWER.search(text)
    actions: list[Action] = []
    errors: list[ToolCallError] = []
    blocks = extract_blocks(text)
    for n, block in enumerate(blocks, start=1):
        try:
            value = read_literal(block)
        except ToolFormatError as exc:
            errors.append(ToolFormatError(f"block {n}: {exc}"))
            continue
        items = [value] if isinstance(value, dict) else value
        if not isinstance(items, (list, tuple)):
            errors.append(ToolSchemaError(f"block {n} must hold a list of objects, got {type(value).__name__}"))
            continue
        for item in items:
            try:
                act = item_to_action(item)
            except ToolSchemaError as exc:
                errors.append(ToolSchemaError(f"block {n}: {exc}"))
                continue
            if num_images is not None and act.index > num_images:
                errors.append(ToolIndexError(
                    f"block {n}: '{act.label}' addresses image {act.index}, but only images 1..{num_images} exist"))
                continue
            actions.append(act)
    if answer is None and not actions and not errors:
        errors.append(ToolFormatError("no ```json tool-call block and no <answer>; draw with a fenced "
                                      "```json block or give the final <answer>...</answer>"))
    return ParsedTurn(
        think=think.group(1).strip() if think else None,
        action=_action_name(action.group(1)) if action else None,
        actions=actions,
        answer=answer.group(1).strip() if answer else None,
        errors=errors,
        num_blocks=len(blocks),
    )


# -- whole trajectories ----------------------------------------------------------------------------
def assistant_turns(conversation: Iterable[Mapping]) -> list[str]:
    """The texts of a conversation's assistant turns, in order ({"role", "content"} messages or
    sharegpt {"from", "value"} turns)."""
    turns = []
    for message in conversation:
        if SHAREGPT_ROLES.get(message.get("role", message.get("from"))) is Role.ASSISTANT:
            turns.append(message.get("content", message.get("value", "")))
    return turns


def trajectory_reflective_labels(turns: Sequence[str], *, boxes_only: bool = False) -> set[str]:
    """Labels a trajectory redraws with other parameters in a later turn (protocol.reflective_labels
    over each assistant turn's valid drawing items)."""
    return reflective_labels([parse_tool_calls(t).actions for t in turns], boxes_only=boxes_only)


def is_reflective(turns: Sequence[str], *, boxes_only: bool = False) -> bool:
    """Whether the trajectory (its assistant turns' texts) reflects: see trajectory_reflective_labels."""
    return bool(trajectory_reflective_labels(turns, boxes_only=boxes_only))


def final_answer(turns: Sequence[str]) -> str | None:
    """The answer of the last assistant turn, or None."""
    return parse_tool_calls(turns[-1]).answer if turns else None
