"""The pipeline report (`vilasr demo`): the accuracy table's lines, each target reached and not
reached (the required one and a missing stage too), metrics.jsonl with a damaged line, and a whole
report moved to another folder and opened in headless Chromium (images load, tables and targets
show; screenshot report.png in the test's tmp folder, printed by the test)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from browser import image_widths
from eval_fixtures import png

from vilasr.eval.benchmarks import Benchmark
from vilasr.eval.pipeline_report import (GRPO_LENGTH_PLOT, GRPO_PLOT, REPORT_HTML, STAGE_PLOT, SUMMARY_MD,
                                         PipelineStage, StageResult, Target, accuracy_table, check_targets,
                                         detail_table, read_metrics, write_pipeline_report)
from vilasr.eval.runner import summarize

MAZE, MULTIVIEW = Benchmark.SYNTH_MAZE, Benchmark.SYNTH_MULTIVIEW


def lines(n: int, correct: int, reflective: int = 0) -> list[dict]:
    """`n` scored result lines, the first `correct` right, the first `reflective` reflective."""
    return [{"id": f"r{k}", "status": "scored", "question_type": "", "problem_type": "multiple choice",
             "data_type": "maze", "score": float(k < correct), "format": 1.0, "reflective": k < reflective,
             "turns": 2, "tool_calls": 1, "tokens": 50, "finish_reason": "answer"} for k in range(n)]


def stage(name: str, maze: tuple, multiview: tuple) -> StageResult:
    """A stage's summaries from (records, correct, reflective) per benchmark, through the real summarize."""
    return StageResult(name, {str(MAZE): summarize(lines(*maze), MAZE),
                              str(MULTIVIEW): summarize(lines(*multiview), MULTIVIEW)},
                       {str(MAZE): Path(name) / "maze", str(MULTIVIEW): Path(name) / "multiview"})


# maze: 31.0 / 55.5 / 60.0 / 72.5 %; multiview 20 / 40 / 66 / 72 %. Reflective: 30 of 300 after cold
# start, 60 of 200 after reflective sampling.
BASE = stage("base", (100, 31), (100, 20))
COLD = stage("cold", (200, 111, 20), (100, 40, 10))
REFLECTIVE = stage("reflective", (100, 60, 30), (100, 66, 30))
RL = stage("rl", (200, 145), (100, 72))
STAGES = [RL, BASE, REFLECTIVE, COLD]     # any order: tables follow the training order


def replace(result: StageResult, bench: Benchmark, records: int, correct: int, reflective: int = 0) -> StageResult:
    summaries = dict(result.summaries, **{str(bench): summarize(lines(records, correct, reflective), bench)})
    return dataclasses.replace(result, summaries=summaries)


def checks(stages, elapsed_s=None) -> dict[Target, list]:
    out: dict[Target, list] = {}
    for c in check_targets(stages, elapsed_s):
        out.setdefault(c.target, []).append(c)
    return out


def test_stage_result_takes_the_stage_name():
    assert RL.stage is PipelineStage.RL and PipelineStage.BASE.label == "base (prompted to draw)"


def test_accuracy_table_lines():
    table = accuracy_table(STAGES).splitlines()
    assert table == ["| benchmark | base | cold | reflective | rl |", "|---|---|---|---|---|",
                     "| maze | 31.0 | 55.5 | 60.0 | 72.5 |", "| multiview | 20.0 | 40.0 | 66.0 | 72.0 |"]
    no_rl = accuracy_table([BASE, COLD, REFLECTIVE]).splitlines()
    assert no_rl[2:] == ["| maze | 31.0 | 55.5 | 60.0 | - |", "| multiview | 20.0 | 40.0 | 66.0 | - |"]


def test_detail_table_rows():
    rows = detail_table(STAGES).splitlines()[2:]
    assert len(rows) == 8 and rows[0].startswith("| base (prompted to draw) | maze | 100 | 31.0 [22.8, 40.6] |")
    assert rows[-1] == "| after RL | multiview | 100 | 72.0 [62.5, 79.9] | 100.0 | 0.0 | 1.00 | 50.0 | 2.00 |"


