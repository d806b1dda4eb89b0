"""Dataset files: the sharegpt JSON form of ViLaSR-data / LLaMA-Factory (export and import), the
benchmark JSON form of ViLaSR-eval (docs/method.md §6), and the Grain reader for our TFDS ArrayRecord datasets.

sharegpt. A JSON list of records {"conversations": [{"role", "content"}...], "images": [paths]},
paths relative to the JSON file, in `<image>` placeholder order. Our records also carry
"vilasr_meta": one JSON *string* (so a table loader infers one column type for every record)
with everything else a `Sample` holds (answer, options, ground-truth boxes, ...), which makes
export -> import give back identical samples. Records without it (e.g. ViLaSR-data) import too:
the answer comes from the last <answer>, the inputs are the images announced in the first user
turn, and the rest are taken as drawn images.

Reading our TFDS datasets does *not* need TensorFlow. Writing does: TFDS encodes Image features
through TensorFlow (`tensorflow-cpu`). Reading goes `tfds.data_source` (an ArrayRecord data
source that parses the stored tf.train.Example protos and decodes the PNGs with its NumPy/PIL
path) -> `grain.MapDataset.source(...)`. We checked this in a virtualenv with
tensorflow-datasets 4.9.10, grain 0.2.18 and array-record 0.8.6 and *no* tensorflow installed:
the records come back complete; with TensorFlow installed, reading does not import it either.
"""

from __future__ import annotations

import io as _io
import json
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from drawing_ops import assistant_turns, is_reflective
from drawing_ops.protocol import DEFAULT_TEMPLATE, IMAGE_PLACEHOLDER, SHAREGPT_ROLES, PromptTemplate, Role
from synth.records import Sample, canonical_json

MANIFEST = "SYNTH_COMPLETE.json"   # written last: a dataset directory without it is not finished
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


# -- PNG --------------------------------------------------------------------------------------------

def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def read_png(path_or_bytes) -> np.ndarray:
    from PIL import Image

    src = _io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB")).copy()


# -- sharegpt -----------------------------------------------------------------------------------------

def sharegpt_record(sample: Sample, image_paths: list[str], template: PromptTemplate = DEFAULT_TEMPLATE) -> dict:
    header = sample.header()
    conversation = header.pop("conversation")
    if not conversation:      # no trajectory: the prompt alone (an RL prompt), worded by `template`
        from synth import templates

        conversation = templates.prompt_messages(sample, template)
        header["prompt_only"] = True
    return {"conversations": conversation, "images": image_paths, "vilasr_meta": canonical_json(header)}


def export_sharegpt(samples: Iterable[Sample], out_dir, name: str = "train", images_dir: str = "images",
                    template: PromptTemplate = DEFAULT_TEMPLATE) -> Path:
    """Write `out_dir/<name>.json` and the PNGs under `out_dir/<images_dir>/<sample id>/` (prompt-only
    records are worded by `template`; trajectories already carry their wording)."""
    return _write_records(samples, out_dir, name, images_dir, lambda s: s.all_images,
                          lambda sample, paths: sharegpt_record(sample, paths, template))


