"""The two drawing primitives of the ViLaSR protocol, as frozen validated values."""

from __future__ import annotations

import math
from dataclasses import dataclass

from drawing_ops.errors import ToolSchemaError


def _coords(name: str, values, arity: int) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ToolSchemaError(f"{name} must be a list of {arity} numbers, got {values!r}")
    if len(values) != arity:
        raise ToolSchemaError(f"{name} must have {arity} numbers, got {len(values)}: {values!r}")
    out = []
    for v in values:
        # bool is an int subclass; a model writing `true` as a coordinate is a schema error.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ToolSchemaError(f"{name} holds a non-number {v!r}; write plain pixel numbers")
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an int too large for a float (e.g. 400 digits)
            finite = False
        if not finite:
            raise ToolSchemaError(f"{name} holds a non-finite or too large value; write plain pixel numbers")
        out.append(v)
    return tuple(out)


def _index(index) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise ToolSchemaError(f"index must be an integer (1-based image index), got {index!r}")
    if index < 1:
        raise ToolSchemaError(f"index is 1-based and must be >= 1, got {index}")
    return index


def _label(label) -> str:
    if not isinstance(label, str) or not label:
        raise ToolSchemaError(f"label must be a non-empty string, got {label!r}")
    return label


@dataclass(frozen=True)
class Box:
    """An "Object Mapper" item: a box [x1, y1, x2, y2] in pixels on image `index` (1-based)."""

    index: int
    bbox_2d: tuple[float, float, float, float]
    label: str

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index))
        object.__setattr__(self, "bbox_2d", _coords("bbox_2d", self.bbox_2d, 4))
        object.__setattr__(self, "label", _label(self.label))

    def to_json(self) -> dict:
        return {"index": self.index, "bbox_2d": list(self.bbox_2d), "label": self.label}


@dataclass(frozen=True)
class Line:
    """A "Path Tracer" item: an auxiliary line from start to end on image `index` (1-based)."""

    index: int
    start_point_2d: tuple[float, float]
    end_point_2d: tuple[float, float]
    label: str

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index))
        object.__setattr__(self, "start_point_2d", _coords("start_point_2d", self.start_point_2d, 2))
        object.__setattr__(self, "end_point_2d", _coords("end_point_2d", self.end_point_2d, 2))
        object.__setattr__(self, "label", _label(self.label))

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "start_point_2d": list(self.start_point_2d),
            "end_point_2d": list(self.end_point_2d),
            "label": self.label,
        }


Action = Box | Line
