"""The parser's cost grows linearly with its input, also on adversarial turns.

    python benchmarks/parser.py [--small 1000] [--factor 32] [--repeats 3]
    (from a checkout that is not installed: PYTHONPATH=. python benchmarks/parser.py)

For each kind of hostile turn (many fence lines without a closing fence, many small blocks, a
long run of spaces after `Action:`, many unclosed `<think>` / `<answer>` tags, one huge block),
it times `parse_tool_calls` (and `turn_outcome`, which reads the same items) on a small input and
on one `--factor` times larger, and prints the time ratio next to the size ratio. A linear parser
gives a time ratio near the size ratio; a quadratic one near its square (the parser before
issue #11 took 4.5 s on 32,000 fence lines and 15 s on 32,000 blocks). Best of `--repeats`.
Not a test: timings on a loaded machine are noisy, only the ratio in one run means anything.
"""

from __future__ import annotations

import argparse
import time

from drawing_ops import parse_tool_calls, turn_outcome

ITEM = "{'index': 1, 'bbox_2d': [10, 20, 30, 40], 'label': 'cup'}"
HEAD = "<think>I look.</think> Action: Object Mapper\n"

KINDS = {
    "fence lines, no closing fence": lambda n: HEAD + "```json\n" * n,
    "small blocks": lambda n: HEAD + f"```json\n[{ITEM}]\n```\n" * n,
    "one block of many items": lambda n: HEAD + "```json\n[" + ", ".join([ITEM] * n) + "]\n```",
    "spaces after Action:": lambda n: "Action: a" + " " * (20 * n) + "b",
    "unclosed <think> tags": lambda n: "<think>" * (4 * n),
    "unclosed <answer> tags": lambda n: "<answer>" * (4 * n),
}


def best_time(fn, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000, help="repetitions in the small input")
    parser.add_argument("--factor", type=int, default=32, help="how many times larger the large input is")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    functions = {"parse_tool_calls": parse_tool_calls, "turn_outcome": lambda text: turn_outcome(text, 2)}
    print(f"| input | function | small ({args.small}) s | large ({args.small * args.factor}) s | "
          f"time ratio | size ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, make in KINDS.items():
        small, large = make(args.small), make(args.small * args.factor)
        for name, fn in functions.items():
            t_small = best_time(fn, small, args.repeats)
            t_large = best_time(fn, large, args.repeats)
            print(f"| {kind} | {name} | {t_small:.4f} | {t_large:.3f} | {t_large / max(t_small, 1e-9):.1f} | "
                  f"{len(large) / len(small):.1f} |")


if __name__ == "__main__":
    main()
