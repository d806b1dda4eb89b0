"""The gallery in a real headless Chromium (Debian's chromium + chromium-driver, which `make test`
and .ci/run install when absent), driven with Selenium: every image loads (naturalWidth > 0),
each filter shows the expected number of records, and a screenshot is kept (gallery.png in the
test's tmp folder, printed by the test). The `browser` fixture is in conftest.py."""

from __future__ import annotations

from browser import image_widths
from eval_fixtures import scripted_generate, write_benchmark_files
from test_runner import BOX, BOX2, answer

from vilasr.eval.benchmarks import Benchmark, load_records
from vilasr.eval.report import write_reports
from vilasr.eval.runner import RESULTS, read_results, run_eval


def test_gallery_in_headless_chromium(browser, tmp_path):
    files = write_benchmark_files(tmp_path)
    records = (load_records(files["spar"], tmp_path / "img").records
               + load_records(files["mmsi"], tmp_path / "img").records)
    script = {"How did the view change?": [BOX, BOX2, answer("move_right:1.2")],   # partial (0.8), answer
              "Depth of the lamp?": [BOX, "cut off mid-turn"],                     # wrong, length
              "Where is the door?": [BOX, answer("C")]}                            # correct, answer
    out = tmp_path / "run"
    summary = run_eval(records, scripted_generate(script), out, benchmark=Benchmark.MMSI, progress=False)
    write_reports(out, summary, read_results(out / RESULTS))

    browser.get((out / "gallery.html").as_uri())
    widths = image_widths(browser)
    # inputs: 2 + 1 + 2; drawn: 2 + 1 + 1
    assert len(widths) == 9 and all(w > 0 for w in widths), widths

    def shown_after(kind, value):
        selector = ".filters button" + ("" if kind == "all" else f'[data-kind="{kind}"][data-value="{value}"]')
        browser.find_element("css selector", selector).click()
        visible = browser.execute_script(
            "return [...document.querySelectorAll('.record')].filter(r => r.offsetParent !== null).length")
        assert int(browser.find_element("id", "shown").text) == visible
        return visible

    expected = {("verdict", "correct"): 1, ("verdict", "partial"): 1, ("verdict", "wrong"): 1,
                ("finish", "answer"): 2, ("finish", "length"): 1, ("all", ""): 3}
    assert {key: shown_after(*key) for key in expected} == expected

    shot = tmp_path / "gallery.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    print(f"gallery screenshot: {shot}")
