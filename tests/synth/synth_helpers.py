"""Shared small samples for the synth tests (small images keep the folder fast)."""

from __future__ import annotations

import functools
import math

from synth import families

SMALL_SIZES = {"maze": 160, "static": 128, "multiview": 128}


def small_config(family: str, **overrides):
    return families.default_config(family, SMALL_SIZES[family], **overrides)


@functools.lru_cache(maxsize=None)
def cached_samples(family: str, trajectory: str, n: int = 8, seed: int = 7) -> tuple:
    config = small_config(family)
    return tuple(families.make_sample(family, seed, i, config=config, trajectory=trajectory) for i in range(n))



# -- blind policies: answer a multiple-choice question from its text alone ---------------------------
#
# A benchmark whose options give the answer away lets a model that never looks at the image beat
# chance. Each policy maps (question, options) to an option index; a fair benchmark keeps every one of
# them near 1/4. The records are made from fixed seeds, so a test is deterministic; the bound says
# how unlikely it was for a fair generator to fail it with the seeds we picked.


def chance_bound(n: int, p: float = 0.25, alpha: float = 1e-3) -> float:
    """The smallest share k/n with P(Binomial(n, p) >= k) < alpha: a policy at chance reaches it with
    probability below alpha (with the dozen policies a test plays, below ~1 % for the test)."""
    tail = 0.0
    for k in range(n, -1, -1):
        tail += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if tail >= alpha:
            return (k + 1) / n
    return 0.0


def option_texts(sample) -> list[str]:
    return [o.split(". ", 1)[1] for o in sample.options]


def edit_distance(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def always(k: int):
    return lambda question, options: k


def longest_text(question, options) -> int:
    return max(range(len(options)), key=lambda i: len(options[i]))


def shortest_text(question, options) -> int:
    return min(range(len(options)), key=lambda i: len(options[i]))


def kth_smallest(k: int):
    return lambda question, options: sorted(range(len(options)), key=lambda i: float(options[i]))[k]


def medoid(distance):
    """The option closest to all the others (the one a set of one-edit variants spreads from)."""
    return lambda question, options: min(
        range(len(options)), key=lambda i: sum(distance(options[i], o) for o in options))


def text_policies() -> dict:
    return {**{f"always {'ABCD'[k]}": always(k) for k in range(4)},
            "longest text": longest_text, "shortest text": shortest_text}


def blind_scores(questions, policies: dict) -> dict[str, float]:
    """The share of `questions` [(question, options, answer index)] each policy gets right."""
    return {name: sum(policy(q, opts) == ans for q, opts, ans in questions) / len(questions)
            for name, policy in policies.items()}


def leaks(questions, policies: dict) -> dict[str, float]:
    """The policies that beat chance by more than luck would allow, with their scores."""
    bound = chance_bound(len(questions))
    return {name: s for name, s in blind_scores(questions, policies).items() if s >= bound}
