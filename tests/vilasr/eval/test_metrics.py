"""The scoring core against cases worked out by hand from SPEC §4, for both semantics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vilasr.metrics
from vilasr.eval.metrics import Semantics, accuracy, mean_relative_accuracy, parse_vci, read_number
from vilasr.metrics import score

RL, EVAL = Semantics.RL, Semantics.EVAL
MC, REG, NUM, VCI = "multiple choice", "regression", "numerical", "vci"


def f32_mean(hits: int) -> float:
    """What the reference reports for `hits` of ten thresholds (a float32 mean)."""
    return float(np.float32(hits) / np.float32(10))


# (reply, answer, problem_type, RL accuracy, EVAL score)
CASES = [
    # multiple choice: RL exact after strip, EVAL first character case-insensitive
    ("<answer>B</answer>", "B", MC, 1.0, 1.0),
    ("<answer>  B \n</answer>", " B", MC, 1.0, 1.0),
    ("<answer>b</answer>", "B", MC, 0.0, 1.0),
    ("<answer>B. the red cube</answer>", "B", MC, 0.0, 1.0),
    ("<answer>C</answer>", "B", MC, 0.0, 0.0),
    ("<answer>B</answer>", "<answer>B</answer>", MC, 1.0, 1.0),       # the truth is extracted too
    ("<answer>A</answer> then <answer>B</answer>", "A", MC, 1.0, 1.0),  # the first answer counts
    ("<answer></answer>", "B", MC, 0.0, 0.0),
    # no <answer>: RL 0, EVAL the whole reply
    ("B", "B", MC, 0.0, 1.0),
    ("b) because ...", "B", MC, 0.0, 1.0),
    ("The answer is B", "B", MC, 0.0, 0.0),
    ("<answer>B", "B", MC, 0.0, 0.0),  # unclosed: EVAL reads "<answer>B" whose first char is "<"
    # regression: MRA; RL takes the first number, EVAL the whole text
    ("<answer>10</answer>", "10", REG, 1.0, 1.0),
    ("<answer>about 10 m</answer>", "10", REG, 1.0, 0.0),
    ("<answer>1,000</answer>", "1000", REG, 0.0, 1.0),  # RL reads "1"; EVAL drops the comma
    ("<answer>11</answer>", "10", REG, f32_mean(9), f32_mean(9)),  # float32 edges: see below
    ("<answer>4</answer>", "5", REG, f32_mean(6), f32_mean(6)),
    ("<answer>1.5</answer>", "1", REG, 0.0, f32_mean(1)),           # the < / <= edge at θ = 0.5
    ("<answer>0</answer>", "0", REG, 1.0, 1.0),
    ("<answer>1</answer>", "0", REG, 0.0, 0.0),
    ("<answer>-3.</answer>", "-3", REG, 1.0, 1.0),
    ("<answer>.5</answer>", "0.5", REG, 1.0, 1.0),
    ("<answer>ten</answer>", "10", REG, 0.0, 0.0),
    ("<answer>10</answer>", "ten", REG, 0.0, 0.0),
    # numerical: RL is MRA; EVAL rounds to 2 decimals and needs the same "."/"," presence
    ("<answer>3</answer>", "3", NUM, 1.0, 1.0),
    ("<answer>3.0</answer>", "3", NUM, 1.0, 0.0),
    ("<answer>3.001</answer>", "3.00", NUM, f32_mean(10), 1.0),
    ("<answer>3.01</answer>", "3.02", NUM, f32_mean(10), 0.0),
    ("<answer>1,5</answer>", "15", NUM, 0.0, 0.0),
    ("<answer>1,500</answer>", "1500.0", NUM, 0.0, 1.0),
    ("<answer>4</answer>", "5", NUM, f32_mean(6), 0.0),
    # vci: RL 0; EVAL mean over five axis pairs of MRA(net)
    ("<answer>move_right:1.2,rotate_left:30</answer>", "move_right:1.2,rotate_left:30", VCI, 0.0, 1.0),
    ("<answer>move_left:-1.2, rotate_right:-30</answer>", "move_right:1.2,rotate_left:30", VCI, 0.0, 1.0),
    ("<answer>move_right:1.2</answer>", "move_right:1.2,rotate_left:30", VCI, 0.0, 0.8),
    ("<answer>move_right:1.2,rotate_left:oops,jump</answer>", "move_right:1.2,rotate_left:30", VCI, 0.0, 0.8),
    ("<answer>nothing readable</answer>", "move_right:1.2", VCI, 0.0, 0.0),
    ("<answer>move_right:2,move_left:0.8,move_up:1</answer>", "move_right:1.2,move_up:1", VCI, 0.0, 1.0),
    # free-form and unknown types score 0; problem types are matched case-insensitively
    ("<answer>a chair</answer>", "a chair", "free-form", 0.0, 0.0),
    ("<answer>B</answer>", "B", "nonsense", 0.0, 0.0),
    ("<answer>b</answer>", "B", " Multiple Choice ", 0.0, 1.0),
]


@pytest.mark.parametrize("reply, answer, problem_type, rl, ev", CASES)
def test_cases_from_the_spec(reply, answer, problem_type, rl, ev):
    assert accuracy(reply, answer, problem_type, RL) == pytest.approx(rl, abs=1e-12)
    assert score(reply, answer, problem_type) == pytest.approx(ev, abs=1e-12)


def float64_mra(pred: float, truth: float, semantics: Semantics, eps: float = 1e-8) -> float:
    """The same formula in float64 (what the reference does *not* do)."""
    rel = abs(pred - truth) / (abs(truth) + eps)
    tolerances = 1 - (0.5 + 0.05 * np.arange(10))
    return float(np.mean(rel < tolerances if semantics is RL else rel <= tolerances))


def test_mra_float32_edges_differ_from_float64():
    # ŷ = 11, y = 10 (SPEC's example): float32 0.1f = 0.10000000149 < 1 − 0.9f = 0.10000002384, so
    # θ = 0.9 passes (0.9); in float64 0.1 is not < 0.09999999999999998 (0.8 without the epsilon).
    assert mean_relative_accuracy(11, 10, RL) == mean_relative_accuracy(11, 10, EVAL) == pytest.approx(0.9)
    assert float64_mra(11, 10, RL, eps=0.0) == pytest.approx(0.8)
    # ŷ = 4, y = 5: float32 rel 0.2f = 0.2000000030 > 1 − 0.8f = 0.1999999881 fails θ = 0.8 under
    # both comparisons; float64's rel 0.19999999960 passes it.
    for semantics in Semantics:
        assert mean_relative_accuracy(4, 5, semantics) == pytest.approx(0.6)
        assert float64_mra(4, 5, semantics) == pytest.approx(0.7)
    # ŷ = 1, y = 2 under `<`: the epsilon vanishes in float32 (2 + 1e-8 == 2), rel is exactly 0.5
    # and fails θ = 0.5; float64's rel 0.4999999975 passes it.
    assert mean_relative_accuracy(1, 2, RL) == 0.0
    assert float64_mra(1, 2, RL) == pytest.approx(0.1)


def test_mra_thresholds_are_double_rounded_not_float32_arange():
    from vilasr.eval.metrics import _THRESHOLDS
    assert not np.array_equal(_THRESHOLDS, np.arange(0.5, 0.975, 0.05, dtype=np.float32))
    assert np.array_equal(_THRESHOLDS, np.array([0.5 + 0.05 * i for i in range(10)]).astype(np.float32))


def test_mra_lt_vs_le_edge():
    # rel = 0.5 exactly equals 1 − 0.5: counts under <= (EVAL) only.
    assert mean_relative_accuracy(1.5, 1.0, RL) == 0.0
    assert mean_relative_accuracy(1.5, 1.0, EVAL) == pytest.approx(0.1)
    # rel = 0.25 = 1 − 0.75 exactly in float32 too: 5 thresholds (0.5 .. 0.7) under <, 6 under <=.
    assert mean_relative_accuracy(5.0, 4.0, RL) == pytest.approx(0.5)
    assert mean_relative_accuracy(5.0, 4.0, EVAL) == pytest.approx(0.6)


def test_mra_matches_the_reference_torch_computation():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    truths = np.concatenate([rng.integers(-50, 50, 100), rng.normal(0, 30, 100), [0, 10, 4, 1, 100]])
    preds = np.concatenate([truths[:100] + rng.integers(-10, 10, 100), truths[100:200] * rng.uniform(0, 2, 100),
                            [0, 11, 5, 1.5, 105]])
    for pred, true in zip(preds, truths[: len(preds)]):
        p, t = torch.tensor(pred, dtype=torch.float32), torch.tensor(true, dtype=torch.float32)
        rel = torch.abs(p - t) / (torch.abs(t) + 1e-8)
        thresholds = torch.arange(0.5, 0.95 + 0.025, 0.05, dtype=torch.float32)
        for semantics, hits in ((RL, rel < 1 - thresholds), (EVAL, rel <= 1 - thresholds)):
            assert mean_relative_accuracy(pred, true, semantics) == hits.float().mean().item(), (pred, true)


def test_number_reading():
    assert read_number("approx -12.5 metres, maybe 3", RL) == -12.5
    assert read_number("x7.", RL) == 7.0
    assert read_number("1e5", RL) == 1.0
    assert read_number("none", RL) is None
    assert read_number(" 1,234.5 ", EVAL) == 1234.5
    assert read_number("12 m", EVAL) is None


def test_vci_parsing():
    assert parse_vci("move_right:1.2, Rotate_Left : 30,bad,move_up:x,move_right:0.8") == {
        "move_right": 2.0, "rotate_left": 30.0}
    assert parse_vci("no motions") is None


def test_public_entry_points():
    assert vilasr.metrics.score is score
    assert subprocess.run([sys.executable, "-c", "import vilasr; vilasr.metrics.score; vilasr.rewards.trajectory_reward"],
                          cwd=Path(__file__).resolve().parents[3], check=False).returncode == 0
    from vilasr.rewards import trajectory_reward
    assert callable(trajectory_reward)


@settings(max_examples=300, deadline=None)
@given(reply=st.text(), answer=st.text(), problem_type=st.sampled_from([MC, REG, NUM, VCI, "free-form", "", "x"]),
       wrapped=st.booleans())
def test_garbage_never_raises_and_stays_in_range(reply, answer, problem_type, wrapped):
    if wrapped:
        reply = f"<answer>{reply}</answer>"
    for semantics in Semantics:
        value = accuracy(reply, answer, problem_type, semantics)
        assert isinstance(value, float) and 0.0 <= value <= 1.0


@pytest.mark.parametrize("bad", [None, 3, ["B"], b"B"])
def test_non_strings_score_zero(bad):
    assert score(bad, "B", MC) == 0.0
    assert score("B", bad, MC) == 0.0
    assert score("B", "B", bad) == 0.0


# -- the evaluation metrics (EVAL column) and the benchmark aggregates: cases worked out from SPEC §4 --

# (reply, answer, problem_type, evaluation score, what the case pins down)
EVAL_TABLE = [
    # multiple choice: first character of the answer, case-insensitive
    ("<answer>c) the chair</answer>", "C", MC, 1.0, "first letter only"),
    ("<answer> </answer>", "C", MC, 0.0, "empty answer"),
    ("", "C", MC, 0.0, "empty reply"),
    ("C because it is closer", "C. chair", MC, 1.0, "no <answer>: the whole reply, first letter"),
    # regression: MRA with <=, in float32
    ("<answer>1.5</answer>", "1", REG, f32_mean(1), "rel 0.5 == 1 - 0.5 counts under <="),
    ("<answer>5</answer>", "4", REG, f32_mean(6), "rel 0.25 == 1 - 0.75 counts under <="),
    ("<answer>11</answer>", "10", REG, f32_mean(9), "float32: 0.1f <= 1 - 0.9f (float64 says no)"),
    ("<answer>4</answer>", "5", REG, f32_mean(6), "float32: 0.2f > 1 - 0.8f (float64 says yes)"),
    ("<answer>10.0</answer>", "10", REG, 1.0, "regression has no decimal rule"),
    ("<answer>2,500</answer>", "2500", REG, 1.0, "commas are dropped before float()"),
    ("<answer>3 m</answer>", "3", REG, 0.0, "malformed: a unit makes float() fail"),
    ("<answer>nan</answer>", "3", REG, 0.0, "malformed: nan fails every threshold"),
    ("<answer>inf</answer>", "3", REG, 0.0, "malformed: inf fails every threshold"),
    ("<answer>0.0</answer>", "0", REG, 1.0, "zero truth: the epsilon keeps it finite"),
    # numerical: rounded to 2 decimals, and the decimal rule
    ("<answer>3</answer>", "3", NUM, 1.0, "equal integers"),
    ("<answer>3.0</answer>", "3", NUM, 0.0, "decimal rule: '.' in one only"),
    ("<answer>3</answer>", "3.0", NUM, 0.0, "decimal rule, the other way round"),
    ("<answer>2.004</answer>", "2.00", NUM, 1.0, "equal after rounding to 2 decimals"),
    ("<answer>2.006</answer>", "2.00", NUM, 0.0, "2.01 != 2.00 after rounding"),
    ("<answer>1,500</answer>", "1500.0", NUM, 1.0, "',' counts as a decimal mark for the rule"),
    ("<answer>three</answer>", "3", NUM, 0.0, "malformed number"),
    # vci: five axis pairs, net = positive - negative, MRA each, mean of five
    ("<answer>move_right:1.2</answer>", "move_right:1.2,rotate_left:30", VCI, 0.8,
     "a missing axis in the prediction counts 0 (that pair scores 0)"),
    ("<answer>move_right:1,move_up:0.5</answer>", "move_right:1", VCI, 0.8,
     "an axis missing from the truth is 0 there: a nonzero prediction scores 0 on that pair"),
    ("<answer>rotate_up:10</answer>", "rotate_down:-10", VCI, 1.0, "net of a pair: up 10 == -(down -10)"),
    ("<answer>move_forward:1.1</answer>", "move_forward:1", VCI, (4 + f32_mean(9)) / 5,
     "MRA on one pair (float32 edge), exact on four"),
    ("<answer>move_right 1.2</answer>", "move_right:1.2", VCI, 0.0, "malformed: no key:value part"),
]


@pytest.mark.parametrize("reply, answer, problem_type, expected, why", EVAL_TABLE, ids=[c[4] for c in EVAL_TABLE])
def test_evaluation_metric_table(reply, answer, problem_type, expected, why):
    assert score(reply, answer, problem_type) == pytest.approx(expected, abs=1e-7), why


def test_vsi_overall_is_the_mean_of_its_task_means_with_levels_merged():
    from vilasr.eval.metrics import Aggregate, overall, vsi_task

    assert vsi_task("object_rel_direction_hard") == "object_rel_direction"
    assert vsi_task("route_planning") == "route_planning"
    pairs = [("object_rel_direction_easy", 1.0), ("object_rel_direction_hard", 0.0),
             ("object_rel_direction_medium", 1.0),           # task mean 2/3
             ("object_counting", 0.0),                        # task mean 0
             ("route_planning", 1.0), ("route_planning", 1.0),  # task mean 1
             ("not_a_vsi_task", 1.0)]                         # left out
    assert overall(Aggregate.VSI_TASKS, pairs) == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert overall(Aggregate.MEAN, pairs) == pytest.approx(5 / 7)
    assert overall(Aggregate.VSI_TASKS, [("other", 1.0)]) is None


def test_spar_overall_is_the_mean_over_its_question_types():
    from vilasr.eval.metrics import SPAR_QUESTION_TYPES, Aggregate, overall

    assert len(SPAR_QUESTION_TYPES) == len(set(SPAR_QUESTION_TYPES)) == 20
    pairs = [("view_change_infer", 0.5), ("depth_prediction_oc", 1.0), ("depth_prediction_oc", 0.0),
             ("position_matching", 1.0), ("some_other_type", 0.0)]
    assert overall(Aggregate.SPAR_TYPES, pairs) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


@pytest.mark.parametrize("total, n, low, high", [
    (50, 100, 0.40383, 0.59617),
    (0, 10, 0.0, 0.27753),
    (10, 10, 0.72247, 1.0),
    (0, 0, 0.0, 1.0),
])
def test_wilson_interval(total, n, low, high):
    from vilasr.eval.metrics import wilson_interval

    lo, hi = wilson_interval(total, n)
    assert (lo, hi) == (pytest.approx(low, abs=1e-5), pytest.approx(high, abs=1e-5))
    if n:
        assert lo <= total / n <= hi
