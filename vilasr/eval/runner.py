"""The benchmark runner: records -> rollouts -> scores -> `results.jsonl` -> `EvalSummary`.

`run_eval(records, generate, out)` takes the rollout as a function (`generate(tasks)` returns one
Trajectory-like object per RolloutTask: `.turns`, `.finish_reason`, `.response_len`, `.images`),
so the same runner serves a real model (`model_generate`, which also streams records through
continuous batching), a recorded or scripted one in tests, and a benchmark of slot counts.

Resume: every finished record is one line of `out/results.jsonl`, appended and flushed as it
ends; a new run into the same folder skips the ids already there (a torn last line, from a
killed run, is dropped). A record whose images cannot be read is written as a skipped line, so it
is reported and not retried.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import itertools
import json
import os
import re
import zlib
from collections import Counter
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Sequence

from drawing_ops import is_reflective, parse_tool_calls
from drawing_ops.protocol import IMAGE_PLACEHOLDER, Role
from vilasr.eval.benchmarks import Benchmark, EvalRecord, RecordError, Skipped, record_images
from vilasr.eval.metrics import Aggregate, Semantics, extract_answer, overall, score, wilson_interval
from vilasr.eval.rewards import format_items

RESULTS = "results.jsonl"
IMAGES = "images"
MAX_INPUTS_SHOWN = 4   # input images kept for the gallery (a 16-frame video keeps its first 4)


class Status(str, enum.Enum):
    """What became of a record."""

    SCORED = "scored"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean score over `n` records with its 95 % Wilson interval (all in [0, 1])."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, scores: Sequence[float]) -> Interval:
        n = len(scores)
        total = float(sum(scores))
        low, high = wilson_interval(total, n)
        return cls(total / n if n else 0.0, low, high, n)


@dataclasses.dataclass
class EvalSummary:
    """What a run measured. Scores are fractions in [0, 1]; `overall` follows the benchmark's
    aggregate (SPEC §4); `overall_interval` is given where the overall is a plain record mean."""

    benchmark: str
    scored: int
    overall: float | None
    overall_interval: Interval | None
    per_type: dict[str, Interval]
    per_data_type: dict[str, Interval]
    format_rate: float
    reflective_rate: float
    mean_turns: float
    mean_tool_calls: float
    mean_response_tokens: float
    finish_reasons: dict[str, int]
    skipped: list[Skipped]
    template_note: str = ""

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["skipped"] = [s.to_json() for s in self.skipped]
        return out

    @classmethod
    def from_json(cls, data: dict) -> EvalSummary:
        data = dict(data)
        interval = data.get("overall_interval")
        data["overall_interval"] = Interval(**interval) if interval else None
        data["per_type"] = {k: Interval(**v) for k, v in data["per_type"].items()}
        data["per_data_type"] = {k: Interval(**v) for k, v in data["per_data_type"].items()}
        data["skipped"] = [Skipped(**s) for s in data["skipped"]]
        return cls(**data)


# -- one record ------------------------------------------------------------------------------------

def task_seed(record_id: str) -> int:
    """A record's own sampling key: its tokens do not depend on its batch or on a resume."""
    return zlib.crc32(record_id.encode("utf-8"))


def tool_calls(turns: Sequence[str]) -> int:
    """Model turns that called a tool: they hold a fenced block and no answer."""
    parsed = [parse_tool_calls(t) for t in turns]
    return sum(1 for p in parsed if p.answer is None and p.num_blocks > 0)


