"""Evaluation metrics (SPEC §4): `score(prediction, answer, problem_type)`. The scoring core and the
table of RL vs evaluation rules live in `vilasr.eval.metrics`."""

from vilasr.eval.metrics import Semantics, accuracy, score

__all__ = ["Semantics", "accuracy", "score"]
