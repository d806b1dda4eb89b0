"""The RL reward of one trajectory (SPEC §4): accuracy, format, overall and the logged reflection.

Decisions, each where the reference's behaviour and SPEC's wording need reading:

* Format regex, "full match": `re.fullmatch(<think>(.*?)</think>\\s*Action:\\s*(.*?)(?=\\n|$), turn,
  DOTALL)`, exactly as the reference applies it. Under `fullmatch` the lazy groups stretch to the
  end of the turn and the look-ahead always holds there, so in effect a turn must *start* with
  `<think>` (no leading whitespace) and some `</think>` must be followed by optional whitespace and
  `Action:`; anything may follow (the block, the answer).
* Blocks for the format check are read like the reference's format reward: from all assistant
  turns joined with no separator, a block starting after a line whose stripped text is exactly
  ```` ```json ```` and running to the next ```` ``` ```` -- with no cut at `</think>` (the parser's
  `extract_blocks` has that cut; this reader must not), so an unterminated block swallows what
  follows, later turns included, and then fails to parse.
* Each block must read with `ast.literal_eval` (never JSON: `true`/`null` fail) into a list (or a
  tuple, which the reference's iteration also accepts) of dicts, each a box (`bbox_2d` + `label`)
  or a line (`start_point_2d` + `end_point_2d` + `label`); `index` is not required here.
* No assistant turn at all: format 0, accuracy 0. A turn that is not a string breaks the format;
  accuracy still reads the last turn (0 when that is not a string).
* Reflection is the metric the reference *logs* (not the paper's rule, which is
  `drawing_ops.protocol.reflective_labels`): 1 when, with format = 1, some box label appears
  with two different `bbox_2d` (as tuples of floats) anywhere in the trajectory -- the same turn
  counts, lines are ignored, a box without `index` counts. It is not part of the reward.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Sequence

from drawing_ops.protocol import (ANSWER_CLOSE, ANSWER_OPEN, CLOSE_FENCE, KEY_BBOX, KEY_END, KEY_LABEL, KEY_START,
                                  OPEN_FENCE)
from vilasr.eval.metrics import Semantics, accuracy

_TURN_FORMAT = re.compile(r"<think>(.*?)</think>\s*Action:\s*(.*?)(?=\n|$)", re.DOTALL)


def format_blocks(text: str) -> list[str]:
    """Every ```json block of `text` as the format reward reads them: to the next ``` or, when
    unterminated, to the end of the text (no cut at </think>, unlike `drawing_ops.parser`)."""
    lines = text.splitlines()
    return ["\n".join(lines[i + 1:]).split(CLOSE_FENCE, 1)[0]
            for i, line in enumerate(lines) if line.strip() == OPEN_FENCE]


def read_block(block: str) -> list | None:
    """The block's items (a Python literal list or tuple), or None when it does not read as one."""
    try:
        with warnings.catch_warnings():  # odd escapes in model text are not our concern
            warnings.simplefilter("ignore")
            value = ast.literal_eval(block)
    except Exception:  # noqa: BLE001 -- SyntaxError, ValueError, MemoryError, RecursionError, ...
        return None
    return list(value) if isinstance(value, (list, tuple)) else None


def is_box(item) -> bool:
    return isinstance(item, dict) and KEY_BBOX in item and KEY_LABEL in item


def is_line(item) -> bool:
    return isinstance(item, dict) and KEY_START in item and KEY_END in item and KEY_LABEL in item


def turn_format_ok(turn: str, *, last: bool) -> bool:
    """The per-turn part of the format rule: the think/Action shape, and answer tags on (and only
    on) the last turn."""
    if _TURN_FORMAT.fullmatch(turn) is None:
        return False
    has_open, has_close = ANSWER_OPEN in turn, ANSWER_CLOSE in turn
    return (has_open and has_close) if last else not (has_open or has_close)


def format_items(turns: Sequence[str]) -> list | None:
    """Every drawn item of a format-valid trajectory, in order; None when the format is broken."""
    if not turns or not all(isinstance(t, str) for t in turns):
        return None
    if not all(turn_format_ok(t, last=i == len(turns) - 1) for i, t in enumerate(turns)):
        return None
    items = []
    for block in format_blocks("".join(turns)):  # joined like the reference: see the module notes
        block_items = read_block(block)
        if block_items is None or not all(is_box(it) or is_line(it) for it in block_items):
            return None
        items += block_items
    return items


def logged_reflection(items: Sequence) -> bool:
    """Whether some box label is drawn with two different boxes (the reference's logged metric)."""
    boxes_by_label: dict = {}
    for item in items:
        if not is_box(item):
            continue
        try:
            corners = tuple(float(v) for v in item[KEY_BBOX])
            boxes_by_label.setdefault(item[KEY_LABEL], set()).add(corners)
        except (TypeError, ValueError):  # corners that are not numbers, an unhashable label: skipped
            continue
    return any(len(boxes) > 1 for boxes in boxes_by_label.values())


def trajectory_reward(assistant_turns: list[str], answer: str, problem_type: str) -> dict[str, float]:
    """RL reward of a trajectory from its assistant turns' texts (SPEC §4, RL semantics).

    `accuracy` scores the last turn; `format` is 0/1 (module notes); `overall` is
    0.5·accuracy + 0.5·format when accuracy > 0, else accuracy; `reflection` is the logged 0/1
    metric (boxes only, format-valid trajectories only), not part of `overall`. Never raises.
    """
    turns = list(assistant_turns) if isinstance(assistant_turns, (list, tuple)) else []
    items = format_items(turns)
    fmt = float(items is not None)
    acc = accuracy(turns[-1], answer, problem_type, Semantics.RL) if turns else 0.0
    return {
        "overall": 0.5 * acc + 0.5 * fmt if acc > 0 else acc,
        "accuracy": acc,
        "format": fmt,
        "reflection": float(items is not None and logged_reflection(items)),
    }