def image_folder(record_id: str) -> str:
    """A file-system-safe, unique folder name for a record's images."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", record_id)[:60]
    return f"{slug}-{hashlib.sha1(record_id.encode('utf-8')).hexdigest()[:8]}"


def result_line(record: EvalRecord, benchmark: Benchmark, traj, image_paths: Sequence[str], num_inputs: int) -> dict:
    """The results.jsonl line of a finished trajectory."""
    turns = list(traj.turns)
    reply = turns[-1] if turns else ""  # the reference scores the last assistant turn (its model_output)
    return {
        "id": record.id, "status": str(Status.SCORED), "benchmark": str(benchmark),
        "question": record.question, "options": list(record.options), "answer": record.answer,
        "problem_type": record.problem_type, "data_type": record.data_type, "question_type": record.question_type,
        "prediction": extract_answer(reply, Semantics.EVAL), "score": score(reply, record.answer, record.problem_type),
        "finish_reason": str(traj.finish_reason), "turns": len(turns), "tool_calls": tool_calls(turns),
        "tokens": int(traj.response_len), "format": float(format_items(turns) is not None),
        "reflective": bool(turns) and is_reflective(turns), "conversation": turns,
        "images_per_turn": images_per_turn(getattr(traj, "messages", []), len(turns)),
        "num_inputs": num_inputs, "images": list(image_paths),
    }


def images_per_turn(messages: Sequence[dict], num_turns: int) -> list[int]:
    """How many images each model turn drew: the `<image>`s of the feedback turn that follows it."""
    counts, turn = [0] * num_turns, -1
    for message in messages:
        if message.get("role") == str(Role.ASSISTANT):
            turn += 1
        elif message.get("role") == str(Role.USER) and 0 <= turn < num_turns:
            counts[turn] += message.get("content", "").count(IMAGE_PLACEHOLDER)
    return counts


def skipped_line(record: EvalRecord, reason: str) -> dict:
    return {"id": record.id, "status": str(Status.SKIPPED), "reason": reason}


# -- results.jsonl ----------------------------------------------------------------------------------

def read_results(path: Path) -> list[dict]:
    """The complete lines of a results file; a torn last line (a killed writer) is cut off the file."""
    path = Path(path)
    if not path.is_file():
        return []
    lines, good_bytes = [], 0
    with path.open("rb") as f:
        for raw in f:
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("torn")
                lines.append(json.loads(raw))
            except ValueError:
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return lines


def append_lines(path: Path, lines: Iterable[dict]) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        f.flush()
        os.fsync(f.fileno())


# -- the run ----------------------------------------------------------------------------------------

def make_task(record: EvalRecord, images, benchmark: Benchmark):
    from vilasr.rollout import RolloutTask

    return RolloutTask(images=images, question=record.question, options=record.options,
                       problem_type=record.problem_type, data_type=record.data_type or benchmark.default_data_type,
                       seed=task_seed(record.id))


def _write_images(out: Path, record: EvalRecord, images, num_inputs: int) -> list[str]:
    from PIL import Image

    keep = list(range(min(num_inputs, MAX_INPUTS_SHOWN))) + list(range(num_inputs, len(images)))
    folder = Path(IMAGES) / image_folder(record.id)
    (out / folder).mkdir(parents=True, exist_ok=True)
    paths = []
    for k in keep:
        rel = folder / f"{k + 1}.png"
        tmp = out / rel.with_suffix(".png.tmp")
        Image.fromarray(images[k]).save(tmp, format="PNG")
        os.replace(tmp, out / rel)
        paths.append(rel.as_posix())
    return paths


def run_eval(records: Sequence[EvalRecord], generate: Callable, out: Path, *, benchmark: Benchmark,
             batch_size: int = 8, frames: int = 16, skipped: Sequence[Skipped] = (), progress: bool = True,
             stop=None, template_note: str = "") -> EvalSummary:
    """Run every record not yet in `out/results.jsonl` and summarise the whole file.

    A `generate` with a `stream(tasks, slots)` method (`model_generate`'s) rolls records out with
    continuous batching through `batch_size` slots, reading each record's images only when a slot
    is free for it, and each record's line is written as soon as its trajectory ends; a plain
    `generate(tasks)` gets `batch_size` records at a time. `stop` (a
    vilasr.cli.interrupts.StopRequest, optional): once set, no new record starts, the ones under
    way finish and are kept, and `stop.stop()` is called."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    done = {line["id"] for line in read_results(results_path)}
    pending = [r for r in records if r.id not in done]
    finished = len(records) - len(pending)
    bar = tqdm(total=len(records), initial=finished, desc=f"eval {benchmark}", unit="record",
               disable=not progress)
    under_way: dict[int, tuple[EvalRecord, int]] = {}   # task position in the stream -> its record

    handed = itertools.count()

    def tasks():  # each record's images are read when a slot takes it; unreadable ones are written skipped
        nonlocal finished
        for record in pending:
            if stop is not None and stop.requested:
                return
            try:
                images = record_images(record, frames)
            except RecordError as e:
                append_lines(results_path, [skipped_line(record, str(e))])
                finished += 1
                bar.update(1)
                continue
            under_way[next(handed)] = (record, len(images))
            yield make_task(record, images, benchmark)

    stream = getattr(generate, "stream", None) or functools.partial(_batches, generate)
    try:
        for i, traj in stream(tasks(), batch_size):
            record, num_inputs = under_way.pop(i)
            paths = _write_images(out, record, list(traj.images), num_inputs)
            append_lines(results_path, [result_line(record, benchmark, traj, paths, num_inputs)])
            finished += 1
            bar.update(1)
    finally:
        bar.close()
    if stop is not None and stop.requested:
        stop.stop(f"{finished} of {len(records)} records are in {results_path}; run the same command to resume")
    wanted = {r.id for r in records}
    lines = [line for line in read_results(results_path) if line["id"] in wanted]
    return summarize(lines, benchmark, skipped, template_note=template_note)


def _batches(generate: Callable, tasks: Iterable, batch_size: int) -> Iterator[tuple[int, object]]:
    """A plain `generate(list_of_tasks)` as a stream: `batch_size` tasks at a time."""
    tasks, start = iter(tasks), 0
    while batch := list(itertools.islice(tasks, batch_size)):
        yield from enumerate(generate(batch), start)
        start += len(batch)


def summarize(lines: Sequence[dict], benchmark: Benchmark, skipped: Sequence[Skipped] = (),
              template_note: str = "") -> EvalSummary:
    """The summary of results lines (pure: no files)."""
    scored = [line for line in lines if line.get("status") == str(Status.SCORED)]
    skipped = list(skipped) + [Skipped(-1, line["id"], line.get("reason", "")) for line in lines
                               if line.get("status") == str(Status.SKIPPED)]
    typed = [(line["question_type"] or line["problem_type"], line["score"]) for line in scored]
    by_type: dict[str, list[float]] = {}
    for qtype, value in typed:
        by_type.setdefault(qtype, []).append(value)
    by_data: dict[str, list[float]] = {}
    for line in scored:
        by_data.setdefault(line["data_type"] or "-", []).append(line["score"])
    n = len(scored)

    def mean(key: str) -> float:
        return sum(float(line[key]) for line in scored) / n if n else 0.0

    return EvalSummary(
        benchmark=str(benchmark), scored=n, overall=overall(benchmark.aggregate, typed),
        overall_interval=(Interval.of([line["score"] for line in scored])
                          if benchmark.aggregate is Aggregate.MEAN and n else None),
        per_type={t: Interval.of(v) for t, v in sorted(by_type.items())},
        per_data_type={t: Interval.of(v) for t, v in sorted(by_data.items())},
        format_rate=mean("format"), reflective_rate=mean("reflective"), mean_turns=mean("turns"),
        mean_tool_calls=mean("tool_calls"), mean_response_tokens=mean("tokens"),
        finish_reasons=dict(Counter(line["finish_reason"] for line in scored).most_common()),
        skipped=skipped, template_note=template_note)


class model_generate:
    """`generate` for `run_eval` from a model, its processor and a RolloutConfig: a batch of tasks
    (`__call__`) or a stream of them through a number of slots (`stream`, continuous batching)."""

    def __init__(self, model, processor, config, seed: int = 0):
        self.model, self.processor, self.config, self.seed = model, processor, config, seed

    def __call__(self, tasks):
        from vilasr.rollout import rollout

        return rollout(self.model, self.processor, tasks, self.config, seed=self.seed)

    def stream(self, tasks: Iterable, slots: int) -> Iterator[tuple[int, object]]:
        from vilasr.rollout.loop import rollout_stream

        return rollout_stream(self.model, self.processor, tasks, self.config, seed=self.seed, slots=slots)
