"""Parse one assistant turn of the ViLaSR protocol into thoughts, drawing items and an answer.

Block rules (SPEC §1, as the reference reads them): a block starts after any line whose stripped
text is exactly ```json and runs to the next ``` (anywhere after it); a block with no closing
fence is cut at </think>. A block is read as a Python literal only (`ast.literal_eval`, never
`eval`): JSON that is not also a Python literal (`true`, `null`, `NaN`) makes the block unreadable,
and a block must hold a list -- a single object yields no items, as in the reference.

Each item of a block is sorted the way the reference sorts it: a *box* when it has `bbox_2d` and
`label`, else a *line* when it has `start_point_2d`, `end_point_2d` and `label`; anything else is
dropped. Boxes and lines are kept as `ToolItem`s whatever their values are (`drawing_ops.turn`
decides what a kept item with a missing index or unusable values does to the trajectory).

`parse_tool_calls` returns on any string whatsoever, in time linear in its length; every problem
is a `ToolCallError` in `ParsedTurn.errors` (and, with its place, in `ParsedTurn.dropped` or on
the `ToolItem`), never a raised exception.
"""

from __future__ import annotations

import ast
import enum
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drawing_ops.actions import Action, Box, Line
from drawing_ops.errors import ToolCallError, ToolFormatError, ToolIndexError, ToolSchemaError
from drawing_ops.protocol import (ANSWER_CLOSE, ANSWER_OPEN, CLOSE_FENCE, KEY_BBOX, KEY_END, KEY_INDEX, KEY_LABEL,
                                  KEY_START, OPEN_FENCE, THINK_CLOSE, THINK_OPEN, SHAREGPT_ROLES, Role,
                                  reflective_labels)

ACTION_PREFIX = "Action:"
_EXAMPLE = "[{'index': 1, 'bbox_2d': [x1, y1, x2, y2], 'label': 'name'}]"


class ItemKind(str, enum.Enum):
    """What a kept block item is, by its keys."""

    BOX = "box"
    LINE = "line"

    def __str__(self) -> str:
        return self.value


class _Missing:
    """The value of a key an item does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class ToolItem:
    """A kept item (a box or a line by its keys), with its place and its index and label as written.

    `action` is the drawable Box/Line when the index is a positive integer and every other value
    is usable; otherwise None and `problem` says what is wrong. `values_ok` says whether the
    coordinates and label are usable, whatever the index. `index` is MISSING when absent."""

    block: int          # 1-based block number within the turn
    position: int       # 0-based position within the block
    kind: ItemKind
    index: Any
    label: Any = None
    action: Action | None = None
    problem: ToolSchemaError | None = None
    values_ok: bool = True

    @property
    def has_int_index(self) -> bool:
        return isinstance(self.index, int) and not isinstance(self.index, bool)


@dataclass(frozen=True)
class Dropped:
    """Something of a turn that was not used, and why: a whole block (`position` None) or one item."""

    block: int | None   # None: the turn as a whole (e.g. no block and no answer)
    position: int | None
    error: ToolCallError


@dataclass(frozen=True)
class ParsedTurn:
    """What one assistant turn says: its thinking, the tool named, the drawing actions, the answer.

    `actions` are the kept items that can be drawn (with `num_images`, on an existing image);
    `errors` lists every problem seen, in text order; `items` all kept items; `dropped` the
    unreadable blocks and the items that are neither a box nor a line."""

    think: str | None
    action: str | None
    actions: list[Action] = field(default_factory=list)
    answer: str | None = None
    errors: list[ToolCallError] = field(default_factory=list)
    num_blocks: int = 0
    items: tuple[ToolItem, ...] = ()
    dropped: tuple[Dropped, ...] = ()

    @property
    def boxes(self) -> list[Box]:
        return [a for a in self.actions if isinstance(a, Box)]

    @property
    def lines(self) -> list[Line]:
        return [a for a in self.actions if isinstance(a, Line)]


def extract_blocks(text: str) -> list[str]:
    """The raw text of every fenced ```json block, in order (SPEC §1 rules). Linear in the text:
    a block ends at the first ``` after its fence line, and any later fence line holds a ```, so
    blocks never overlap; only a last, unterminated block runs on (to </think> or the end)."""
    blocks = []
    offset = 0
    for line in text.splitlines(keepends=True):
        offset += len(line)
        if line.strip() != OPEN_FENCE:
            continue
        close = text.find(CLOSE_FENCE, offset)
        if close >= 0:
            body = text[offset:close]
        else:
            cut = text.find(THINK_CLOSE, offset)
            body = text[offset:cut if cut >= 0 else len(text)].strip()
        blocks.append("\n".join(body.splitlines()))  # any line break reads as "\n"
    return blocks


def read_literal(block: str):
    """A block's value as a Python literal; raises ToolFormatError when it does not read as one."""
    try:
        with warnings.catch_warnings():  # odd escapes in model text are not the user's concern
            warnings.simplefilter("ignore")
            return ast.literal_eval(block.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, OverflowError) as exc:
        reason = type(exc).__name__
    raise ToolFormatError(f"the ```json block is not a Python literal ({reason}; JSON's true/false/null "
                          f"are not: write True/False/None or leave them out); write a list like {_EXAMPLE}")