def test_targets_reached_and_not():
    got = checks(STAGES, elapsed_s=1200)
    assert not got[Target.MAZE_AFTER_RL][0].reached and "72.5 %" in got[Target.MAZE_AFTER_RL][0].detail
    assert got[Target.MULTIVIEW_AFTER_RL][0].reached
    assert [c.reached for c in got[Target.NO_REGRESSION]] == [True, True]
    assert got[Target.REFLECTION_GROWS][0].reached
    assert got[Target.REFLECTION_GROWS][0].detail == "30.0 % (200 records) vs 10.0 % (300 records)"
    required = got[Target.RL_BEATS_COLD][0]
    assert required.required and required.reached and "low 65.9 > high 62.2" in required.detail
    assert got[Target.TIME_BUDGET][0].reached
    assert sum(c.required for cs in got.values() for c in cs) == 1

    # the other way round
    rl = replace(replace(RL, MAZE, 100, 95), MULTIVIEW, 100, 66)
    got = checks([BASE, COLD, REFLECTIVE, rl], elapsed_s=2000)
    assert got[Target.MAZE_AFTER_RL][0].reached and not got[Target.MULTIVIEW_AFTER_RL][0].reached
    assert not got[Target.TIME_BUDGET][0].reached
    assert "None" not in str(got)
    # RL maze 66 % [56.3, 74.5] overlaps cold start's 55.5 % [48.6, 62.2]: the required target is missed
    got = checks([BASE, COLD, REFLECTIVE, replace(RL, MAZE, 100, 66)])
    assert not got[Target.RL_BEATS_COLD][0].reached and "low 56.3 <= high 62.2" in got[Target.RL_BEATS_COLD][0].detail
    assert Target.TIME_BUDGET not in got    # elapsed time unknown: no time target

    # RL maze 40 % [30.9, 49.8] falls below the reflective stage's 60 %
    got = checks([BASE, COLD, REFLECTIVE, replace(RL, MAZE, 100, 40)])
    maze, multiview = got[Target.NO_REGRESSION]
    assert not maze.reached and "rl vs reflective: high 49.8 < 60.0" in maze.detail and multiview.reached

    # records weigh: 12 % of 200 after reflective sampling < 40 of 300 (13.3 %) after cold start,
    # though the plain mean of the two benchmarks' rates would be 12 % > 10 %
    cold = replace(replace(COLD, MAZE, 200, 111, 40), MULTIVIEW, 100, 40, 0)
    reflective = replace(replace(REFLECTIVE, MAZE, 100, 60, 12), MULTIVIEW, 100, 66, 12)
    got = checks([BASE, cold, reflective, RL])
    assert not got[Target.REFLECTION_GROWS][0].reached
    assert got[Target.REFLECTION_GROWS][0].detail == "12.0 % (200 records) vs 13.3 % (300 records)"


def test_targets_with_a_missing_stage():
    got = checks([BASE, COLD, REFLECTIVE])
    for target in (Target.MAZE_AFTER_RL, Target.MULTIVIEW_AFTER_RL, Target.RL_BEATS_COLD, Target.NO_REGRESSION):
        for c in got[target]:
            assert not c.reached and "missing" in c.detail, c
    assert "rl vs reflective: missing: rl" in got[Target.NO_REGRESSION][0].detail
    assert got[Target.RL_BEATS_COLD][0].detail == "missing: synth-maze after RL"
    got = checks([BASE, REFLECTIVE, RL])
    assert not got[Target.REFLECTION_GROWS][0].reached and got[Target.REFLECTION_GROWS][0].detail == "missing: cold"


def test_read_metrics_skips_damaged_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "rew\n[1, 2]\n{"step": 3, "reward": 0.7}\n{"step": 4',
                    encoding="utf-8")
    assert read_metrics(path) == [{"step": 1, "reward": 0.5}, {"step": 3, "reward": 0.7}]
    assert read_metrics(tmp_path / "absent.jsonl") == []


