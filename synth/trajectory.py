"""The shared trajectory writer: a sample plus a plan of steps -> a sharegpt conversation and the
images the drawing produced, in the tool-call protocol of docs/method.md §1.

A family module plans *what* to draw as `Step`s whose items name an input view (1-based) rather
than an image index; the writer resolves each view to the newest good image derived from it,
writes the assistant turn, parses it back with `drawing_ops.parse_tool_calls` (a turn that does
not parse cleanly is a bug and raises), applies it with `drawing_ops.VisualContext`, and writes the
feedback turn announcing the new images.

Reflective trajectories: a step marked `mistake=True` draws something wrong on purpose; its images
are shown to the model but do not become the base for later steps, so the next step (which reads
the feedback and says what is wrong) redraws on the same source images with the same labels and
corrected parameters. That makes the trajectory reflective in the sense of docs/method.md §4: the same label
appears in different steps with different parameters.

Think texts may use `{src[v]}` (the image this step draws on for view v), `{new[v]}` (the image it
will produce) and `{prev[v]}` (the image the previous drawing step produced for view v).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Sequence

from drawing_ops import Box, Line, VisualContext, parse_tool_calls
from drawing_ops.context import group_by_source
from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate, Role, format_answer_turn, format_tool_turn
from synth import templates
from synth.records import Sample


class ThinkStyle(str, enum.Enum):
    """How much a trajectory's thinking text says. FULL: the facts behind every step (the cells,
    the runs, the check of each drawing). BRIEF: one short sentence per step, so that a small model
    spends its tokens on the drawings and the answer (the demo's tiny model samples every token on
    a CPU); the drawings, the reflection and the answer are the same."""

    FULL = "full"
    BRIEF = "brief"

    def __str__(self) -> str:
        return self.value


def brief_think(step: "Step") -> str:
    if step.answer is not None:
        return "I read the answer off the drawings."
    if step.correction:
        return "The last image has a drawing in the wrong place; I redraw it under the same label."
    labels = ", ".join(dict.fromkeys(it.label.replace("{", "{{").replace("}", "}}") for it in step.items))
    return ("I box " if all(it.bbox is not None for it in step.items) else "I draw ") + labels + "."


class TrajectoryError(RuntimeError):
    """A planned step does not survive the protocol (it would not parse or apply): a generator bug."""


@dataclass(frozen=True)
class Item:
    """One planned drawing on the newest image of input view `view`: a box or a line."""

    view: int
    label: str
    bbox: tuple[float, float, float, float] | None = None
    start: tuple[float, float] | None = None
    end: tuple[float, float] | None = None

    def to_action(self, index: int) -> Box | Line:
        if self.bbox is not None:
            return Box(index, tuple(_num(v) for v in self.bbox), self.label)
        return Line(index, tuple(_num(v) for v in self.start), tuple(_num(v) for v in self.end), self.label)


@dataclass(frozen=True)
class Step:
    """One assistant turn: thinking plus drawing items, or thinking plus the final answer."""

    think: str
    items: tuple[Item, ...] = ()
    answer: str | None = None
    mistake: bool = False     # drawn wrong on purpose; the next step corrects it
    correction: bool = False  # reads the feedback of a mistake and redraws


def _num(v: float) -> int | float:
    """Coordinates as the model would write them: integers, or one decimal when needed."""
    r = round(float(v), 1)
    return int(r) if r == int(r) else r


@dataclass
class _State:
    current: dict[int, int]                      # view -> newest good image index
    prev: dict[int, int] = field(default_factory=dict)


def write_trajectory(sample: Sample, steps: Sequence[Step], kind: str, *, backend: str = "numpy",
                     template: PromptTemplate = DEFAULT_TEMPLATE, think: ThinkStyle = ThinkStyle.FULL) -> Sample:
    """Run the planned steps through the protocol; returns a copy of `sample` with the
    conversation, the drawn images and `trajectory=kind`."""
    if not steps or steps[-1].answer is None:
        raise TrajectoryError("a trajectory must end with an answer step")
    context = VisualContext(sample.images, backend=backend)
    state = _State(current={v: v for v in range(1, len(sample.images) + 1)})
    conversation = templates.prompt_messages(sample, template)
    for n, step in enumerate(steps):
        if think is ThinkStyle.BRIEF:
            step = replace(step, think=brief_think(step))
        if step.answer is not None:
            if n != len(steps) - 1:
                raise TrajectoryError("only the last step may answer")
            text = format_answer_turn(_fill(step.think, state, {}), step.answer)
            parsed = parse_tool_calls(text, num_images=len(context))
            if parsed.errors or parsed.answer != step.answer:
                raise TrajectoryError(f"answer turn does not parse: {parsed.errors}")
            conversation.append({"role": str(Role.ASSISTANT), "content": text})
            break
        sources = {v: state.current[v] for v in dict.fromkeys(it.view for it in step.items)}
        actions = [it.to_action(sources[it.view]) for it in step.items]
        order = list(group_by_source(actions))          # the order the new images will take
        view_of = {src: v for v, src in sources.items()}
        new = {view_of[src]: len(context) + 1 + k for k, src in enumerate(order)}
        text = format_tool_turn(_fill(step.think, state, new, sources), actions)
        parsed = parse_tool_calls(text, num_images=len(context))
        if parsed.errors or list(parsed.actions) != actions:
            raise TrajectoryError(f"step {n + 1} does not round-trip through the parser: {parsed.errors}")
        made = context.apply(parsed.actions)
        produced = {view_of[src]: k for src, k in zip(order, made)}
        if produced != new:
            raise TrajectoryError(f"step {n + 1}: images came out as {produced}, expected {new}")
        conversation.append({"role": str(Role.ASSISTANT), "content": text})
        conversation.append({"role": str(Role.USER), "content": templates.feedback_prompt(made, context.images,
                                                                                          template)})
        state.prev = produced
        if not step.mistake:
            state.current.update(produced)
    else:
        raise TrajectoryError("the plan has no answer step")
    k = len(sample.images)
    return replace(sample, trajectory=kind, conversation=conversation,
                   drawn_images=[im.copy() for im in context.images[k:]])


def _fill(think: str, state: _State, new: dict[int, int], src: dict[int, int] | None = None) -> str:
    try:
        return think.format(src=src or dict(state.current), new=new, prev=state.prev)
    except (KeyError, IndexError) as exc:
        raise TrajectoryError(f"think text names an image it cannot know ({exc}): {think[:80]!r}") from exc