def item_kind(item) -> ItemKind | None:
    """BOX (has bbox_2d and label), LINE (has both points and label), or None (dropped)."""
    if not isinstance(item, dict):
        return None
    if KEY_BBOX in item and KEY_LABEL in item:
        return ItemKind.BOX
    if KEY_START in item and KEY_END in item and KEY_LABEL in item:
        return ItemKind.LINE
    return None


def _why_dropped(item) -> ToolSchemaError:
    if not isinstance(item, dict):
        return ToolSchemaError(f"each item must be an object with keys, got {type(item).__name__}: {_short(item)}")
    if KEY_BBOX in item:
        return ToolSchemaError(f"Box item is missing ['{KEY_LABEL}']: {_short(item)}")
    if KEY_START in item or KEY_END in item:
        missing = sorted({KEY_START, KEY_END, KEY_LABEL} - set(item))
        return ToolSchemaError(f"Line item is missing {missing}: {_short(item)}")
    return ToolSchemaError(f"item has neither 'bbox_2d' nor 'start_point_2d'/'end_point_2d' (with 'label'): "
                           f"{_short(item)}")


def _short(value, limit: int = 120) -> str:
    """A bounded repr (a huge item costs no more than its size; an int too long to print is named)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def read_item(item: dict, kind: ItemKind, block: int, position: int) -> ToolItem:
    """A kept item: its index as written, and its Box/Line when every value is usable."""
    index, label = item.get(KEY_INDEX, MISSING), item[KEY_LABEL]
    cls = Box if kind is ItemKind.BOX else Line
    values = ({"bbox_2d": item[KEY_BBOX]} if kind is ItemKind.BOX
              else {"start_point_2d": item[KEY_START], "end_point_2d": item[KEY_END]})
    try:  # the values, checked with a stand-in index so that an index problem cannot hide them
        cls(index=1, label=label, **values)
    except ToolSchemaError as exc:
        return ToolItem(block, position, kind, index, label, problem=exc, values_ok=False)
    if index is MISSING:
        problem = ToolSchemaError(f"{cls.__name__} item is missing ['{KEY_INDEX}']: {_short(item)}")
    elif isinstance(index, bool) or not isinstance(index, int):
        problem = ToolSchemaError(f"index must be an integer (1-based image index), got {_short(index, 40)}")
    elif index < 1:
        problem = ToolSchemaError(f"index is 1-based and must be >= 1, got {index}")
    else:
        return ToolItem(block, position, kind, index, label, action=cls(index=index, label=label, **values))
    return ToolItem(block, position, kind, index, label, problem=problem)


def _find_between(text: str, open_tag: str, close_tag: str, start: int = 0) -> tuple[str, int] | None:
    """(text between the first `open_tag` and the next `close_tag`, end of the close tag), or None.
    (If the first opening tag has no closing tag after it, no later one has.)"""
    i = text.find(open_tag, start)
    if i < 0:
        return None
    j = text.find(close_tag, i + len(open_tag))
    if j < 0:
        return None
    return text[i + len(open_tag):j], j + len(close_tag)


def _action_line(text: str) -> str | None:
    """What follows the first `Action:` up to the end of its line, spaces and tabs trimmed."""
    i = text.find(ACTION_PREFIX)
    if i < 0:
        return None
    j = text.find("\n", i)
    return text[i + len(ACTION_PREFIX):j if j >= 0 else len(text)].strip(" \t")


def _action_name(raw: str) -> str:
    """The tool name after `Action:`, without an answer or a fence written on the same line."""
    return raw.split(ANSWER_OPEN, 1)[0].split(CLOSE_FENCE, 1)[0].strip()


def parse_tool_calls(text, num_images: int | None = None) -> ParsedTurn:
    """Parse one assistant turn. With `num_images`, items addressing a missing image are left out
    of `actions` with a ToolIndexError. Never raises."""
    try:
        return _parse(text, num_images)
    except Exception as exc:  # noqa: BLE001 -- the contract is "never raises"; keep the reason
        error = ToolFormatError(f"unreadable turn ({exc!r:.200})")
        return ParsedTurn(think=None, action=None, errors=[error], dropped=(Dropped(None, None, error),))


def _parse(text, num_images: int | None) -> ParsedTurn:
    if not isinstance(text, str):
        error = ToolFormatError(f"a turn must be a string, got {type(text).__name__}")
        return ParsedTurn(think=None, action=None, errors=[error], dropped=(Dropped(None, None, error),))
    think = _find_between(text, THINK_OPEN, THINK_CLOSE)
    action = _action_line(text[think[1]:] if think else text)
    answer = _find_between(text, ANSWER_OPEN, ANSWER_CLOSE)
    items: list[ToolItem] = []
    dropped: list[Dropped] = []
    actions: list[Action] = []
    errors: list[ToolCallError] = []
    blocks = extract_blocks(text)
    for n, block in enumerate(blocks, start=1):
        try:
            value = read_literal(block)
        except ToolFormatError as exc:
            dropped.append(Dropped(n, None, ToolFormatError(f"block {n}: {exc}")))
            errors.append(dropped[-1].error)
            continue
        if not isinstance(value, (list, tuple)):
            dropped.append(Dropped(n, None, ToolSchemaError(
                f"block {n} holds a {type(value).__name__}, not a list, so it gives no items; "
                f"write a list like {_EXAMPLE}")))
            errors.append(dropped[-1].error)
            continue
        for k, raw in enumerate(value):
            kind = item_kind(raw)
            if kind is None:
                dropped.append(Dropped(n, k, ToolSchemaError(f"block {n}: {_why_dropped(raw)}")))
                errors.append(dropped[-1].error)
                continue
            item = read_item(raw, kind, n, k)
            items.append(item)
            act = item.action
            if act is None:
                errors.append(ToolSchemaError(f"block {n}: {item.problem}"))
            elif num_images is not None and act.index > num_images:
                errors.append(ToolIndexError(
                    f"block {n}: '{act.label}' addresses image {act.index}, but only images 1..{num_images} exist"))
            else:
                actions.append(act)
    if answer is None and not items and not errors:
        error = ToolFormatError(
            (f"the ```json block(s) hold no items; list at least one, like {_EXAMPLE}" if blocks else
             "no ```json tool-call block and no <answer>; draw with a fenced ```json block holding a list "
             "of items, or give the final <answer>...</answer>"))
        dropped.append(Dropped(None, None, error))
        errors.append(error)
    return ParsedTurn(
        think=think[0].strip() if think else None,
        action=_action_name(action) if action is not None else None,
        actions=actions,
        answer=answer[0].strip() if answer else None,
        errors=errors,
        num_blocks=len(blocks),
        items=tuple(items),
        dropped=tuple(dropped),
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
