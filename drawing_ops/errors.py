"""Typed errors for tool calls. Every problem a model's turn can have is one of these; each class
names the finish reason the reference gives a trajectory that it ends (`reason`)."""

from drawing_ops.protocol import FinishReason


class ToolCallError(Exception):
    """Base class: something in a model's tool call cannot be used. Errors are values: two are
    equal when they are of the same class with the same message (so parsed turns compare)."""

    reason: FinishReason = FinishReason.TOOL_ERROR

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.args == other.args

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class ToolFormatError(ToolCallError):
    """The turn holds no parsable tool-call block."""

    reason = FinishReason.TOOL_ERROR


class ToolSchemaError(ToolCallError):
    """An item has wrong or missing keys, non-numeric or non-finite values, or the wrong arity."""

    reason = FinishReason.TOOL_GEN_ERROR


class ToolIndexError(ToolCallError):
    """An item addresses an image index that does not exist."""

    reason = FinishReason.INDEX_ERROR


class TooManyImages(ToolCallError):
    """Applying the turn would exceed the image cap."""

    reason = FinishReason.TOO_MANY_IMAGES
