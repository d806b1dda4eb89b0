"""What a rollout is given (`RolloutTask`) and what it gives back (`Trajectory`)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from drawing_ops import Dropped, ParsedTurn, TurnOutcome
from drawing_ops.protocol import MAZE_DATA_TYPE, FinishReason, ProblemType


@dataclasses.dataclass(frozen=True)
class RolloutTask:
    """One prompt: its input images (any size; resized to what the model sees), the question, its
    options (listed under the question), how the answer is scored, and the kind of data."""

    images: Sequence[np.ndarray]
    question: str
    options: Sequence[str] = ()
    problem_type: str = ProblemType.MULTIPLE_CHOICE
    data_type: str = "single_view"
    seed: int | None = None  # the row's sampling key; defaults to its position in the batch

    @property
    def is_maze(self) -> bool:
        return self.data_type == MAZE_DATA_TYPE


class Segment(NamedTuple):
    """A run of tokens of one trajectory that one side wrote: the model (a turn, its end-of-turn
    token included) or not (the prompt, a feedback turn). `logprobs` are 0 where not the model's."""

    ids: np.ndarray
    is_model: bool
    logprobs: np.ndarray


@dataclasses.dataclass
class Trajectory:
    """One finished rollout. `token_ids`, `model_mask` and `logprobs` are aligned: the mask marks
    model-written tokens (each turn's end-of-turn token included), logprobs are 0 elsewhere."""

    task: RolloutTask
    token_ids: np.ndarray
    model_mask: np.ndarray
    logprobs: np.ndarray
    prompt_len: int
    images: list[np.ndarray]
    image_grid_thw: np.ndarray
    turns: list[str]
    parsed: list[ParsedTurn]
    answer: str | None
    finish_reason: FinishReason
    tokens_processed: int = 0  # tokens run through the model for this trajectory
    images_encoded: int = 0
    outcomes: list[TurnOutcome] = dataclasses.field(default_factory=list)  # what each turn did
    # the conversation in sharegpt form (`<image>` per image, in the order of `images`): what a
    # data set of trajectories stores, and what tokenizes back to `token_ids`
    messages: list[dict] = dataclasses.field(default_factory=list)

    @property
    def dropped(self) -> list[tuple[int, Dropped]]:
        """(1-based turn, what and why) for every block or item a turn left out or kept undrawn."""
        out = []
        for turn, outcome in enumerate(self.outcomes, start=1):
            out += [(turn, d) for d in outcome.dropped]
            out += [(turn, Dropped(i.block, i.position, i.problem)) for i in outcome.undrawn]
        return out

    @property
    def num_dropped(self) -> int:
        return sum(o.num_dropped for o in self.outcomes)

    @property
    def response_len(self) -> int:
        return len(self.token_ids) - self.prompt_len

    @classmethod
    def from_segments(cls, segments: Sequence[Segment], **fields) -> "Trajectory":
        """Join the segments into the aligned token, mask and log-probability arrays."""
        return cls(token_ids=np.concatenate([s.ids for s in segments]),
                   model_mask=np.concatenate([np.full(len(s.ids), s.is_model) for s in segments]),
                   logprobs=np.concatenate([s.logprobs for s in segments]), **fields)