GRPO_ROWS = [{"step": k, "loss": 0.1, "reward": 0.2 + 0.1 * k, "accuracy": 0.1 * k, "format": 0.9, "reflection": 0.0,
              "turns": 2.5, "tool_calls": 1.2, "response_len": 120.0 + k, "answered": 1.0} for k in range(1, 6)]
GRPO_ROWS.append({"step": 3, "loss": 0.2})    # an SFT-style line: ignored


def gallery_line() -> dict:
    """A final-model result line: one input image, one drawn after the first turn."""
    return {"id": "maze-7", "status": "scored", "question": "Which way?", "options": ["A. up", "B. down"],
            "answer": "B", "prediction": "B", "score": 1.0, "finish_reason": "answer", "turns": 2, "tool_calls": 1,
            "tokens": 60, "conversation": ["draw a path", "<answer>B</answer>"], "images_per_turn": [1, 0],
            "num_inputs": 1, "images": ["images/maze-7/1.png", "images/maze-7/2.png"]}


def test_report_files(tmp_path):
    paths = write_pipeline_report(tmp_path, STAGES, GRPO_ROWS, [], elapsed_s=1500.0,
                                  stage_seconds={"base": 60.0, "rl": 700.0}, settings={"model": "tiny"}, quick=True)
    assert {p.name for p in paths} == {SUMMARY_MD, REPORT_HTML, STAGE_PLOT, GRPO_PLOT, GRPO_LENGTH_PLOT}
    md = (tmp_path / SUMMARY_MD).read_text(encoding="utf-8")
    assert "Quick run" in md and "25 min 0 s" in md and "| maze | 31.0 | 55.5 | 60.0 | 72.5 |" in md
    assert "**NOT reached**: maze accuracy after RL" in md and "reached (required): RL beats cold start" in md
    assert "| after RL | 11 min 40 s |" in md and f"[{STAGE_PLOT}]({STAGE_PLOT})" in md
    assert not list(tmp_path.glob(".*.tmp"))
    # no GRPO rows: no GRPO plots
    paths = write_pipeline_report(tmp_path / "b", STAGES, [{"step": 1, "loss": 1.0}], [], elapsed_s=None,
                                  stage_seconds={}, settings={}, quick=False)
    assert {p.name for p in paths} == {SUMMARY_MD, REPORT_HTML, STAGE_PLOT}


def test_report_in_headless_chromium(browser, tmp_path):
    work = tmp_path / "work"
    eval_dir = work / "rl" / "maze"
    png(eval_dir / "images" / "maze-7" / "1.png", color=(200, 30, 30))
    png(eval_dir / "images" / "maze-7" / "2.png", color=(30, 200, 30))
    (eval_dir / "gallery.html").write_text("<html></html>", encoding="utf-8")
    write_pipeline_report(work, STAGES, GRPO_ROWS, [(Path("rl") / "maze", gallery_line())], elapsed_s=1500.0,
                          stage_seconds={"base": 60.0, "cold": 300.0, "reflective": 400.0, "rl": 700.0},
                          settings={"model": "tiny", "grpo steps": 5}, quick=True)
    moved = tmp_path / "moved"      # relative links only: the folder works anywhere
    shutil.move(work, moved)

    browser.get((moved / REPORT_HTML).as_uri())
    widths = image_widths(browser)
    assert len(widths) == 5 and all(w > 0 for w in widths), widths   # 3 plots, 1 input, 1 drawn

    rows = browser.execute_script(
        "return [...document.querySelectorAll('#accuracy tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
    assert rows == [["maze", "31.0", "55.5", "60.0", "72.5"], ["multiview", "20.0", "40.0", "66.0", "72.0"]]
    required = browser.find_elements("css selector", '#targets li[data-required="true"]')
    assert len(required) == 1 and required[0].is_displayed()
    assert "RL beats cold start on maze" in required[0].text and "NOT reached" not in required[0].text
    missed = browser.find_element("css selector", '#targets li[data-target="maze_after_rl"]')
    assert "NOT reached" in missed.text
    link = browser.find_element("css selector", 'a[href="rl/maze/gallery.html"]')
    assert link.text == "after RL: maze"

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    print(f"pipeline report screenshot: {shot}")

