"""`vilasr synth`: datasets are written atomically, with a stable digest per seed."""

from __future__ import annotations

import argparse
import json

import pytest

from synth import cli, families, io

ARGS = ["--size", "128", "--no-progress"]


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_sharegpt_run_twice_gives_the_same_bytes(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        assert cli.main(["static", "--n", "3", "--n-test", "1", "--seed", "4", "--out", str(out),
                         "--format", "sharegpt", "--trajectories", "reflective", *ARGS]) == 0
        outs.append(out)
    m0, m1 = (io.read_manifest(o) for o in outs)
    assert m0["digest"] == m1["digest"] and m0["splits"] == {"train": 3, "test": 1}
    assert (outs[0] / "train.json").read_bytes() == (outs[1] / "train.json").read_bytes()
    assert len(io.import_sharegpt(outs[0] / "test.json")) == 1
    assert leftovers(tmp_path) == []


def test_a_failed_run_leaves_no_dataset(tmp_path, monkeypatch):
    real = families.make_sample
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(*a, **k)

    monkeypatch.setattr(families, "make_sample", flaky)
    out = tmp_path / "data"
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(["maze", "--n", "5", "--out", str(out), "--format", "sharegpt", *ARGS])
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_interrupted_run_leaves_no_dataset_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "data"
    assert cli.main(["maze", "--n", "2", "--out", str(out), "--format", "benchmark", *ARGS]) == 0
    before = io.read_manifest(out)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(families, "make_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["maze", "--n", "2", "--seed", "9", "--out", str(out), "--format", "benchmark", "--overwrite", *ARGS])
    assert io.read_manifest(out) == before
    assert leftovers(tmp_path) == []


def test_existing_out_needs_overwrite_and_bad_flags_are_refused(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    assert cli.main(["maze", "--n", "1", "--out", str(out), "--format", "sharegpt", *ARGS]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["static", "--n", "1", "--loops", "0.2", "--out", str(tmp_path / "x"), *ARGS]) == 2
    assert cli.main(["static", "--out", str(tmp_path / "y"), *ARGS]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_tfds_format_via_cli(tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "tfds"
    assert cli.main(["maze", "--n", "3", "--seed", "2", "--out", str(out), "--format", "tfds", "--trajectories", "cold",
                     *ARGS]) == 0
    manifest = io.read_manifest(out)
    assert manifest["tfds_name"] == "synth_maze/cold_seed2"
    samples = io.load_samples(out, "train")
    assert len(samples) == 3
    config = families.default_config("maze", 128)
    want = [families.make_sample("maze", 2, i, config=config, trajectory="cold") for i in range(3)]
    from synth.records import dataset_digest

    assert dataset_digest(samples) == dataset_digest(want) == manifest["split_digests"]["train"]
    assert not (out / ".downloads").exists()


def test_add_synth_command_wires_into_a_parent_parser(tmp_path):
    parser = argparse.ArgumentParser(prog="vilasr")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_synth_command(sub)
    args = parser.parse_args(["synth", "gallery", "--out", str(tmp_path / "g"), "--n", "1"])
    assert args.func is cli.run


def test_gallery(tmp_path):
    from synth.gallery import write_gallery

    paths = write_gallery(tmp_path / "g", seed=1, per_family=2, sizes={"maze": 160, "static": 128, "multiview": 128})
    assert len(paths) == 6 and all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert all(p.with_suffix(".txt").is_file() for p in paths)
    text = (tmp_path / "g" / "maze_01_reflective.txt").read_text()
    assert "Action: Answer" in text and "<answer>" in text
    json.dumps([str(p) for p in paths])


def test_prompt_template_file_words_the_trajectories_and_prompts(tmp_path, capsys):
    template = tmp_path / "words.toml"
    template.write_text('image_line = "{image} = image {index}"\nfeedback = "Image {index} is drawn. Look again."\n'
                        'closing = ""\n')
    out = tmp_path / "data"
    assert cli.main(["static", "--n", "1", "--seed", "1", "--out", str(out), "--format", "sharegpt",
                     "--trajectories", "cold", "--prompt-template", str(template), *ARGS]) == 0
    record, = json.loads((out / "train.json").read_text())
    conversation = record["conversations"]
    assert conversation[1]["content"].startswith("<image> = image 1\n\nQuestion: ")
    assert not conversation[1]["content"].endswith("inspect each drawing.")        # closing removed
    assert conversation[3]["content"] == "<image> = image 2\nImage 2 is drawn. Look again."
    assert io.read_manifest(out)["prompt_template"]["closing"] == ""
    prompts = tmp_path / "prompts"   # prompt-only records (no trajectory) use it too
    assert cli.main(["static", "--n", "1", "--seed", "1", "--out", str(prompts), "--format", "sharegpt",
                     "--trajectories", "none", "--prompt-template", str(template), *ARGS]) == 0
    record, = json.loads((prompts / "train.json").read_text())
    assert record["conversations"][1]["content"] == conversation[1]["content"]
    template.write_text('closing = "{answer}"\n')
    assert cli.main(["static", "--n", "1", "--out", str(tmp_path / "bad"), "--format", "sharegpt",
                     "--prompt-template", str(template), *ARGS]) == 2
    assert "unknown field(s) {answer}" in capsys.readouterr().err and not (tmp_path / "bad").exists()
