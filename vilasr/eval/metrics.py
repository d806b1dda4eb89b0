"""One scoring core for the RL accuracy reward and the evaluation metrics (SPEC §4).

Both uses score a reply against a ground-truth answer by `problem_type`; they differ in a few
rules, all of them listed here and nowhere else (`Semantics` picks the column):

| rule                               | `Semantics.RL` (reward)                  | `Semantics.EVAL` (benchmarks)              |
|------------------------------------|------------------------------------------|--------------------------------------------|
| reply without `<answer>...</answer>` | accuracy 0 (1)                         | scored on the whole reply text             |
| multiple choice                    | exact string equality after strip        | first character, case-insensitive          |
| reading a number                   | first match of `[-+]?\\d*\\.?\\d+`, trailing "." stripped | `float(text.replace(",", ""))` |
| MRA comparison                     | `rel < 1 − θ`                            | `rel <= 1 − θ`                             |
| "regression"                       | MRA                                      | MRA                                        |
| "numerical"                        | MRA, like regression                     | equal after rounding to 2 decimals, and both contain "." or "," or neither |
| "vci"                              | 0                                        | mean over five axis pairs of MRA(net)      |
| "free-form", unknown types         | 0                                          | 0 (2)                                    |

Shared: the answer is the first `<answer>\\s*(.*?)\\s*</answer>` (DOTALL), stripped; the ground
truth goes through the same extraction and falls back to its whole text. MRA is computed in
float32 exactly as the reference does (see `mean_relative_accuracy`). Problem types are matched
after strip + lower-case. A malformed prediction or answer scores 0; nothing here raises on any
string.

Benchmark aggregates (SPEC §4) live here too: `overall(Aggregate, [(question type, score)])` --
VSI-Bench the mean of its 8 task means (difficulty levels merged first, absent tasks left out),
SPAR-Bench the mean over its 20 question types (others ignored), the rest a plain mean -- and
`wilson_interval` for the 95 % intervals the reports give.

(1) The reference's RL code falls back to the whole last turn as well, so a trajectory cut off
    mid-drawing could earn MRA from the coordinates it wrote. SPEC §4 gives the fallback to
    evaluation only; we follow SPEC (a reply that never answers earns no accuracy).
(2) SPEC §4 defines no evaluation metric for free-form answers.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable

import numpy as np

from drawing_ops.protocol import ANSWER_CLOSE, ANSWER_OPEN, ProblemType


class Semantics(enum.Enum):
    """Which rule set scores: the RL reward's or the benchmarks' (table in the module docstring)."""

    RL = "rl"
    EVAL = "eval"


_ANSWER = re.compile(re.escape(ANSWER_OPEN) + r"\s*(.*?)\s*" + re.escape(ANSWER_CLOSE), re.DOTALL)
_RL_NUMBER = re.compile(r"[-+]?\d*\.?\d+")

# The reference builds the thresholds with torch.arange(0.5, 0.975, 0.05, dtype=float32), which
# computes 0.5 + 0.05·i in double and rounds each to float32 (a float32 numpy.arange accumulates
# in float32 and gives other values). 1 − θ is then taken in float32.
_THRESHOLDS = np.array([0.5 + 0.05 * i for i in range(10)], dtype=np.float64).astype(np.float32)
_TOLERANCES = np.float32(1.0) - _THRESHOLDS
_EPS = np.float32(1e-8)

# VCI: (positive key, negative key) per axis; net = positive − negative.
VCI_AXES = (("move_right", "move_left"), ("move_up", "move_down"), ("move_forward", "move_backward"),
            ("rotate_right", "rotate_left"), ("rotate_up", "rotate_down"))


def extract_answer(text: str, semantics: Semantics) -> str | None:
    """The text inside the first <answer>...</answer>, stripped; without one, the whole text
    stripped in EVAL and None in RL."""
    match = _ANSWER.search(text)
    if match:
        return match.group(1).strip()
    return text.strip() if semantics is Semantics.EVAL else None


def read_number(text: str, semantics: Semantics) -> float | None:
    """The number an answer states, or None (RL: first numeric match; EVAL: the whole text)."""
    if semantics is Semantics.RL:
        match = _RL_NUMBER.search(text)
        return float(match.group(0).rstrip(".")) if match else None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def mean_relative_accuracy(prediction: float, truth: float, semantics: Semantics) -> float:
    """Mean over θ ∈ {0.50, ..., 0.95} of [|ŷ − y| / (|y| + 1e-8) < 1 − θ] (`<=` in EVAL), all in
    float32 like the reference; the mean too is a float32 value (the reference's `.item()`)."""
    with np.errstate(all="ignore"):  # inf/nan and float32 overflow simply fail every threshold
        pred, true = np.float32(prediction), np.float32(truth)
        rel = np.abs(pred - true) / (np.abs(true) + _EPS)
        hits = rel < _TOLERANCES if semantics is Semantics.RL else rel <= _TOLERANCES
    return float(hits.astype(np.float32).mean(dtype=np.float32))


def multiple_choice(prediction: str, truth: str, semantics: Semantics) -> float:
    if semantics is Semantics.RL:
        return float(prediction.strip() == truth.strip())
    pred, true = prediction.strip(), truth.strip()
    return float(bool(pred) and bool(true) and pred[0].lower() == true[0].lower())


def regression(prediction: str, truth: str, semantics: Semantics) -> float:
    pred, true = read_number(prediction, semantics), read_number(truth, semantics)
    if pred is None or true is None:
        return 0.0
    return mean_relative_accuracy(pred, true, semantics)


def numerical(prediction: str, truth: str, semantics: Semantics) -> float:
    if semantics is Semantics.RL:
        return regression(prediction, truth, semantics)

    def has_decimal(s: str) -> bool:
        return "." in s or "," in s

    if has_decimal(prediction) != has_decimal(truth):
        return 0.0
    pred, true = read_number(prediction, semantics), read_number(truth, semantics)
    if pred is None or true is None:
        return 0.0
    return float(round(pred, 2) == round(true, 2))


def parse_vci(text: str) -> dict[str, float] | None:
    """`move_right:1.2,rotate_left:30` -> {"move_right": 1.2, "rotate_left": 30.0}; keys lower-cased,
    a key given twice adds up, malformed parts are skipped; None when no part reads."""
    motions: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition(":")
        if not sep:
            continue
        try:
            amount = float(value)
        except ValueError:
            continue
        key = key.strip().lower()
        motions[key] = motions.get(key, 0.0) + amount
    return motions or None


def view_change(prediction: str, truth: str, semantics: Semantics) -> float:
    """VCI: per axis pair net = positive − negative (a missing key counts 0), MRA per pair, mean of
    the five. A prediction or truth with no readable part scores 0."""
    if semantics is Semantics.RL:
        return 0.0
    pred, true = parse_vci(prediction), parse_vci(truth)
    if pred is None or true is None:
        return 0.0

    def net(motions: dict[str, float], pos: str, neg: str) -> float:
        return motions.get(pos, 0.0) - motions.get(neg, 0.0)

    return sum(mean_relative_accuracy(net(pred, *axis), net(true, *axis), semantics)
               for axis in VCI_AXES) / len(VCI_AXES)


def _problem_type(problem_type: str) -> ProblemType | None:
    try:
        return ProblemType(problem_type.strip().lower())
    except (ValueError, AttributeError):
        return None


_SCORERS = {
    ProblemType.MULTIPLE_CHOICE: multiple_choice,
    ProblemType.REGRESSION: regression,
    ProblemType.NUMERICAL: numerical,
    ProblemType.VCI: view_change,
}


def accuracy(reply: str, answer: str, problem_type: str, semantics: Semantics) -> float:
    """How right `reply` (a model turn or the full reply) is against the ground truth `answer`,
    in [0, 1], under `semantics`. Never raises: anything malformed scores 0."""
    if not isinstance(reply, str) or not isinstance(answer, str):
        return 0.0
    scorer = _SCORERS.get(_problem_type(problem_type) if isinstance(problem_type, str) else None)
    prediction = extract_answer(reply, semantics)
    if scorer is None or prediction is None:
        return 0.0
    truth = extract_answer(answer, Semantics.EVAL)  # the truth always falls back to its whole text
    return scorer(prediction, truth, semantics)


def score(prediction: str, answer: str, problem_type: str) -> float:
    """Evaluation score of the full reply `prediction` against `answer` (SPEC §4, EVAL column)."""
    return accuracy(prediction, answer, problem_type, Semantics.EVAL)


# -- benchmark aggregates (SPEC §4) -----------------------------------------------------------------

class Aggregate(enum.Enum):
    """How a benchmark's overall number is made from its records' scores."""

    MEAN = "mean"            # plain mean over records (maze, SpatialEval, MMSI-Bench, ours)
    VSI_TASKS = "vsi"        # mean of the 8 VSI-Bench task means (`_easy/_medium/_hard` merged first)
    SPAR_TYPES = "spar"      # mean of the 20 SPAR-Bench question-type means (other types ignored)


VSI_TASK_TYPES = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
                  "object_rel_distance", "object_rel_direction", "route_planning", "obj_appearance_order")
