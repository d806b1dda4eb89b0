"""Benchmark record files (SPEC §6) -> `EvalRecord`s, and their images (stills, frame lists, or one
video file sampled with OpenCV).

A record file is a JSON list (or JSON lines) of records with `question`, `answer`, `problem_type`,
`image_path` (a list, or one path as the reference's maze and SpatialEval files have), and
optionally `options` (absent when they are inside the question), `data_type`,
`original_question_type`, `grid_size`, `id`. A record that cannot be used -- a missing field, an
image file that is not there -- is skipped: `load_records` returns it as a `Skipped` with the
reason, and the run goes on. Only a file that cannot be read at all is an error (`InputError`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from drawing_ops.protocol import ProblemType
from vilasr.errors import InputError
from vilasr.eval.metrics import Aggregate

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_FRAMES = 16
MAX_FRAMES = 64


class Benchmark(str, enum.Enum):
    """The benchmarks `vilasr eval` knows: how they aggregate and what the paper's 7B model scored."""

    MAZE = "maze"
    SPATIALEVAL = "spatialeval"
    VSI = "vsi"
    SPAR = "spar"
    MMSI = "mmsi"
    SYNTH_MAZE = "synth-maze"
    SYNTH_MULTIVIEW = "synth-multiview"

    def __str__(self) -> str:
        return self.value

    @property
    def aggregate(self) -> Aggregate:
        return {Benchmark.VSI: Aggregate.VSI_TASKS, Benchmark.SPAR: Aggregate.SPAR_TYPES}.get(self, Aggregate.MEAN)

    @property
    def builtin(self) -> bool:
        """Made by `synth` (no download needed)."""
        return self in (Benchmark.SYNTH_MAZE, Benchmark.SYNTH_MULTIVIEW)

    @property
    def paper_7b(self) -> float | None:
        """ViLaSR-7B's published overall score in percent (SPEC §8), where the paper reports one."""
        return PAPER_7B.get(self)

    @property
    def default_data_type(self) -> str:
        return {Benchmark.MAZE: "maze", Benchmark.SYNTH_MAZE: "maze", Benchmark.VSI: "video",
                Benchmark.SYNTH_MULTIVIEW: "multi_view"}.get(self, "single_view")


PAPER_7B = {Benchmark.MAZE: 98.2, Benchmark.VSI: 45.4, Benchmark.SPAR: 37.6, Benchmark.MMSI: 30.2}


@dataclasses.dataclass(frozen=True)
class EvalRecord:
    """One benchmark question, its images resolved to paths (checked to exist)."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    problem_type: str
    data_type: str
    image_paths: tuple[Path, ...]
    question_type: str = ""   # `original_question_type` (per-type tables, VSI/SPAR means)
    grid_size: int | None = None

    @property
    def is_video(self) -> bool:
        return len(self.image_paths) == 1 and self.image_paths[0].suffix.lower() in VIDEO_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A record left out, and why (listed in the report)."""

    position: int          # 0-based position in the file
    id: str | None
    reason: str

    def to_json(self) -> dict:
        return {"position": self.position, "id": self.id, "reason": self.reason}


@dataclasses.dataclass
class Loaded:
    records: list[EvalRecord]
    skipped: list[Skipped]


class RecordError(ValueError):
    """Why one record cannot be used (it is skipped, never fatal)."""


