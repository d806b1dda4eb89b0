"""The README's main command at toy sizes: `vilasr demo --quick` runs every stage of the pipeline
(data, the shipped base, cold start, reflective sampling, GRPO, the held-out benchmarks) and
writes the report, which a real headless Chromium then opens; a rerun resumes instead of
training again, and a run of other settings into the same folder is refused."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from browser import image_widths

from stages.pipeline import BENCHMARKS, DemoPlan, run_demo
from vilasr.cli.main import main
from vilasr.errors import ConfigError

QUICK = DemoPlan.quick()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    return out


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_quick_demo_runs_every_stage(demo):
    summary = (demo / "summary.md").read_text()
    for short in ("maze", "multiview"):
        assert re.search(rf"^\| {short} \|( (\d+\.\d|-) \|){{4}}$", summary, re.M), summary
    assert len(_lines(demo / "cold" / "metrics.jsonl")) == QUICK.cold_steps
    assert len(_lines(demo / "rl" / "metrics.jsonl")) == QUICK.rl_steps
    assert all("reward" in row for row in _lines(demo / "rl" / "metrics.jsonl"))
    for stage in ("base", "cold", "reflective", "rl"):
        for name in BENCHMARKS:
            results = _lines(demo / "eval" / stage / name / "results.jsonl")
            assert len(results) == QUICK.benchmark_records
    assert (demo / "rl" / "model" / "model.safetensors").is_file()
    timings = json.loads((demo / "timings.json").read_text())
    assert set(timings) == {"data", "cold", "reflective", "rl", "eval"}


def test_the_report_page_in_headless_chromium(demo, browser, tmp_path):
    browser.get((demo / "report.html").resolve().as_uri())
    widths = image_widths(browser)
    assert widths and all(w > 0 for w in widths), widths
    rows = browser.find_elements("css selector", "#accuracy tbody tr")
    assert [r.find_element("css selector", "td").text for r in rows] == ["maze", "multiview"]
    assert "RL beats cold start on maze" in browser.find_element("tag name", "body").text
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_a_rerun_resumes_and_other_settings_are_refused(demo):
    before = (demo / "rl" / "metrics.jsonl").read_text()
    assert main(["demo", "--out", str(demo), "--quick", "--no-progress"]) == 0
    assert (demo / "rl" / "metrics.jsonl").read_text() == before   # nothing trained again
    with pytest.raises(ConfigError, match="other settings"):
        run_demo(demo, dataclasses.replace(QUICK, rl_steps=3), progress=False)
