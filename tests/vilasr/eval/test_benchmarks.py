"""Benchmark record files in each benchmark's form -> EvalRecords; bad records skipped with a
reason; a video record read through OpenCV."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval_fixtures import write_benchmark_files, write_video
from vilasr.errors import InputError
from vilasr.eval.benchmarks import (Benchmark, frame_indices, load_records, read_video_frames, record_images)
from vilasr.eval.metrics import Aggregate


@pytest.fixture()
def files(tmp_path):
    return write_benchmark_files(tmp_path)


def test_each_benchmark_form_loads(files, tmp_path):
    img = tmp_path / "img"
    maze = load_records(files["maze"], img)
    assert not maze.skipped and len(maze.records) == 1
    rec = maze.records[0]
    assert rec.image_paths == (img / "maze.png",) and rec.grid_size == 4 and rec.options[1] == "B. down"
    assert rec.id == "#000000"  # no id in the file: its position
    spatial = load_records(files["spatialeval"], img).records[0]
    assert spatial.options == () and "A. yes" in spatial.question  # options inside the question
    vsi = load_records(files["vsi"], img).records
    assert [r.id for r in vsi] == ["7", "8"]
    assert len(vsi[0].image_paths) == 16 and not vsi[0].is_video
    assert vsi[1].is_video and vsi[1].question_type == "object_rel_direction_hard"
    spar = load_records(files["spar"], img).records
    assert [r.problem_type for r in spar] == ["vci", "regression"]
    assert spar[0].question_type == "view_change_infer"
    mmsi = load_records(files["mmsi"], img).records[0]
    assert len(mmsi.image_paths) == 2 and mmsi.data_type == "multi_view"


def test_frame_lists_are_used_as_they_are(files, tmp_path):
    record = load_records(files["vsi"], tmp_path / "img").records[0]
    frames = record_images(record, n_frames=4)  # --frames applies to video files only
    assert len(frames) == 16 and [int(f[0, 0, 0]) for f in frames[:3]] == [0, 10, 20]


def test_a_video_record_is_read_through_opencv_at_rounded_linspace(tmp_path):
    path = write_video(tmp_path / "v.avi", n=40)
    assert frame_indices(40, 16) == [int(i) for i in np.round(np.linspace(0, 39, 16))]
    assert frame_indices(40, 16)[:4] == [0, 3, 5, 8]
    frames = read_video_frames(path, 16)
    assert len(frames) == 16 and frames[0].shape == (48, 64, 3)
    levels = [float(f.mean()) for f in frames]
    expected = [5.0 * i for i in frame_indices(40, 16)]
    assert np.allclose(levels, expected, atol=2.0)  # MJPG is lossy; frames are 5 grey levels apart


def test_video_frames_flag(files, tmp_path):
    record = load_records(files["vsi"], tmp_path / "img").records[1]
    assert len(record_images(record, n_frames=5)) == 5


def test_bad_records_are_skipped_with_their_reason(tmp_path):
    from eval_fixtures import png

    png(tmp_path / "ok.png")
    good = {"question": "q", "answer": "A", "problem_type": "multiple choice", "image_path": ["ok.png"]}
    raw = [good, {**good, "image_path": ["gone.png"]}, {k: v for k, v in good.items() if k != "answer"},
           {**good, "problem_type": "essay"}, "not a record", {**good, "id": "x"}, {**good, "id": "x"},
           {**good, "image_path": []}, {**good, "options": "A. a"}]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(raw))
    loaded = load_records(path)
    assert [r.id for r in loaded.records] == ["#000000", "x"]
    reasons = {s.position: s.reason for s in loaded.skipped}
    assert set(reasons) == {1, 2, 3, 4, 6, 7, 8}
    assert "gone.png is missing" in reasons[1] and "'answer'" in reasons[2] and "essay" in reasons[3]
    assert "twice" in reasons[6] and "image_path" in reasons[7] and "options" in reasons[8]


def test_jsonl_files_load_and_unreadable_files_are_input_errors(tmp_path):
    from eval_fixtures import png

    png(tmp_path / "ok.png")
    rec = {"question": "q", "answer": 3, "problem_type": "numerical", "image_path": "ok.png"}
    (tmp_path / "b.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(rec | {"id": "2"}) + "\n")
    loaded = load_records(tmp_path / "b.jsonl")
    assert len(loaded.records) == 2 and loaded.records[0].answer == "3"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="neither JSON nor JSON lines"):
        load_records(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no such file"):
        load_records(tmp_path / "missing.json")
    (tmp_path / "num.json").write_text("3")
    with pytest.raises(InputError, match="holds a JSON int"):
        load_records(tmp_path / "num.json")


def test_benchmark_table():
    assert Benchmark.VSI.aggregate is Aggregate.VSI_TASKS and Benchmark.SPAR.aggregate is Aggregate.SPAR_TYPES
    assert Benchmark.MMSI.aggregate is Aggregate.MEAN
    assert {b.paper_7b for b in Benchmark} == {98.2, 45.4, 37.6, 30.2, None}
    assert [b for b in Benchmark if b.builtin] == [Benchmark.SYNTH_MAZE, Benchmark.SYNTH_MULTIVIEW]