def read_record_file(path: Path) -> list:
    """The raw records of a JSON list or JSON-lines file; InputError if the file is unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--data {path}: no such file; give a benchmark JSON file (a list of records)")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        try:
            data = [json.loads(ln) for ln in lines]
        except ValueError as e:
            raise InputError(f"--data {path} is neither JSON nor JSON lines ({e}); give a benchmark file in the "
                             "ViLaSR-eval form") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"--data {path} holds a JSON {type(data).__name__}; a benchmark file holds a list of "
                         "records")
    return data


def load_records(path: Path, images_dir: Path | None = None) -> Loaded:
    """Every usable record of the file at `path` (image paths relative to `images_dir`, default the
    file's folder); unusable ones are returned as `Skipped`."""
    path = Path(path)
    base = Path(images_dir) if images_dir is not None else path.parent
    if not base.is_dir():
        raise InputError(f"--images {base}: no such folder; give the folder the records' image paths start from")
    records, skipped, seen = [], [], set()
    for position, raw in enumerate(read_record_file(path)):
        rid = _record_id(raw, position)
        try:
            record = parse_record(raw, position, base)
            if record.id in seen:
                raise RecordError(f"id {record.id!r} appears twice; only the first is run")
        except RecordError as e:
            skipped.append(Skipped(position, rid, str(e)))
            continue
        seen.add(record.id)
        records.append(record)
    return Loaded(records, skipped)


def _record_id(raw, position: int) -> str:
    if isinstance(raw, dict):
        for key in ("id", "question_id", "qid"):
            if isinstance(raw.get(key), (str, int)) and not isinstance(raw.get(key), bool):
                return str(raw[key])
    return f"#{position:06d}"


def parse_record(raw, position: int, base: Path) -> EvalRecord:
    """One raw record -> EvalRecord; RecordError naming what is wrong."""
    if not isinstance(raw, dict):
        raise RecordError(f"is a JSON {type(raw).__name__}, not an object")
    for key in ("question", "answer", "problem_type", "image_path"):
        if key not in raw:
            raise RecordError(f"has no {key!r}")
    question, answer, problem_type = raw["question"], raw["answer"], raw["problem_type"]
    if not isinstance(question, str) or not question.strip():
        raise RecordError("'question' is not a non-empty string")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str):
        raise RecordError("'answer' is not a string")
    try:
        problem_type = str(ProblemType(str(problem_type).strip().lower()))
    except ValueError:
        raise RecordError(f"'problem_type' {problem_type!r} is not one of {[str(p) for p in ProblemType]}") from None
    options = raw.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise RecordError("'options' is not a list of strings")
    paths = raw["image_path"]
    paths = [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise RecordError("'image_path' is not a path or a non-empty list of paths")
    resolved = tuple(Path(p) if Path(p).is_absolute() else base / p for p in paths)
    missing = [str(p) for p in resolved if not p.is_file()]
    if missing:
        raise RecordError(f"image file {missing[0]} is missing" + (f" (and {len(missing) - 1} more)"
                                                                   if len(missing) > 1 else ""))
    grid = raw.get("grid_size")
    return EvalRecord(id=_record_id(raw, position), question=question, options=tuple(options), answer=answer,
                      problem_type=problem_type, data_type=str(raw.get("data_type") or ""),
                      image_paths=resolved, question_type=str(raw.get("original_question_type") or ""),
                      grid_size=grid if isinstance(grid, int) and not isinstance(grid, bool) else None)


# -- pixels -----------------------------------------------------------------------------------------

def frame_indices(n_total: int, n_frames: int) -> list[int]:
    """round(linspace(0, n_total − 1, n_frames)): the frames a video record is shown as."""
    return [int(i) for i in np.round(np.linspace(0, n_total - 1, n_frames))]


def read_video_frames(path: Path, n_frames: int = DEFAULT_FRAMES) -> list[np.ndarray]:
    """`n_frames` RGB frames of the video at `path`, at `frame_indices`; RecordError if unreadable."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise RecordError(f"OpenCV cannot open the video {path}")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise RecordError(f"the video {path} has no frames")
        wanted = frame_indices(total, n_frames)
        frames: dict[int, np.ndarray] = {}
        # grab() walks without decoding; retrieve() decodes only the frames we keep (seeking by
        # frame number is inexact for many codecs)
        for index in range(wanted[-1] + 1):
            if not capture.grab():
                raise RecordError(f"the video {path} ends at frame {index}, before the {total} it announces")
            if index in wanted:
                ok, bgr = capture.retrieve()
                if not ok:
                    raise RecordError(f"cannot decode frame {index} of {path}")
                frames[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return [frames[i] for i in wanted]
    finally:
        capture.release()


def read_still(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise RecordError(f"cannot read image {path} ({e})") from None


def record_images(record: EvalRecord, n_frames: int = DEFAULT_FRAMES) -> list[np.ndarray]:
    """The images a record is shown as: its stills or listed frames as they are, or `n_frames`
    frames sampled from its one video file."""
    if record.is_video:
        return read_video_frames(record.image_paths[0], n_frames)
    return [read_still(p) for p in record.image_paths]


def check_frames(n: int) -> int:
    if not 1 <= n <= MAX_FRAMES:
        raise InputError(f"--frames {n}: sample 1..{MAX_FRAMES} frames from a video")
    return n


def data_types(records: Sequence[EvalRecord]) -> list[str]:
    return sorted({r.data_type for r in records})
