"""The ViLaSR tool-call protocol as data: names, keys, finish reasons, roles, the reflection rule
and the prompt wording. Everything that both the synthetic-data writers and the rollouts need
lives here once, so cold-start data and rollouts can never drift apart.

This module imports nothing else of the project (the parser, the errors and the renderers build
on it). The method facts are summarised in docs/method.md; the wording of our prompts is ours.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# -- what the model writes ------------------------------------------------------------------------
BOX_TOOL = "Object Mapper"      # the "draw boxes" tool
LINE_TOOL = "Path Tracer"       # the "draw auxiliary lines" tool
ANSWER_ACTION = "Answer"        # the action named on the final turn
TOOL_NAMES = (BOX_TOOL, LINE_TOOL)

KEY_INDEX = "index"              # 1-based image index an item draws on
KEY_BBOX = "bbox_2d"             # [x1, y1, x2, y2]
KEY_START = "start_point_2d"     # [x, y]
KEY_END = "end_point_2d"         # [x, y]
KEY_LABEL = "label"
BOX_KEYS = frozenset({KEY_INDEX, KEY_BBOX, KEY_LABEL})
LINE_KEYS = frozenset({KEY_INDEX, KEY_START, KEY_END, KEY_LABEL})

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
OPEN_FENCE, CLOSE_FENCE = "```json", "```"
IMAGE_PLACEHOLDER = "<image>"   # one per image in sharegpt user text
VIDEO_PLACEHOLDER = "<video>"


class FinishReason(str, enum.Enum):
    """Why a trajectory ended. The values are the reference's strings (they appear in logs)."""

    ANSWER = "answer"                   # the turn holds <answer>...</answer>
    LENGTH = "length"                   # the turn hit the per-turn token cap
    BUDGET = "budget"                   # the response token budget is spent
    MAX_TURNS = "max_turns"             # the turn budget is spent without an answer
    TOOL_ERROR = "ToolError"            # nothing usable to draw
    TOOL_GEN_ERROR = "ToolGenError"     # a malformed tool item
    INDEX_ERROR = "IndexError"          # an item addresses an image that does not exist
    TOO_MANY_IMAGES = "TooManyImages"   # the image cap is reached

    def __str__(self) -> str:
        return self.value

    @property
    def is_tool_failure(self) -> bool:
        return self in (FinishReason.TOOL_ERROR, FinishReason.TOOL_GEN_ERROR, FinishReason.INDEX_ERROR,
                        FinishReason.TOO_MANY_IMAGES)


class ProblemType(str, enum.Enum):
    """How an answer is scored (the benchmark files' `problem_type`)."""

    MULTIPLE_CHOICE = "multiple choice"
    NUMERICAL = "numerical"
    REGRESSION = "regression"
    VCI = "vci"                 # view-change inference: "move_right:1.2,rotate_left:30,..."
    FREE_FORM = "free-form"

    def __str__(self) -> str:
        return self.value


MAZE_DATA_TYPE = "maze"   # the one `data_type` the loop treats differently (a larger turn budget)


