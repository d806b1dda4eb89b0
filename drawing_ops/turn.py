"""What one model turn does to a trajectory: `turn_outcome(text, num_images)`, a pure function.

It applies the reference's tolerance for bad tool calls (SPEC §1) and the image cap (SPEC §3) to
the items `parse_tool_calls` read, and says whether the trajectory ends (`finish_reason`), which
images the turn makes (`new_images`: the source index of each, in the order they get their new
indices), what is drawn on them (`actions`), which kept items make their image but are not drawn
(`undrawn`), and what was left out and why (`dropped`, `over_cap`).

Rules, in the order they are applied (default reading):

1. The turn holds `<answer>...</answer>`: it ends as "answer", whatever else it holds (the reference
   looks for the answer before it reads any block).
2. Items are taken boxes first, then lines (each in text order), as the reference groups them.
   The first kept item without `index` ends the trajectory: "ToolError" when it is the first item
   in that order, else "ToolGenError" (the reference's empty-turn check overwrites the reason
   when nothing was grouped before the failure).
3. No kept item at all (no block, unreadable blocks, a bare object, only items that are neither a
   box nor a line): "ToolError".
4. The context already holds `max_images` images or more: "TooManyImages" (no room for a new one).
5. A kept item whose `index` is not an integer ("1", 1.0, True, None): "ToolGenError". [our choice]
6. A kept item whose `index` is past the last image: "IndexError" (in evaluation too: the
   reference's evaluator re-samples such a turn silently; we end it as RL does).
7. Items with `index` <= 0 draw nothing and make no image (dropped). If no source is left:
   "ToolError".
8. Otherwise each distinct source makes one new image, boxes' sources first, in order of first
   appearance. A kept box whose `bbox_2d` is not four finite numbers (or a kept line whose points
   are not two finite numbers, or an item whose label is not a non-empty string [our choice for
   lines and labels]) is kept undrawn: it still makes its source's image. A turn that would cross
   the cap keeps its new images up to `max_images` and drops the rest (`over_cap`); the
   trajectory goes on, and the feedback tells the model that tools are over.

`strict=True` reads the turn the stricter way: after rule 1, anything dropped or kept undrawn
(an unreadable block, a block that is not a list, an item that is neither a box nor a line, a
missing, non-integer or non-positive index, unusable values) ends the trajectory as
"ToolGenError"; then the rules above apply.

The table of cases (default / strict), with 2 images in the context and a cap of 45, is
tests/turn_cases.py (run through this function and through the rollout); docs/protocol.md has
the rules in prose.
"""

from __future__ import annotations

from dataclasses import dataclass

from drawing_ops.actions import Action
from drawing_ops.parser import MISSING, Dropped, ItemKind, ParsedTurn, ToolItem, parse_tool_calls
from drawing_ops.protocol import DEFAULT_MAX_IMAGES, FinishReason


@dataclass(frozen=True)
class TurnOutcome:
    """What one turn does: see the module docstring. `finish_reason` None: the trajectory goes on
    and the turn makes `new_images` (never empty then)."""

    finish_reason: FinishReason | None
    new_images: tuple[int, ...] = ()
    actions: tuple[Action, ...] = ()
    undrawn: tuple[ToolItem, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    over_cap: tuple[int, ...] = ()
    parsed: ParsedTurn | None = None

    @property
    def answer(self) -> str | None:
        return self.parsed.answer if self.parsed is not None else None

    @property
    def num_dropped(self) -> int:
        """Items and blocks left out (dropped), plus items kept without being drawn."""
        return len(self.dropped) + len(self.undrawn)


def grouping_order(items) -> list[ToolItem]:
    """Kept items in the order the reference groups them: every box, then every line."""
    return [i for i in items if i.kind is ItemKind.BOX] + [i for i in items if i.kind is ItemKind.LINE]


def turn_outcome(text: str, num_images: int, *, max_images: int = DEFAULT_MAX_IMAGES,
                 strict: bool = False) -> TurnOutcome:
    """Decide what one assistant turn does to a trajectory whose context holds `num_images` images
    (inputs included), under an image cap of `max_images`. Pure; never raises on any text."""
    parsed = parse_tool_calls(text)
    ordered = grouping_order(parsed.items)
    dropped = [d for d in parsed.dropped if d.block is not None]

    def end(reason: FinishReason, extra: tuple[Dropped, ...] = ()) -> TurnOutcome:
        return TurnOutcome(reason, dropped=tuple(dropped) + extra, parsed=parsed)

    if parsed.answer is not None:
        return end(FinishReason.ANSWER)
    if strict:
        bad = [Dropped(i.block, i.position, i.problem) for i in ordered if i.problem is not None]
        if dropped or bad:
            return end(FinishReason.TOOL_GEN_ERROR, tuple(bad))
    for n, item in enumerate(ordered):
        if item.index is MISSING:
            return end(FinishReason.TOOL_GEN_ERROR if n else FinishReason.TOOL_ERROR,
                       (Dropped(item.block, item.position, item.problem),))
    if not ordered:
        return end(FinishReason.TOOL_ERROR, tuple(d for d in parsed.dropped if d.block is None))
    if num_images >= max_images:
        return end(FinishReason.TOO_MANY_IMAGES)
    if any(not i.has_int_index for i in ordered):
        return end(FinishReason.TOOL_GEN_ERROR)
    if any(i.index > num_images for i in ordered):
        return end(FinishReason.INDEX_ERROR)
    dropped += [Dropped(i.block, i.position, i.problem) for i in ordered if i.index < 1]
    sources = list(dict.fromkeys(i.index for i in ordered if i.index >= 1))
    if not sources:
        return end(FinishReason.TOOL_ERROR)
    room = max_images - num_images
    kept = sources[:room]
    return TurnOutcome(
        None,
        new_images=tuple(kept),
        actions=tuple(i.action for i in ordered if i.action is not None and i.index in kept),
        undrawn=tuple(i for i in ordered if not i.values_ok and i.index in kept),
        dropped=tuple(dropped),
        over_cap=tuple(sources[room:]),
        parsed=parsed,
    )