_VSI_LEVELS = ("_easy", "_medium", "_hard")
SPAR_QUESTION_TYPES = (
    "depth_prediction_oc", "depth_prediction_oo", "distance_prediction_oc", "distance_prediction_oo",
    "depth_prediction_oc_mv", "depth_prediction_oo_mv", "distance_prediction_oc_mv", "distance_prediction_oo_mv",
    "position_matching", "camera_motion_infer", "view_change_infer",
    "distance_infer_center_oo", "distance_infer_center_oo_mv",
    "obj_spatial_relation_oo", "obj_spatial_relation_oc_mv", "obj_spatial_relation_oo_mv",
    "spatial_imagination_oc", "spatial_imagination_oo", "spatial_imagination_oc_mv", "spatial_imagination_oo_mv")
WILSON_Z = 1.959963984540054  # two-sided 95 %


def vsi_task(question_type: str) -> str:
    """A VSI-Bench question type with its difficulty suffix removed (object_rel_direction_hard ->
    object_rel_direction)."""
    for level in _VSI_LEVELS:
        if question_type.endswith(level):
            return question_type[: -len(level)]
    return question_type


def type_means(typed_scores: Iterable[tuple[str, float]]) -> dict[str, tuple[float, int]]:
    """question type -> (mean score, number of records), types in first-seen order."""
    sums: dict[str, list[float]] = {}
    for qtype, value in typed_scores:
        sums.setdefault(qtype, []).append(float(value))
    return {t: (sum(v) / len(v), len(v)) for t, v in sums.items()}


def overall(aggregate: Aggregate, typed_scores: Iterable[tuple[str, float]]) -> float | None:
    """The benchmark's overall score in [0, 1] from (question type, score) pairs; None when no
    record counts (e.g. a SPAR run holding none of its 20 types)."""
    pairs = list(typed_scores)
    if aggregate is Aggregate.MEAN:
        return sum(s for _, s in pairs) / len(pairs) if pairs else None
    if aggregate is Aggregate.VSI_TASKS:
        means = type_means((vsi_task(t), s) for t, s in pairs)
        kept = [m for t, (m, _) in means.items() if t in VSI_TASK_TYPES]  # absent tasks are left out
    else:
        means = type_means(pairs)
        kept = [m for t, (m, _) in means.items() if t in SPAR_QUESTION_TYPES]
    return sum(kept) / len(kept) if kept else None


def wilson_interval(total: float, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion `total / n` (95 % by default). `total` may be a sum
    of fractional scores (MRA); the interval then treats the mean as a proportion, a close
    approximation. (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(total / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # rounding can put a bound a hair past p when p is 0 or 1; the interval always holds p
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))
