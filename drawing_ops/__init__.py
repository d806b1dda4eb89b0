"""drawing_ops: the ViLaSR drawing operators -- parse a model's tool calls, keep each trajectory's
visual context, and draw boxes and auxiliary lines deterministically (NumPy, JAX or PIL).

`drawing_ops.protocol` holds the protocol as data (tool names, JSON keys, `FinishReason`, roles,
the reflection rule, the prompt wording); `drawing_ops.turn.turn_outcome` decides what one model
turn does to a trajectory (the reference's tolerance for bad tool calls and the image cap). Depends on NumPy only; JAX and Pillow load when their
backends are first used.
"""

from importlib import import_module

from drawing_ops.actions import Action, Box, Line
from drawing_ops.colors import box_color
from drawing_ops.context import Annotations, DrawJob, VisualContext, merge_by_label, plan_images, plan_turn
from drawing_ops.errors import ToolCallError, ToolFormatError, ToolIndexError, ToolSchemaError, TooManyImages
from drawing_ops.parser import (Dropped, ItemKind, ParsedTurn, ToolItem, assistant_turns, final_answer,
                                is_reflective, parse_tool_calls, trajectory_reflective_labels)
from drawing_ops.protocol import (DEFAULT_TEMPLATE, FinishReason, ImageInfo, ProblemType, PromptTemplate, Role,
                                  TemplateError, reflective_labels)
from drawing_ops.turn import TurnOutcome, turn_outcome
from drawing_ops.render import render  # (binds the function over the submodule of the same name)

_LAZY = {
    "render_batch": "drawing_ops.render_jax",
    "pack_primitives": "drawing_ops.render_jax",
    "pack_bucketed": "drawing_ops.render_jax",
    "PackedPrimitives": "drawing_ops.render_jax",
}

__all__ = [
    "Action", "Annotations", "Box", "DEFAULT_TEMPLATE", "DrawJob", "Dropped", "FinishReason", "ImageInfo", "ItemKind",
    "Line", "ParsedTurn", "ProblemType", "PromptTemplate", "Role", "ToolCallError", "ToolFormatError",
    "TemplateError", "ToolIndexError", "ToolItem", "ToolSchemaError", "TooManyImages", "TurnOutcome", "VisualContext",
    "assistant_turns", "box_color", "final_answer", "is_reflective", "merge_by_label", "parse_tool_calls",
    "plan_images", "plan_turn", "reflective_labels", "render", "trajectory_reflective_labels", "turn_outcome",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'drawing_ops' has no attribute {name!r}")