def _write_records(samples, out_dir, name: str, images_dir: str, images_of, to_record) -> Path:
    """Write each sample's images as PNGs and `out_dir/<name>.json` with one record per sample."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for sample in samples:
        (out_dir / images_dir / sample.id).mkdir(parents=True, exist_ok=True)
        paths = []
        for k, image in enumerate(images_of(sample), start=1):
            rel = f"{images_dir}/{sample.id}/{k}.png"
            (out_dir / rel).write_bytes(png_bytes(image))
            paths.append(rel)
        records.append(to_record(sample, paths))
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def import_sharegpt(json_path) -> list[Sample]:
    """Samples from a sharegpt JSON file (ours or foreign, e.g. ViLaSR-data)."""
    json_path = Path(json_path)
    records = json.loads(json_path.read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{json_path}: a sharegpt file holds a JSON list of records")
    return [sharegpt_to_sample(r, json_path.parent, k) for k, r in enumerate(records)]


def sharegpt_to_sample(record: dict, base_dir, number: int = 0) -> Sample:
    base_dir = Path(base_dir)
    conversation = [_message(m) for m in record.get("conversations", record.get("messages", []))]
    paths = record.get("images") or []
    images = [read_png(p if os.path.isabs(p) else base_dir / p) for p in paths]
    if "vilasr_meta" in record:
        header = json.loads(record["vilasr_meta"])
        prompt_only = header.pop("prompt_only", False)
        header["conversation"] = [] if prompt_only else conversation
        return Sample.from_header(header, images)
    return _foreign_sample(conversation, images, number)


def _message(m: dict) -> dict:
    """A {"role", "content"} message from either sharegpt turn form (unknown roles kept as written)."""
    name = m["role"] if "role" in m else m.get("from")
    return {"role": str(SHAREGPT_ROLES.get(name, name)), "content": m["content"] if "role" in m else m.get("value", "")}


def _foreign_sample(conversation: list[dict], images: list[np.ndarray], number: int) -> Sample:
    users = [m["content"] for m in conversation if m["role"] == Role.USER]
    first = users[0] if users else ""
    num_inputs = min(first.count(IMAGE_PLACEHOLDER), len(images)) if users else len(images)
    assistants = assistant_turns(conversation)
    answer = _last_answer(assistants[-1]) if assistants else ""
    kind = "none" if not assistants else ("reflective" if is_reflective(assistants) else "cold")
    return Sample(id=f"sharegpt-{number:07d}", family="external", question=first, options=[], answer=answer,
                  problem_type="", data_type="", images=images[:num_inputs], meta={}, trajectory=kind,
                  conversation=conversation, drawn_images=images[num_inputs:])


def _last_answer(turn: str) -> str:
    """The last <answer> of a turn (a foreign record may hold several), or ""."""
    found = _ANSWER.findall(turn)
    return found[-1].strip() if found else ""


# -- benchmark form ---------------------------------------------------------------------------------

def benchmark_record(sample: Sample, image_paths: list[str]) -> dict:
    record = {
        "id": sample.id,
        "question": sample.question,
        "options": list(sample.options),
        "answer": sample.answer,
        "problem_type": sample.problem_type,
        "data_type": sample.data_type,
        "image_path": image_paths,
        "original_question_type": f"{sample.family}_{sample.question_kind}",
    }
    if sample.family == "maze":
        record["grid_size"] = sample.meta["grid_size"]
    return record


def export_benchmark(samples: Iterable[Sample], out_dir, name: str = "test", images_dir: str = "images") -> Path:
    """Write `out_dir/<name>.json` in the ViLaSR-eval benchmark form, with the input images only."""
    return _write_records(samples, out_dir, name, images_dir, lambda s: s.images, benchmark_record)


# -- TFDS ArrayRecord datasets, read through Grain (no TensorFlow needed) ---------------------------

def already_written(out_dir, manifest: str, wanted: dict, what: str) -> bool:
    """True when `out_dir` holds a finished `what` made as `wanted` says (its manifest file, written
    last, equals `wanted`); False when it holds none; SynthError when it holds another one (or a
    manifest that cannot be read), so nothing there is overwritten."""
    from synth.errors import SynthError

    path = Path(out_dir) / manifest
    if not path.is_file():
        return False
    try:
        if json.loads(path.read_text(encoding="utf-8")) == wanted:
            return True
    except ValueError:
        pass
    raise SynthError(f"{out_dir} holds another {what} (see {path}); remove it or choose another folder")


def read_manifest(out_dir) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} has no {MANIFEST}: it is not a finished `vilasr synth` dataset")
    return json.loads(path.read_text(encoding="utf-8"))


def example_to_sample(example: dict) -> Sample:
    """A decoded TFDS example ({"id", "family", "header", "images"}) -> Sample."""
    header = example["header"]
    header = json.loads(header.decode("utf-8") if isinstance(header, bytes) else header)
    images = example["images"]
    images = [images[k] for k in range(len(images))]
    return Sample.from_header(header, images)


def tfds_data_source(out_dir, split: str = "train"):
    """The TFDS ArrayRecord data source of a dataset written by `vilasr synth --format tfds`."""
    import tensorflow_datasets as tfds

    manifest = read_manifest(out_dir)
    return tfds.data_source(manifest["tfds_name"], data_dir=str(Path(out_dir)), split=split)


def grain_dataset(out_dir, split: str = "train", *, shuffle_seed: int | None = None):
    """A `grain.MapDataset` of Samples over the dataset's ArrayRecord files (random access)."""
    import grain

    ds = grain.MapDataset.source(tfds_data_source(out_dir, split))
    if shuffle_seed is not None:
        ds = ds.shuffle(seed=shuffle_seed)
    return ds.map(example_to_sample)


def load_samples(out_dir, split: str = "train") -> list[Sample]:
    """Every sample of a split, in id order (ArrayRecord files keep TFDS's shuffled order)."""
    return sorted(grain_dataset(out_dir, split), key=lambda s: s.id)
