"""The runner on scripted trajectories: scoring and aggregation, resume after an interruption, bad
records counted and reported; the reports and `compare` on the result."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import png, scripted_generate, write_benchmark_files

from vilasr.eval.benchmarks import Benchmark, load_records
from vilasr.eval.report import compare_table, read_summary, summary_markdown, write_reports
from vilasr.eval.runner import RESULTS, read_results, run_eval, summarize

BOX = '<think>box it</think> Action: Object Mapper\n```json\n[{"index": 1, "bbox_2d": [1, 1, 9, 9], "label": "a"}]\n```'
BOX2 = '<think>again</think> Action: Object Mapper\n```json\n[{"index": 2, "bbox_2d": [2, 2, 20, 20], "label": "a"}]\n```'


def answer(text: str) -> str:
    return f"<think>so</think> Action: Answer\n<answer>{text}</answer>"


@pytest.fixture()
def spar(tmp_path):
    files = write_benchmark_files(tmp_path)
    return load_records(files["spar"], tmp_path / "img")


def test_scores_and_aggregates_scripted_replies(spar, tmp_path):
    script = {"How did the view change?": [BOX, BOX2, answer("move_right:1.2")],   # vci 0.8, reflective
              "Depth of the lamp?": ["no tags, just 2.5"]}                         # scored on the whole text: 0
    summary = run_eval(spar.records, scripted_generate(script), tmp_path / "run", benchmark=Benchmark.SPAR,
                       batch_size=2, progress=False)
    lines = {line["id"]: line for line in read_results(tmp_path / "run" / RESULTS)}
    vci, depth = lines["#000000"], lines["#000001"]
    assert vci["score"] == pytest.approx(0.8) and vci["prediction"] == "move_right:1.2"
    assert (vci["turns"], vci["tool_calls"], vci["format"], vci["reflective"]) == (3, 2, 1.0, True)
    assert vci["images_per_turn"] == [1, 1, 0] and len(vci["images"]) == 2 + 2  # 2 inputs, 2 drawn
    assert (tmp_path / "run" / vci["images"][-1]).is_file()
    assert depth["score"] == 0.0 and depth["format"] == 0.0 and depth["finish_reason"] == "length"
    # SPAR: the mean over its question types
    assert summary.overall == pytest.approx((0.8 + 0.0) / 2)
    assert summary.overall_interval is None  # not a plain record mean
    assert summary.per_type["view_change_infer"].mean == pytest.approx(0.8)
    assert summary.format_rate == 0.5 and summary.reflective_rate == 0.5
    assert summary.mean_turns == 2.0 and summary.mean_tool_calls == 1.0
    assert summary.finish_reasons == {"answer": 1, "length": 1}


def test_resume_after_an_interruption_redoes_nothing(tmp_path):
    png(tmp_path / "a.png")
    records = [{"id": f"r{k}", "question": f"q{k}", "answer": "A", "problem_type": "multiple choice",
                "image_path": ["a.png"]} for k in range(5)]
    (tmp_path / "b.json").write_text(json.dumps(records))
    loaded = load_records(tmp_path / "b.json")
    script = {f"q{k}": [answer("A" if k % 2 == 0 else "B")] for k in range(5)}
    calls = []
    inner = scripted_generate(script, calls)

    def dies_on_third_batch(tasks):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return inner(tasks)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(loaded.records, dies_on_third_batch, out, benchmark=Benchmark.MAZE, batch_size=2, progress=False)
    assert [line["id"] for line in read_results(out / RESULTS)] == ["r0", "r1", "r2", "r3"]
    with (out / RESULTS).open("a") as f:  # a writer killed mid-line
        f.write('{"id": "r4", "status": "sc')
    calls.clear()
    summary = run_eval(loaded.records, inner, out, benchmark=Benchmark.MAZE, batch_size=2, progress=False)
    assert calls == [["q4"]]  # only the unfinished record ran
    assert [line["id"] for line in read_results(out / RESULTS)] == ["r0", "r1", "r2", "r3", "r4"]
    assert summary.scored == 5 and summary.overall == pytest.approx(3 / 5)
    assert summary.overall_interval.low < 0.6 < summary.overall_interval.high


def test_bad_records_are_counted_and_reported_never_fatal(tmp_path):
    png(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    good = {"question": "q", "answer": "A", "problem_type": "multiple choice", "image_path": ["a.png"]}
    raw = [good | {"id": "ok"}, good | {"id": "no-image", "image_path": ["gone.png"]},
           good | {"id": "unreadable", "image_path": ["broken.png"]}, {"id": "no-question", "answer": "A"}]
    (tmp_path / "b.json").write_text(json.dumps(raw))
    loaded = load_records(tmp_path / "b.json")
    assert [s.id for s in loaded.skipped] == ["no-image", "no-question"]
    summary = run_eval(loaded.records, scripted_generate({"q": [answer("A")]}), tmp_path / "run",
                       benchmark=Benchmark.MMSI, skipped=loaded.skipped, progress=False)
    assert summary.scored == 1 and summary.overall == 1.0
    assert sorted(s.id for s in summary.skipped) == ["no-image", "no-question", "unreadable"]
    text = summary_markdown(summary)
    assert "## Skipped records (3)" in text and "gone.png is missing" in text and "cannot read image" in text


def test_reports_and_compare(spar, tmp_path):
    script = {"How did the view change?": [answer("move_right:1.2,rotate_left:30")],
              "Depth of the lamp?": [answer("2.5")]}
    out = tmp_path / "run"
    summary = run_eval(spar.records, scripted_generate(script), out, benchmark=Benchmark.SPAR, progress=False)
    written = write_reports(out, summary, read_results(out / RESULTS))
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert {p.name for p in written} >= {"summary.md", "gallery.html", "accuracy_per_type.png", "turns.png",
                                         "tool_calls.png", "finish_reasons.png", "summary.json"}
    md = (out / "summary.md").read_text()
    assert "**100.0**" in md and "ViLaSR-7B (paper): 37.6" in md and "--prompt-template" in md
    again = read_summary(out)
    assert again.overall == summary.overall and again.per_type.keys() == summary.per_type.keys()
    other = summarize([], Benchmark.SPAR)
    table = compare_table([("a", again), ("b", other)])
    rows = table.splitlines()
    assert rows[2].startswith("| a | spar | 2 | 100.0 |") and rows[3].startswith("| b | spar | 0 | - |")
    assert rows[4] == "| ViLaSR-7B (paper) | spar | - | 37.6 | - | - | - | - | - |"
    assert "| view_change_infer | 100.0 | - |" in table


def test_the_report_says_which_prompt_wording_ran():
    from vilasr.eval.report import template_note

    assert "--prompt-template" in template_note(None) and "ours (the default)" in template_note(None)
    assert template_note("ref.toml") == "Prompt wording: the template ref.toml."
    summary = summarize([], Benchmark.MAZE, template_note=template_note("ref.toml"))
    assert "Prompt wording: the template ref.toml." in summary_markdown(summary)


def test_a_stop_request_keeps_the_finished_batches(tmp_path):
    from vilasr.cli.interrupts import Stopped, StopRequest

    png(tmp_path / "a.png")
    records = [{"id": f"r{k}", "question": "q", "answer": "A", "problem_type": "multiple choice",
                "image_path": ["a.png"]} for k in range(4)]
    (tmp_path / "b.json").write_text(json.dumps(records))
    loaded = load_records(tmp_path / "b.json")
    stop = StopRequest()
    inner = scripted_generate({"q": [answer("A")]})

    def generate(tasks):  # a Ctrl-C arrives during the first batch
        stop.requested = True
        return inner(tasks)

    with pytest.raises(Stopped, match="2 of 4 records are in .*resume"):
        run_eval(loaded.records, generate, tmp_path / "run", benchmark=Benchmark.MAZE, batch_size=2,
                 progress=False, stop=stop)
    assert [line["id"] for line in read_results(tmp_path / "run" / RESULTS)] == ["r0", "r1"]
