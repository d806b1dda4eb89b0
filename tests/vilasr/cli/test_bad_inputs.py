"""The command line under bad input, interrupts and kills: every expected failure is one line
(what is wrong, what to do) with exit status 2, never a traceback; nothing of the user's is
deleted; an interrupted or killed run leaves nothing that looks finished.

Most cases run in-process through `vilasr.cli.main` (cheap); a few run as real subprocesses,
which is also where the signals are sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vilasr.cli import main

ROOT = Path(__file__).resolve().parents[3]
TURN = ('<think>box the cup</think> Action: Object Mapper\n```json\n'
        '[{"index": 1, "bbox_2d": [5, 5, 40, 30], "label": "cup"}]\n```\n')
SMALL = ["--size", "128", "--no-progress"]


@pytest.fixture()
def files(tmp_path):
    """Every input the table below names, made in a scratch folder (the cwd during a case)."""
    d = tmp_path
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(d / "in.png")
    Image.fromarray(np.zeros((2, 9000, 3), np.uint8)).save(d / "wide.png")
    png = (d / "in.png").read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "garbage.png").write_text("not an image")
    (d / "turn.txt").write_text(TURN)
    (d / "latin1.txt").write_bytes("<think>caf\xe9</think>".encode("latin-1"))
    (d / "empty.txt").write_text("  \n")
    (d / "bare.txt").write_text("[]")
    (d / "empty_block.txt").write_text(TURN.split("[", 1)[0] + "[]\n```\n")
    (d / "answer.txt").write_text("<think>done</think> Action: Answer\n<answer>B</answer>")
    (d / "schema.txt").write_text(TURN.replace("[5, 5, 40, 30]", "[5, 5, 40]"))
    (d / "index.txt").write_text(TURN.replace('"index": 1', '"index": 2'))
    (d / "exists.png").write_bytes(png)
    (d / "a_folder").mkdir()
    (d / "users").mkdir()
    (d / "users" / "thesis.tex").write_text("years of work")
    (d / "a_file").write_text("x")
    for name, data in (("ckpt_garbage", b"hello, not safetensors" * 8), ("ckpt_empty", b""),
                       ("ckpt_truncated", _safetensors_bytes()[:40])):
        (d / name).mkdir()
        (d / name / "config.json").write_text(json.dumps(_tiny_hf_config()))
        (d / name / "model.safetensors").write_bytes(data)
    (d / "dataset").mkdir()
    (d / "dataset" / "SYNTH_COMPLETE.json").write_text("{}")
    return d


def _tiny_hf_config() -> dict:
    from vilasr.model.config import Qwen25VLConfig

    return Qwen25VLConfig.preset("tiny").to_hf_dict()


def _safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.zeros((8, 8), np.float32)})


IMG = ["draw", "in.png", "--calls", "turn.txt"]
INFER = ["infer", "--preset", "tiny", "--question", "q"]

# (id, argv, a fragment the one-line message must hold)
BAD_INPUTS = [
    # draw: outputs
    ("draw-out-unwritable", [*IMG, "--out", "/proc/x.png"], "cannot write"),
    ("draw-out-no-extension", [*IMG, "--out", "drawn"], ".png"),
    ("draw-out-folder", [*IMG, "--out", "a_folder"], "is a folder"),
    ("draw-out-exists", [*IMG, "--out", "exists.png"], "--overwrite"),
    ("draw-out-is-the-input", [*IMG, "--out", "in.png", "--overwrite"], "input image"),
    ("draw-out-under-a-file", [*IMG, "--out", "a_file/x.png"], "in the way"),
    ("draw-out-missing", ["draw", "in.png", "--calls", "turn.txt"], "--out"),
    ("draw-backend-unknown", [*IMG, "--out", "o.png", "--backend", "cairo"], "invalid choice"),
    # draw: the turn
    ("draw-calls-not-utf8", ["draw", "in.png", "--calls", "latin1.txt", "--out", "o.png"], "not UTF-8"),
    ("draw-calls-missing-file", ["draw", "in.png", "--calls", "nope.txt", "--out", "o.png"], "no such file"),
    ("draw-calls-inline-text", ["draw", "in.png", "--calls", TURN, "--out", "o.png"], "not the text itself"),
    ("draw-calls-folder", ["draw", "in.png", "--calls", "a_folder", "--out", "o.png"], "is a folder"),
    ("draw-calls-empty", ["draw", "in.png", "--calls", "empty.txt", "--out", "o.png"], "is empty"),
    ("draw-calls-bare-json", ["draw", "in.png", "--calls", "bare.txt", "--out", "o.png"], "bare JSON"),
    ("draw-calls-empty-block", ["draw", "in.png", "--calls", "empty_block.txt", "--out", "o.png"], "empty list"),
    ("draw-calls-an-answer", ["draw", "in.png", "--calls", "answer.txt", "--out", "o.png"], "nothing to draw"),
    ("draw-calls-bad-schema", ["draw", "in.png", "--calls", "schema.txt", "--out", "o.png"], "ToolSchemaError"),
    ("draw-calls-bad-index", ["draw", "in.png", "--calls", "index.txt", "--out", "o.png"], "ToolIndexError"),
    # draw: the image
    ("draw-image-missing", ["draw", "nope.png", "--calls", "turn.txt", "--out", "o.png"], "no such image"),
    ("draw-image-garbage", ["draw", "garbage.png", "--calls", "turn.txt", "--out", "o.png"], "cannot read image"),
    ("draw-image-truncated", ["draw", "truncated.png", "--calls", "turn.txt", "--out", "o.png"], "cannot read"),
    ("draw-image-folder", ["draw", "a_folder", "--calls", "turn.txt", "--out", "o.png"], "is a folder"),
    ("draw-image-too-large", ["draw", "wide.png", "--calls", "turn.txt", "--out", "o.png"], "8192"),
    # demo
    ("draw-demo-out-a-file", ["draw-demo", "--out", "a_file"], "is a file"),
    ("draw-demo-out-unwritable", ["draw-demo", "--out", "/proc/demo"], "cannot write"),
    ("draw-demo-out-users-folder", ["draw-demo", "--out", "users"], "did not write"),
    # synth
    ("synth-seed-negative", ["synth", "maze", "--n", "2", "--seed", "-5", "--out", "d"], ">= 0"),
    ("synth-seed-not-a-number", ["synth", "maze", "--n", "2", "--seed", "abc", "--out", "d"], "whole number"),
    ("synth-n-negative", ["synth", "maze", "--n", "-1", "--out", "d"], ">= 0"),
    ("synth-nothing-to-write", ["synth", "maze", "--out", "d"], "--n-test"),
    ("synth-n-too-many", ["synth", "maze", "--n", "2000000", "--out", "d"], "1,000,000"),
    ("synth-size-huge", ["synth", "maze", "--n", "1", "--size", "100000", "--out", "d"], "4096"),
    ("synth-size-tiny", ["synth", "maze", "--n", "1", "--size", "10", "--out", "d"], "too small"),
    ("synth-loops-not-maze", ["synth", "static", "--n", "1", "--loops", "0.5", "--out", "d"], "mazes only"),
    ("synth-loops-out-of-range", ["synth", "maze", "--n", "1", "--loops", "2", "--out", "d"], "loop_fraction"),
    ("synth-benchmark-trajectories", ["synth", "maze", "--n", "1", "--format", "benchmark", "--trajectories",
                                      "reflective", "--out", "d"], "no trajectories"),
    ("synth-gallery-n-0", ["synth", "gallery", "--n", "0", "--out", "g"], "1..100"),
    ("synth-gallery-format", ["synth", "gallery", "--format", "tfds", "--out", "g"], "drop --format"),
    ("synth-out-dot-overwrite", ["synth", "maze", "--n", "1", "--out", ".", "--overwrite"], "current folder"),
    ("synth-out-a-file-overwrite", ["synth", "maze", "--n", "1", "--out", "a_file", "--overwrite"], "is a file"),
    ("synth-out-users-overwrite", ["synth", "maze", "--n", "1", "--out", "users", "--overwrite"], "left alone"),
    ("synth-out-exists", ["synth", "maze", "--n", "1", "--out", "dataset"], "--overwrite"),
    ("synth-out-unwritable", ["synth", "maze", "--n", "1", *SMALL, "--out", "/proc/d"], "cannot write"),
    ("synth-family-unknown", ["synth", "chess", "--n", "1", "--out", "d"], "invalid choice"),
    # infer (inputs and outputs are checked before the model loads)
    ("infer-image-missing", [*INFER, "--image", "nope.png"], "no such image"),
    ("infer-seed-negative", [*INFER, "--image", "in.png", "--seed", "-1"], ">= 0"),
    ("infer-out-a-file", [*INFER, "--image", "in.png", "--out", "a_file"], "is a file"),
    ("infer-temperature-negative", [*INFER, "--image", "in.png", "--temperature", "-1"], "temperature"),
    ("infer-budget-too-large", [*INFER, "--image", "in.png", "--max-turn-tokens", "1000000000"], "positions"),
    ("infer-model-missing", ["infer", "--model", "nope", "--image", "in.png", "--question", "q"], "not a directory"),
    ("infer-safetensors-garbage", ["infer", "--model", "ckpt_garbage", "--image", "in.png", "--question", "q",
                                   "--out", "o1"], "not a readable safetensors"),
    ("infer-safetensors-empty", ["infer", "--model", "ckpt_empty", "--image", "in.png", "--question", "q",
                                 "--out", "o2"], "not a readable safetensors"),
    ("infer-safetensors-truncated", ["infer", "--model", "ckpt_truncated", "--image", "in.png", "--question", "q",
                                     "--out", "o3"], "not a readable safetensors"),
    # the command itself
    ("no-command", [], "required"),
    ("unknown-command", ["train-everything"], "invalid choice"),
]


def run_main(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


def assert_one_line(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert fragment in lines[0], err


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_status_2(files, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(files)
    before = sorted(p.name for p in files.iterdir())
    assert run_main(argv) == 2
    captured = capsys.readouterr()
    assert_one_line(captured.err, fragment)
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written, nothing removed


def test_the_table_is_long_enough():
    assert len(BAD_INPUTS) >= 30


def test_tfds_without_tensorflow_says_which_extra(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    assert run_main(["synth", "maze", "--n", "1", "--format", "tfds", "--out", "d", *SMALL]) == 2
    assert_one_line(capsys.readouterr().err, "`data` extra")


def test_overwrite_refuses_a_users_folder_and_keeps_the_file(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    for family in ("maze", "gallery"):
        args = ["synth", family, "--n", "1", "--out", "users", "--overwrite"] + (SMALL if family == "maze" else [])
        assert run_main(args) == 2
        assert_one_line(capsys.readouterr().err, "users")
    assert (files / "users" / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in (files / "users").iterdir()) == ["thesis.tex"]
    # ... while our own finished output is replaced, and an empty folder is used.
    (files / "empty").mkdir()
    for out in ("dataset", "empty"):
        assert run_main(["synth", "maze", "--n", "1", "--format", "benchmark", "--out", out, "--overwrite",
                         *SMALL]) == 0
        assert json.loads((files / out / "SYNTH_COMPLETE.json").read_text())["family"] == "maze"


def test_n_test_alone_is_enough(files, monkeypatch):
    monkeypatch.chdir(files)
    assert run_main(["synth", "static", "--n-test", "1", "--format", "benchmark", "--out", "d", *SMALL]) == 0
    manifest = json.loads((files / "d" / "SYNTH_COMPLETE.json").read_text())
    assert manifest["splits"] == {"test": 1} and manifest["trajectories"] == "none"


def test_gallery_writes_its_manifest_and_can_be_replaced(files, monkeypatch):
    from synth import gallery

    monkeypatch.chdir(files)
    monkeypatch.setattr(gallery, "GALLERY_SIZES", {"maze": 128, "static": 96, "multiview": 128})
    for _ in range(2):
        assert run_main(["synth", "gallery", "--n", "1", "--out", "g", "--overwrite", "--no-progress"]) == 0
    assert len(json.loads((files / "g" / "SYNTH_COMPLETE.json").read_text())["files"]) == 3


def test_run_folders_are_reused_only_when_ours_and_lose_stale_images(files, monkeypatch):
    from vilasr.cli.outputs import MARKER, prepare_run_folder

    monkeypatch.chdir(files)
    out = prepare_run_folder(files / "run", "infer", ("image_*.png",))
    for k in (1, 2, 3):
        (out / f"image_{k}.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")  # not a name the command writes: kept
    prepare_run_folder(out, "infer", ("image_*.png",))
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt"]


def test_draw_writes_only_complete_files(files, monkeypatch):
    monkeypatch.chdir(files)
    assert run_main([*IMG, "--out", "new/drawn.png"]) == 0
    assert run_main([*IMG, "--out", "new/drawn.png"]) == 2  # exists
    assert run_main([*IMG, "--out", "new/drawn.png", "--overwrite"]) == 0
    assert sorted(p.name for p in (files / "new").iterdir()) == ["drawn.png"]  # no temporary left


def test_a_bug_prints_a_traceback_and_asks_for_a_report(files, monkeypatch, capsys):
    from vilasr.cli import draw

    monkeypatch.chdir(files)

    def broken(args):
        raise RuntimeError("an unexpected state")

    monkeypatch.setattr(draw, "run", broken)
    assert run_main([*IMG, "--out", "o.png"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: an unexpected state" in err and "report" in err


def test_ctrl_c_anywhere_is_one_line_and_130(files, monkeypatch, capsys):
    from vilasr.cli import draw_demo

    monkeypatch.chdir(files)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(draw_demo, "make_scene", interrupted)
    assert run_main(["draw-demo", "--out", "d"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stopped by Ctrl-C" in err and "Traceback" not in err


def test_stop_requests_let_a_loop_save_before_it_stops():
    from vilasr.cli.interrupts import Stopped, stop_requests

    saved = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Stopped) as stopped:
        with stop_requests() as stop:
            for step in range(1000):
                if step == 3:
                    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 3
                if stop.requested:
                    saved.append(step)
                    stop.stop(f"saved at step {step}")
    assert saved == [3] and stopped.value.exit_status == 130 and "step 3" in stopped.value.note
    with pytest.raises(Stopped):  # a second Ctrl-C stops at once
        with stop_requests():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


# -- real processes ----------------------------------------------------------------------------------

def vilasr_process(args, cwd, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "vilasr", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


SUBPROCESS_CASES = ["draw-out-unwritable", "draw-calls-not-utf8", "synth-seed-negative", "synth-out-dot-overwrite",
                    "infer-safetensors-truncated"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(files, case):
    argv, fragment = next(c[1:] for c in BAD_INPUTS if c[0] == case)
    proc = vilasr_process(argv, files)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    assert_one_line(err, fragment)


def _wait_for_work(out: Path, proc, timeout: float = 120) -> Path:
    """The run's .partial folder, once it holds at least one written image."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for partial in out.parent.glob(f".{out.name}.*.partial"):
            if any((partial / "images").rglob("*.png")):
                return partial
        time.sleep(0.05)
    raise AssertionError("the synth run never started writing")


def test_synth_interrupted_by_sigint_and_killed_by_sigkill(tmp_path):
    out = tmp_path / "data"
    args = ["synth", "maze", "--n", "100000", "--out", str(out), *SMALL]

    proc = vilasr_process(args, tmp_path)
    _wait_for_work(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("vilasr synth: stopped by Ctrl-C")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no OUT, no .partial

    proc = vilasr_process(args, tmp_path)
    partial = _wait_for_work(out, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert partial.is_dir() and not out.exists()  # a kill cannot clean up: the next run does

    proc = vilasr_process(["synth", "maze", "--n", "1", "--out", str(out), *SMALL], tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"removing {partial}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert json.loads((out / "SYNTH_COMPLETE.json").read_text())["splits"] == {"train": 1}
