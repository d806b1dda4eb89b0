"""Synthetic data throughput: samples per second per family, without a trajectory and with cold
and reflective trajectories (drawing through drawing_ops.VisualContext), at the default image
sizes; the ratio column is the cost of writing a trajectory relative to the bare task.

    .venv/bin/python benchmarks/synth_speed.py [--n 20] [--repeats 3] [--backend numpy] [--markdown]
"""

from __future__ import annotations

import argparse
import time

from synth import families
from synth.records import FAMILIES


def rate(family: str, n: int, trajectory: str, config, backend: str) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        families.make_sample(family, 1, i, config=config, trajectory=trajectory, backend=backend)
    return n / (time.perf_counter() - t0)


def best_rates(family: str, n: int, config, backend: str, repeats: int) -> dict[str, float]:
    """Best of `repeats` interleaved rounds (the same n tasks for every kind): these machines are shared."""
    kinds = ("none", "cold", "reflective")
    for kind in kinds:                                  # warm-up: imports, caches
        families.make_sample(family, 999, 0, config=config, trajectory=kind, backend=backend)
    best = dict.fromkeys(kinds, 0.0)
    for _ in range(repeats):
        for kind in kinds:
            best[kind] = max(best[kind], rate(family, n, kind, config, backend))
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=20, help="samples per measurement")
    p.add_argument("--backend", default="numpy", choices=["numpy", "jax", "pil"])
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = p.parse_args(argv)
    rows = []
    for family in FAMILIES:
        config = families.default_config(family)
        size = getattr(config, "size", None) or f"{config.width}x{config.height}"
        r = best_rates(family, args.n, config, args.backend, args.repeats)
        rows.append((family, size, r["none"], r["cold"], r["reflective"], r["none"] / r["cold"]))
        if not args.markdown:
            print(f"{family:10s} {str(size):>8s}  none {r['none']:7.1f}/s  cold {r['cold']:7.1f}/s  "
                  f"reflective {r['reflective']:7.1f}/s  trajectory cost x{r['none'] / r['cold']:.2f}", flush=True)
    if args.markdown:
        print("| family | image size | no trajectory (samples/s) | cold (samples/s) | reflective (samples/s) "
              "| none / cold |")
        print("|---|---|---|---|---|---|")
        for family, size, a, b, c, ratio in rows:
            print(f"| {family} | {size} | {a:.1f} | {b:.1f} | {c:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
