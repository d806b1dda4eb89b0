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
import re
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

# Image caps, counting the input images (SPEC §3): evaluation and RL.
DEFAULT_MAX_IMAGES = MAX_IMAGES_EVAL = 45
MAX_IMAGES_RL = 42


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


class TemplateError(ValueError):
    """A prompt template (or its file) cannot be used; the message says what to change."""


# The fields each template string may name (see PromptTemplate); any other {name} is an error.
_IMAGE_FIELDS = frozenset({"index", "width", "height", "image"})
TEMPLATE_FIELDS: Mapping[str, frozenset] = {
    "system": frozenset({"width", "height", "num_images"}),
    "image_line": _IMAGE_FIELDS,
    "single_image_line": _IMAGE_FIELDS,
    "image_separator": frozenset(),
    "question_turn": frozenset({"images", "question", "options", "answer_instruction", "answer_type", "closing",
                                "num_images"}),
    "question": frozenset({"question"}),
    "options_header": frozenset(),
    "answer_instructions": frozenset(),
    "closing": frozenset(),
    "feedback_turn": frozenset({"images", "message", "num_images"}),
    "feedback": frozenset({"index", "width", "height", "num_images"}),
    "feedback_final": frozenset({"index", "width", "height", "num_images"}),
}
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """The text around the model's turns: system prompt, question turn, feedback turns -- as data.

    The default is our wording; `PromptTemplate.from_file(path)` reads another one (JSON or TOML,
    keys = the field names below; a missing key keeps our default). Each string is filled by
    `fill`: a `{name}` of a field it may use is replaced, every other brace stays as written (JSON
    examples need no escaping). `{image}` stands for one image placeholder (`<image>`).

    | field               | fields it can use                                                    |
    |---------------------|----------------------------------------------------------------------|
    | system              | {width} {height}: image 1's size; {num_images}: input images          |
    | image_line          | {index} {width} {height} {image}: one image, when a turn shows several |
    | single_image_line   | the same, when a turn shows exactly one image (unset: image_line)     |
    | image_separator     | joins the image lines into {images} (default a line break)            |
    | question_turn       | {images} {question} {options} {answer_instruction} {answer_type}      |
    |                     | {closing} {num_images}: the whole first user turn                     |
    | question            | {question}: the question text (stripped) -> {question} of the turn    |
    | options_header      | the line above the options (may be empty); {options}: it + the options |
    | answer_instructions | answer type -> the line asking for that kind of answer                |
    | closing             | -> {closing}                                                         |
    | feedback_turn       | {images} {message} {num_images}: the user turn after a drawing        |
    | feedback            | {index} {width} {height} (the last new image) {num_images}: the       |
    |                     | {message} when more turns follow                                     |
    | feedback_final      | the same, when the next model turn is the last one (the turn budget  |
    |                     | or the image cap is reached): tools are over, answer now             |

    In `question_turn` and `feedback_turn`, a line that names fields and comes out empty (a
    question without options, a type without an instruction) is left out.
    """

    system: str = _SYSTEM
    image_line: str = "Image {index} ({width}x{height} pixels): {image}"
    single_image_line: str | None = None
    image_separator: str = "\n"
    question_turn: str = "{images}\n\n{question}\n{options}\n{answer_instruction}\n{closing}"
    question: str = "Question: {question}"
    options_header: str = "Options:"
    answer_instructions: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {str(k): v for k, v in _ANSWER_INSTRUCTIONS.items()})
    closing: str = "Think step by step, draw to check your reasoning, and critically inspect each drawing."
    feedback_turn: str = "{images}\n{message}"
    feedback: str = ("Check the drawing critically. If something is off, redraw it under the same label; "
                     "otherwise continue, or answer if you are sure.")
    feedback_final: str = ("That was your last drawing: tools are no longer available. "
                           "Give your final answer now in <answer> </answer>.")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "answer_instructions":
                if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                             for k, v in value.items()):
                    raise TemplateError("answer_instructions must map answer types (strings) to strings, e.g. "
                                        '{"multiple choice": "Answer with the letter."}')
                object.__setattr__(self, f.name, dict(value))
                continue
            if value is None and f.name == "single_image_line":
                continue
            if not isinstance(value, str):
                raise TemplateError(f"template field {f.name!r} must be a string, got {type(value).__name__}")
            unknown = sorted(set(_FIELD.findall(value)) - TEMPLATE_FIELDS[f.name])
            if unknown:
                allowed = ", ".join("{" + n + "}" for n in sorted(TEMPLATE_FIELDS[f.name])) or "none"
                raise TemplateError(f"template field {f.name!r} names unknown field(s) "
                                    f"{', '.join('{' + n + '}' for n in unknown)}; it can use: {allowed}")

    # -- reading and writing ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the template") -> "PromptTemplate":
        """A template from a mapping of field names to values; missing fields keep our default."""
        if not isinstance(data, Mapping):
            raise TemplateError(f"{source} must hold a table/object of template fields, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise TemplateError(f"{source} has unknown key(s) {unknown}; the fields are {known}")
        return cls(**data)

    @classmethod
    def from_file(cls, path) -> "PromptTemplate":
        """Read a template from a JSON (.json) or TOML (.toml) file: one key per field to set. The
        one loader every command uses (`--prompt-template FILE`)."""
        import tomllib
        from pathlib import Path

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read prompt template {path}: {exc}") from None
        readers = {".json": json.loads, ".toml": tomllib.loads}
        if path.suffix.lower() not in readers:
            raise TemplateError(f"prompt template {path} must end in .json or .toml")
        try:
            data = readers[path.suffix.lower()](text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise TemplateError(f"prompt template {path} does not parse as {path.suffix[1:].upper()}: {exc}") from None
        return cls.from_dict(data, source=f"prompt template {path}")

    def to_dict(self) -> dict[str, Any]:
        """Every field (a JSON-able dict that `from_dict` reads back); None fields left out."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items() if v is not None}

    # -- the turns --------------------------------------------------------------------------------
    def system_prompt(self, images: Sequence[ImageInfo] = ()) -> str:
        """The system prompt; `{width}`/`{height}` in it are image 1's size (as the reference states it)."""
        first = images[0] if images else None
        return fill(self.system, width=first.width if first else "", height=first.height if first else "",
                    num_images=len(images))

    def announce(self, image: ImageInfo, *, alone: bool = False) -> str:
        """One image's line: `single_image_line` when it is the only image the turn shows."""
        line = self.single_image_line if alone and self.single_image_line is not None else self.image_line
        return fill(line, index=image.index, width=image.width, height=image.height, image=IMAGE_PLACEHOLDER)

    def images_text(self, images: Sequence[ImageInfo]) -> str:
        alone = len(images) == 1
        return self.image_separator.join(self.announce(im, alone=alone) for im in images)

    def answer_instruction(self, problem_type: str, has_options: bool) -> str:
        """How to answer; none for a multiple-choice question without options (no letters to pick)."""
        if str(problem_type) == ProblemType.MULTIPLE_CHOICE and not has_options:
            return ""
        return self.answer_instructions.get(str(problem_type), "")

    def question_prompt(self, question: str, images: Sequence[ImageInfo], *, options: Sequence[str] = (),
                        problem_type: str = ProblemType.MULTIPLE_CHOICE) -> str:
        """The first user turn: every input image announced, the question, its options, how to answer
        (the multiple-choice instruction only when there are options to choose from)."""
        header = [self.options_header] if self.options_header else []
        options_text = "\n".join([*header, *options]) if options else ""
        return fill_lines(self.question_turn, images=self.images_text(images),
                          question=fill(self.question, question=question.strip()), options=options_text,
                          answer_instruction=self.answer_instruction(problem_type, bool(options)),
                          answer_type=str(problem_type), closing=self.closing, num_images=len(images))

    def prompt_messages(self, question: str, images: Sequence[ImageInfo], *, options: Sequence[str] = (),
                        problem_type: str = ProblemType.MULTIPLE_CHOICE) -> list[dict[str, str]]:
        """The conversation a task starts with: the system turn and the question turn (sharegpt
        text, one `<image>` per input image). Synthetic data and rollouts both start from it."""
        return [{"role": str(Role.SYSTEM), "content": self.system_prompt(images)},
                {"role": str(Role.USER), "content": self.question_prompt(question, images, options=options,
                                                                          problem_type=problem_type)}]

    def feedback_prompt(self, new_images: Sequence[ImageInfo], *, final: bool) -> str:
        """The user turn after a drawing turn; `final` says the next model turn is the last one."""
        last = new_images[-1] if new_images else ImageInfo(0, 0, 0)
        message = fill(self.feedback_final if final else self.feedback, index=last.index, width=last.width,
                       height=last.height, num_images=len(new_images))
        return fill_lines(self.feedback_turn, images=self.images_text(new_images), message=message,
                          num_images=len(new_images))


DEFAULT_TEMPLATE = PromptTemplate()


def fill(text: str, **fields) -> str:
    """`text` with each `{name}` of `fields` replaced by its value; other braces are left alone.
    One pass: a value that itself holds `{name}` is not filled again."""
    return _FIELD.sub(lambda m: str(fields[m.group(1)]) if m.group(1) in fields else m.group(0), text)


def fill_lines(layout: str, **fields) -> str:
    """`fill` line by line, leaving out a line that names a field and comes out empty."""
    out = []
    for line in layout.split("\n"):
        filled = fill(line, **fields)
        if filled or not any(name in fields for name in _FIELD.findall(line)):
            out.append(filled)
    return "\n".join(out)
