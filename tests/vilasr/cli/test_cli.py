import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vilasr.cli import main

BOXES = json.dumps([{"index": 1, "bbox_2d": [5, 5, 40, 30], "label": "cup"}])


@pytest.fixture()
def image_path(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(path)
    return path


def turn(block: str) -> str:
    return f"<think>box the cup</think> Action: Object Mapper\n```json\n{block}\n```"


@pytest.fixture()
def calls_file(tmp_path):
    """A function writing a turn (from its JSON block) to a file and returning the path: --calls takes files."""
    def write(block: str, name: str = "turn.txt") -> str:
        path = tmp_path / name
        path.write_text(turn(block), encoding="utf-8")
        return str(path)
    return write


def test_draw_from_a_file(image_path, tmp_path, capsys, calls_file):
    out = tmp_path / "o" / "out.png"
    assert main(["draw", str(image_path), "--calls", calls_file(BOXES), "--out", str(out)]) == 0
    drawn = np.asarray(Image.open(out))
    assert tuple(drawn[5, 20]) == (255, 0, 0)  # the first box is red
    assert "image 2: 1 box(es)" in capsys.readouterr().out


def test_draw_from_file_several_sources_and_pil_backend(image_path, tmp_path):
    calls = tmp_path / "turn.txt"
    calls.write_text(turn(json.dumps([
        {"index": 1, "bbox_2d": [5, 5, 40, 30], "label": "cup"},
        {"index": 1, "start_point_2d": [0, 59], "end_point_2d": [79, 0], "label": "diag"}])))
    out = tmp_path / "out.png"
    assert main(["draw", str(image_path), "--calls", str(calls), "--out", str(out), "--backend", "pil"]) == 0
    assert out.exists()


@pytest.mark.parametrize("block, error", [
    ('[{"index": 2, "bbox_2d": [1, 2, 3, 4], "label": "x"}]', "ToolIndexError"),
    ('[{"index": 1, "bbox_2d": [1, 2, 3], "label": "x"}]', "ToolSchemaError"),
    ("[{'index': 1, 'bbox_2d': [1, 2", "ToolFormatError"),
])
def test_draw_bad_calls_print_typed_error(image_path, tmp_path, capsys, block, error, calls_file):
    out = tmp_path / "out.png"
    assert main(["draw", str(image_path), "--calls", calls_file(block), "--out", str(out)]) == 2
    assert error in capsys.readouterr().err
    assert not out.exists()


def test_draw_unreadable_image(tmp_path, capsys, calls_file):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["draw", str(bad), "--calls", calls_file(BOXES), "--out", str(tmp_path / "o.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_console_script_entry_point(image_path, tmp_path):
    out = tmp_path / "out.png"
    proc = subprocess.run([sys.executable, "-m", "vilasr.cli", "draw", str(image_path), "--calls", "-",
                           "--out", str(out)], input=turn(BOXES), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_draw_demo_writes_trajectory(tmp_path):
    assert main(["draw-demo", "--out", str(tmp_path)]) == 0
    images = sorted(tmp_path.glob("image_*.png"))
    assert len(images) == 4 and (tmp_path / "trajectory.png").exists()
    log = json.loads((tmp_path / "trajectory.json").read_text())
    assert log[-1]["role"] == "assistant" and "<answer>B</answer>" in log[-1]["content"]
    first, reflected = (np.asarray(Image.open(p)) for p in images[1:3])
    assert not np.array_equal(first, reflected)


def test_infer_tiny_preset_prints_trajectory_and_writes_images(image_path, tmp_path, capsys):
    out = tmp_path / "infer"
    template = tmp_path / "words.json"
    template.write_text(json.dumps({"question": "Q >> {question}", "image_line": "{image} is number {index}"}))
    assert main(["infer", "--preset", "tiny", "--image", str(image_path), "--question", "Where is the cup?",
                 "--max-turn-tokens", "16", "--out", str(out), "--prompt-template", str(template)]) == 0
    printed = capsys.readouterr().out
    assert "--- prompt ---" in printed and "--- model ---" in printed and "finish:" in printed
    assert "Q >> Where is the cup?" in printed and "<image: " in printed and "tokens> is number 1" in printed
    assert (out / "image_1.png").exists()
    template.write_text(json.dumps({"question": "Q >> {quesiton}"}))
    assert main(["infer", "--preset", "tiny", "--image", str(image_path), "--question", "q",
                 "--prompt-template", str(template)]) == 2
    assert "unknown field(s) {quesiton}" in capsys.readouterr().err


def test_infer_bad_inputs(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["infer", "--preset", "tiny", "--image", str(bad), "--question", "q"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["infer", "--model", str(tmp_path / "missing"), "--image", str(bad), "--question", "q"]) == 2


def test_python_dash_m_vilasr_and_version():
    import vilasr

    proc = subprocess.run([sys.executable, "-m", "vilasr", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"vilasr {vilasr.__version__}"


def test_infer_use_picks_a_preset_and_flags_override_it(capsys):
    import dataclasses

    from vilasr.cli import build_parser
    from vilasr.cli.infer import rollout_config_from_args
    from vilasr.rollout import RolloutConfig
    from vilasr.uses import ImageTokens

    def config(*flags):
        return rollout_config_from_args(build_parser().parse_args(
            ["infer", "--preset", "tiny", "--image", "x.png", "--question", "q", *flags]))

    assert config() == RolloutConfig.for_eval()
    assert config("--use", "rl") == RolloutConfig.for_rl()
    rl = RolloutConfig.for_rl()
    assert config("--use", "rl", "--temperature", "0.5", "--max-response-tokens", "none", "--image-tokens", "real",
                  "--max-pixels", "50176", "--strict") == dataclasses.replace(
        rl, sampling=dataclasses.replace(rl.sampling, temperature=0.5), max_response_tokens=None,
        image_tokens=ImageTokens.REAL, max_pixels=50176, strict=True)
    with pytest.raises(SystemExit):
        config("--use", "sft")
    with pytest.raises(SystemExit):
        config("--max-turns", "many")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["infer", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--max-turn-tokens MAX_TURN_TOKENS tokens per model turn (defaults: eval: 16384, rl: 1024)" in shown
    assert "--temperature TEMPERATURE sampling temperature; 0 = greedy (defaults: eval: 0.75, rl: 1.0)" in shown


def test_every_flag_has_help_and_shows_its_default():
    import argparse

    from vilasr.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) >= {"draw", "draw-demo", "demo", "pretrain-base", "infer", "synth"}
    for name, sub in commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            default = action.default
            if action.option_strings and not action.required and default not in (None, [], argparse.SUPPRESS) \
                    and default is not False:
                shown = " ".join(formatter._format_action(action).split())
                assert "default" in shown, (name, shown)