# -- conversations --------------------------------------------------------------------------------
class Role(str, enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"

    def __str__(self) -> str:
        return self.value


# LLaMA-Factory's sharegpt `from` names (and the plain role names) -> the chat role.
SHAREGPT_ROLES: Mapping[str, Role] = {
    "system": Role.SYSTEM, "human": Role.USER, "user": Role.USER, "gpt": Role.ASSISTANT,
    "assistant": Role.ASSISTANT,
}


# -- the reflection rule --------------------------------------------------------------------------
def drawn_params(item) -> tuple:
    """What a drawn item's geometry is, for comparing two drawings of the same label: a box's
    corners, a line's two points (any object with `bbox_2d` or `start_point_2d`/`end_point_2d`)."""
    if hasattr(item, KEY_BBOX):
        return tuple(item.bbox_2d)
    return (tuple(item.start_point_2d), tuple(item.end_point_2d))


def reflective_labels(steps: Iterable[Sequence[Any]], *, boxes_only: bool = False) -> set[str]:
    """Labels drawn again in a later step with other parameters (the paper's reflection).

    `steps` holds each assistant turn's drawn items (Box/Line) in order. A label counts when the
    same kind of item with that label appears in two different steps with different geometry.
    `boxes_only=True` looks at boxes only, as the reference's logged metric does.
    """
    seen: dict[tuple[str, str], dict[int, set]] = {}
    for step, items in enumerate(steps):
        for item in items:
            is_box = hasattr(item, KEY_BBOX)
            if boxes_only and not is_box:
                continue
            key = ("box" if is_box else "line", item.label)
            seen.setdefault(key, {}).setdefault(step, set()).add(drawn_params(item))
    labels = set()
    for (_, label), by_step in seen.items():
        geometries = [by_step[s] for s in sorted(by_step)]
        if any(a != b for i, a in enumerate(geometries) for b in geometries[i + 1:]):
            labels.add(label)
    return labels


# -- writing turns ---------------------------------------------------------------------------------
def format_tool_turn(think: str, items: Sequence[Any]) -> str:
    """An assistant drawing turn: thinking, the tool's name, one ```json block with the items
    (Box/Line, anything with `to_json()`). Boxes make it an Object Mapper turn."""
    tool = BOX_TOOL if any(hasattr(item, KEY_BBOX) for item in items) else LINE_TOOL
    body = ",\n".join("  " + json.dumps(item.to_json()) for item in items)
    return f"{THINK_OPEN}{think}{THINK_CLOSE} Action: {tool}\n{OPEN_FENCE}\n[\n{body}\n]\n{CLOSE_FENCE}"


def format_answer_turn(think: str, answer: str) -> str:
    """The final assistant turn: thinking, `Action: Answer`, the answer in its tags."""
    return f"{THINK_OPEN}{think}{THINK_CLOSE} Action: {ANSWER_ACTION}\n{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


# -- the prompt wording ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """An image as a prompt announces it: its 1-based index and its size as the model sees it."""

    index: int
    width: int
    height: int


_SYSTEM = """You solve spatial questions by drawing on the images and looking at what you drew.

Tools (call at most one per turn, then wait for the drawn image):
1. Object Mapper: boxes around objects.
```json
[{"index": 1, "bbox_2d": [x1, y1, x2, y2], "label": "what the box marks"}]
```
2. Path Tracer: a line between two points, e.g. a route or a direction.
```json
[{"index": 1, "start_point_2d": [x1, y1], "end_point_2d": [x2, y2], "label": "what the line traces"}]
```
"index" is the 1-based number of the image to draw on. Coordinates are absolute pixels of that
image, (0, 0) at the top-left. Each drawing gives you a new image with the next index; a label you
reuse replaces the earlier drawing with that label.

Write every turn as
<think> your reasoning </think> Action: Object Mapper or Path Tracer
followed by one ```json block, and finish with
<think> your reasoning </think> Action: Answer
<answer> your final answer </answer>

After each drawing, look hard at the result: is every box on its object and every line where you
meant it? If not, say so and redraw under the same label before you go on."""

_ANSWER_INSTRUCTIONS = {
    ProblemType.MULTIPLE_CHOICE: "Answer with the letter of the correct option.",
    ProblemType.NUMERICAL: "Answer with a single number (e.g. 7 or 3.5).",
    ProblemType.REGRESSION: "Answer with a single number (e.g. 7 or 3.5).",
    ProblemType.VCI: "Answer in the form move_right:1.2,rotate_left:30 with the camera motions you infer.",
    ProblemType.FREE_FORM: "",
}


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """The text around the model's turns: system prompt, first user turn, feedback turns.

    The default is our wording. Fields are filled by `fill`: a `{name}` of a known field is
    replaced, every other brace stays as written (so JSON examples need no escaping); `{image}`
    stands for one image placeholder (`<image>` in sharegpt text). The structure is the reference's: the question's
    images each announced with index and size, an instruction per answer type, and after every
    drawing a user turn showing the new images that asks for a critical check -- or, before the
    truly last turn, says that tools are over and the answer is due.
    """

    system: str = _SYSTEM
    image_line: str = "Image {index} ({width}x{height} pixels): {image}"
    question: str = "Question: {question}"
    options_header: str = "Options:"
    answer_instructions: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {str(k): v for k, v in _ANSWER_INSTRUCTIONS.items()})
    closing: str = "Think step by step, draw to check your reasoning, and critically inspect each drawing."
    feedback: str = ("Check the drawing critically. If something is off, redraw it under the same label; "
                     "otherwise continue, or answer if you are sure.")
    feedback_final: str = ("That was your last drawing: tools are no longer available. "
                           "Give your final answer now in <answer> </answer>.")

    def system_prompt(self, images: Sequence[ImageInfo] = ()) -> str:
        """The system prompt; `{width}`/`{height}` in it are image 1's size (as the reference states it)."""
        first = images[0] if images else None
        return fill(self.system, width=first.width if first else "", height=first.height if first else "")

    def announce(self, image: ImageInfo) -> str:
        return fill(self.image_line, index=image.index, width=image.width, height=image.height,
                    image=IMAGE_PLACEHOLDER)

    def question_prompt(self, question: str, images: Sequence[ImageInfo], *, options: Sequence[str] = (),
                        problem_type: str = ProblemType.MULTIPLE_CHOICE) -> str:
        """The first user turn: every input image announced, the question, its options, how to answer
        (the multiple-choice instruction only when there are options to choose from)."""
        lines = [self.announce(im) for im in images]
        lines += ["", fill(self.question, question=question.strip())]
        if options:
            lines += [self.options_header, *options]
        instruction = self.answer_instructions.get(str(problem_type), "")
        if instruction and (options or str(problem_type) != ProblemType.MULTIPLE_CHOICE):  # no letters to pick from
            lines.append(instruction)
        if self.closing:
            lines.append(self.closing)
        return "\n".join(lines)

    def prompt_messages(self, question: str, images: Sequence[ImageInfo], *, options: Sequence[str] = (),
                        problem_type: str = ProblemType.MULTIPLE_CHOICE) -> list[dict[str, str]]:
        """The conversation a task starts with: the system turn and the question turn (sharegpt
        text, one `<image>` per input image). Synthetic data and rollouts both start from it."""
        return [{"role": str(Role.SYSTEM), "content": self.system_prompt(images)},
                {"role": str(Role.USER), "content": self.question_prompt(question, images, options=options,
                                                                          problem_type=problem_type)}]

    def feedback_prompt(self, new_images: Sequence[ImageInfo], *, final: bool) -> str:
        """The user turn after a drawing turn; `final` says the next model turn is the last one."""
        return "\n".join([self.announce(im) for im in new_images] +
                         [self.feedback_final if final else self.feedback])


DEFAULT_TEMPLATE = PromptTemplate()


def fill(text: str, **fields) -> str:
    """`text` with each `{name}` of `fields` replaced by its value; other braces are left alone."""
    for name, value in fields.items():
        text = text.replace("{" + name + "}", str(value))
    return text
