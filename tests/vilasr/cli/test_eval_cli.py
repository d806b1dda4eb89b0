"""`vilasr eval` end to end on the tiny preset (small budgets), its resume, `vilasr compare`, and the
bad inputs that must end on the one error path (exit 2)."""

from __future__ import annotations

import json

import pytest

from vilasr.cli import main

SMALL = ["--preset", "tiny", "--max-turn-tokens", "16", "--max-turns", "2", "--max-turns-maze", "2",
         "--max-pixels", "12544", "--no-progress"]


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["eval", "--benchmark", "synth-maze", "--n", "4", "--batch-size", "2", "--out", str(out),
                 *SMALL]) == 0
    return out


def test_eval_end_to_end_on_the_built_in_maze(maze_run, capsys):
    lines = [json.loads(x) for x in (maze_run / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(line["status"] == "scored" for line in lines)
    assert all(line["tokens"] <= 2 * 16 + 1 and 1 <= line["turns"] <= 2 for line in lines)
    assert (maze_run / "data" / "test.json").is_file()  # made by synth
    for name in ("summary.md", "summary.json", "gallery.html", "accuracy_per_type.png", "turns.png",
                 "tool_calls.png", "finish_reasons.png"):
        assert (maze_run / name).stat().st_size > 0, name
    summary = json.loads((maze_run / "summary.json").read_text())
    assert summary["scored"] == 4 and summary["benchmark"] == "synth-maze"
    assert "--prompt-template" in (maze_run / "summary.md").read_text()


def test_a_finished_run_resumes_without_loading_the_model(maze_run, capsys, monkeypatch):
    import vilasr.cli.infer

    def no_model(*args):
        raise AssertionError("a finished run must not load the model")

    monkeypatch.setattr(vilasr.cli.infer, "load_model_and_processor", no_model)
    assert main(["eval", "--benchmark", "synth-maze", "--n", "4", "--out", str(maze_run), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "4 record(s), 4 already done" in out
    assert len((maze_run / "results.jsonl").read_text().splitlines()) == 4


def test_compare_prints_runs_side_by_side(maze_run, capsys):
    assert main(["compare", str(maze_run), str(maze_run)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | benchmark | records | overall")
    assert sum(1 for row in table if row.startswith(f"| {maze_run} | synth-maze | 4 |")) == 2
    assert not any("paper" in row for row in table)  # the paper has no synth-maze number


@pytest.mark.parametrize("args, message", [
    (["--benchmark", "spar"], "needs --data FILE"),
    (["--benchmark", "maze", "--data", "{tmp}/missing.json"], "no such file"),
    (["--benchmark", "maze", "--data", "{tmp}/bad.json"], "neither JSON nor JSON lines"),
    (["--benchmark", "maze", "--data", "{tmp}/empty.json"], "holds no usable record"),
    (["--benchmark", "synth-maze", "--out", "{tmp}/foreign"], "holds files vilasr did not write"),
    (["--benchmark", "maze", "--data", "{tmp}/empty.json", "--n", "3"], "drop it"),
    (["--benchmark", "synth-maze", "--frames", "99"], "--frames 99"),
])
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "empty.json").write_text(json.dumps([{"question": "q"}]))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    assert main(["eval", *args, *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"


def test_resuming_into_a_run_of_another_benchmark_is_refused(maze_run, capsys):
    assert main(["eval", "--benchmark", "synth-multiview", "--out", str(maze_run), *SMALL]) == 2
    assert "holds another eval run (benchmark was synth-maze, now synth-multiview)" in capsys.readouterr().err
    changed = [a if a != "16" else "17" for a in SMALL]  # another --max-turn-tokens
    assert main(["eval", "--benchmark", "synth-maze", "--n", "4", "--out", str(maze_run), *changed]) == 2
    assert "the rollout/sampling flags or the prompt template differ" in capsys.readouterr().err


def test_compare_needs_eval_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "not a finished `vilasr eval` run folder" in capsys.readouterr().err


def test_eval_on_frame_lists_and_a_video_file(tmp_path, capsys):
    """VSI-Bench form: a record listing 16 frames (used as they are) and one holding a video file
    (sampled with OpenCV to --frames frames); VSI's task-mean aggregate."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
    from eval_fixtures import write_benchmark_files

    files = write_benchmark_files(tmp_path)
    out = tmp_path / "run"
    assert main(["eval", "--benchmark", "vsi", "--data", str(files["vsi"]), "--images", str(tmp_path / "img"),
                 "--frames", "4", "--out", str(out), *SMALL]) == 0
    lines = {x["id"]: x for x in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert lines["7"]["num_inputs"] == 16 and lines["8"]["num_inputs"] == 4
    assert "mean of the 8 VSI-Bench task means" in (out / "summary.md").read_text()
    assert "ViLaSR-7B (paper): 45.4" in (out / "summary.md").read_text()


def test_an_interrupted_run_reports_what_is_done_and_resumes(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first batch: exit 130, the first batch kept and reported; the same command
    then finishes the rest. (The model is a scripted stand-in here: the tiny one is tested above.)"""
    import sys
    from pathlib import Path

    import vilasr.cli.infer
    import vilasr.eval.runner as runner
    from vilasr.cli.interrupts import Stopped

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
    from eval_fixtures import scripted_generate

    class AnyQuestion(dict):
        def __missing__(self, question):
            return ["<think>so</think> Action: Answer\n<answer>A</answer>"]

    from types import SimpleNamespace

    no_model = SimpleNamespace(config=SimpleNamespace(text=SimpleNamespace(max_position_embeddings=4096)))
    monkeypatch.setattr(vilasr.cli.infer, "load_model_and_processor", lambda *a: (no_model, None))
    monkeypatch.setattr(runner, "model_generate", lambda *a, **k: scripted_generate(AnyQuestion()))
    out = tmp_path / "run"
    real = runner.append_lines
    calls = []

    def interrupted(path, lines):
        real(path, lines)
        calls.append(len(lines))
        if len(calls) == 1:
            raise Stopped(2, "stopped after the first record")

    monkeypatch.setattr(runner, "append_lines", interrupted)
    args = ["eval", "--benchmark", "synth-maze", "--n", "3", "--batch-size", "2", "--out", str(out), *SMALL]
    assert main(args) == 130
    assert len((out / "results.jsonl").read_text().splitlines()) == 1   # each record's line as it ends
    assert json.loads((out / "summary.json").read_text())["scored"] == 1  # reported so far
    monkeypatch.setattr(runner, "append_lines", real)
    assert main(args) == 0
    assert "3 record(s), 1 already done" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["scored"] == 3
