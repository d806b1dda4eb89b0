"""Stage 1 (cold-start SFT) on the shared trainer: the loss mask, the loss, learning, frozen groups,
exact resume after SIGKILL, a truncated checkpoint, the exported model in transformers, and the
errors a user meets before anything compiles."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from drawing_ops import Box, ImageInfo
from drawing_ops.protocol import PromptTemplate, format_answer_turn, format_tool_turn
from stages.config import TrainConfig
from stages.data import LENGTH_WINDOW, Record, SkipLog, batches, encode_example
from stages.losses import next_token_loss_sum
from stages.sft import load_model, run_sft
from stages.trainer import check_host_memory, checkpoint_location
from vilasr import CheckpointError, ConfigError
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = PromptTemplate(system="Draw, look, answer.", closing="")   # short prompts: fast steps
COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def scene(color: str, k: int) -> np.ndarray:
    image = np.full((56, 56, 3), 235, np.uint8)
    x = 6 + 10 * k
    image[10:40, x:x + 14] = COLORS[color]
    return image


def conversation(color: str, k: int) -> tuple[list[dict], list[np.ndarray]]:
    """A short drawing trajectory: box the object, look, answer with its colour's letter."""
    images = [scene(color, k)]
    question = f"What colour is the object? (case {k})"
    messages = TEMPLATE.prompt_messages(question, [ImageInfo(1, 56, 56)],
                                                options=["A. red", "B. green", "C. blue", "D. yellow"])
    box = Box(1, (6 + 10 * k, 10, 20 + 10 * k, 40), "object")
    messages.append({"role": "assistant", "content": format_tool_turn("Box the object.", [box])})
    messages.append({"role": "user", "content": TEMPLATE.feedback_prompt([ImageInfo(2, 56, 56)], final=False)})
    letter = "ABCD"[list(COLORS).index(color)]
    messages.append({"role": "assistant", "content": format_answer_turn(f"It is {color}.", letter)})
    return messages, images


def write_dataset(folder: Path, n: int = 4) -> Path:
    """A sharegpt file of `n` trajectories (drawn images written by the real renderer)."""
    from colour_task import write_trajectories

    return write_trajectories(folder, [conversation(color, i) for i, color in enumerate(list(COLORS)[:n])])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("sft_data"))


def small(**kw) -> TrainConfig:
    base = dict(learning_rate=3e-3, max_steps=4, batch_size=2, save_every=2, precision="fp32", max_seq_len=1024,
                warmup_ratio=0.0)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- data and loss
def test_loss_mask_covers_each_assistant_turn_and_its_end_token_only(data):
    processor = Processor.tiny()
    records = json.loads(data.read_text())
    record = Record(records[0]["conversations"], tuple(str(data.parent / p) for p in records[0]["images"]))
    ex = encode_example(record, processor, max_seq_len=4096)
    tok = processor.tokenizer
    assistant = [m["content"] for m in record.conversation if m["role"] == "assistant"]
    assert tok.decode(ex.input_ids[ex.loss_mask]) == "".join(t + "<|im_end|>" for t in assistant)
    ends = np.flatnonzero((ex.input_ids == tok.im_end_id) & ex.loss_mask)
    assert len(ends) == len(assistant)
    assert not ex.loss_mask[np.minimum(ends + 1, len(ex.loss_mask) - 1)].any()   # the newline after it is out
    assert not ex.loss_mask[ex.input_ids == tok.image_pad_id].any()           # image tokens are out
    assert (ex.input_ids == tok.image_pad_id).sum() == 2 * processor.num_image_tokens(56, 56)


def test_batches_group_similar_lengths_and_hold_every_record():
    """Two passes over 70 records whose lengths span an octave and more: every record comes twice,
    each micro-batch holds rows of similar length (padding a fraction of what a shuffled batch
    pads), in an order fixed by the seed; two hosts read disjoint halves."""
    processor = Processor.tiny()
    words = np.random.default_rng(0).integers(20, 400, size=70)
    records = [Record([{"role": "user", "content": f"record {i}"}, {"role": "assistant", "content": "ok " * int(n)}])
               for i, n in enumerate(words)]
    micro = 4
    assert LENGTH_WINDOW * micro < 70   # several windows, and one across the two passes

    def run(seed):
        return list(batches(records, processor, micro_batch=micro, max_seq_len=4096, seed=seed, epochs=2,
                            skipped=SkipLog()))

    got = run(seed=1)
    assert all(b.num_rows == micro for b in got)
    rows = collections.Counter(tuple(r[a].tolist()) for b in got for r, a in zip(b.input_ids, b.attention_mask))
    encoded = [encode_example(r, processor, 4096).input_ids for r in records]
    assert rows == collections.Counter({tuple(e.tolist()): 2 for e in encoded})
    real = 2 * sum(map(len, encoded))
    padded = sum(b.input_ids.size for b in got)
    shuffled = np.random.default_rng(2).permutation([len(e) for e in encoded] * 2).reshape(-1, micro)
    assert padded / real < 1.3 < shuffled.max(1).sum() * micro / shuffled.sum()
    assert [b.input_ids.tolist() for b in run(seed=1)] == [b.input_ids.tolist() for b in got]
    assert [b.input_ids.tolist() for b in run(seed=2)] != [b.input_ids.tolist() for b in got]

    # two hosts, one pass: each reads half the micro-batch, from its own records; together, all
    # but each host's short tail
    halves = [list(batches(records, processor, micro_batch=micro, max_seq_len=4096, seed=1, epochs=1,
                           skipped=SkipLog(), host=h, hosts=2)) for h in range(2)]
    assert all(b.num_rows == micro // 2 for half in halves for b in half)
    read = [{tuple(r[a].tolist()) for b in half for r, a in zip(b.input_ids, b.attention_mask)} for half in halves]
    assert not read[0] & read[1] and len(read[0] | read[1]) == 68 and read[0] | read[1] <= set(rows)
    with pytest.raises(ConfigError, match="does not split over 3 hosts"):
        batches(records, processor, micro_batch=micro, max_seq_len=4096, seed=1, epochs=1, skipped=SkipLog(),
                host=0, hosts=3)


def test_masked_loss_equals_numpy_cross_entropy():
    rs = np.random.default_rng(0)
    logits = rs.normal(size=(2, 9, 11)).astype(np.float32)
    ids = rs.integers(0, 11, (2, 9))
    mask = rs.random((2, 9)) < 0.6
    total, count = next_token_loss_sum(jnp.asarray(logits), lambda h: h, jnp.asarray(ids), jnp.asarray(mask), chunk=3)
    lp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    want = [-lp[b, t, ids[b, t + 1]] for b in range(2) for t in range(8) if mask[b, t + 1]]
    assert int(count) == len(want)
    np.testing.assert_allclose(float(total), np.sum(want), rtol=1e-5)


# ----------------------------------------------------------------------------- learning
def test_sft_learns_the_protocol_until_greedy_decoding_reproduces_it(cold_start):
    """The shared cold start (tests/stages/conftest.py: 80 steps on 16 two-turn trajectories whose
    answer letters are random): the loss falls to the letter's entropy, the frozen tower stays
    put, and greedy decoding writes the trajectories' turns (box, look, answer a letter)."""
    from colour_task import BOX, OPTIONS, QUESTION, TEMPLATE, scene

    assert cold_start.losses[-1] < 0.05 * cold_start.losses[0]
    assert not cold_start.vision_moved and cold_start.decoder_moved
    model, processor = load_model(preset=None, model_dir=cold_start.model_dir, config=small())
    tasks = [RolloutTask(images=[scene(color, 1)], question=QUESTION, options=OPTIONS) for color in ("red", "blue")]
    trajs = rollout(model, processor, tasks, RolloutConfig(max_turns=2, max_turn_tokens=96, template=TEMPLATE,
                                                          sampling=SamplingConfig(greedy=True)))
    for traj in trajs:
        assert traj.turns[0] == format_tool_turn("Box it.", [BOX])
        assert traj.turns[1] in {format_answer_turn("Look.", x) for x in "ABCD"}


# ----------------------------------------------------------------------------- resume and export
def _cli(*args, **kw):
    return [sys.executable, "-m", "vilasr", "train", "cold-start", "--preset", "tiny", "--devices", "1",
            "--no-progress", *args]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


FLAGS = ["--max-steps", "6", "--batch-size", "2", "--save-every", "2", "--learning-rate", "3e-3", "--precision",
         "fp32", "--max-seq-len", "1024", "--warmup-ratio", "0"]


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """An uninterrupted 6-step run (checkpoints at steps 2, 4 and 6)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return out, run_sft(data=data, out=out, preset="tiny", devices=1, progress=False, config=small(max_steps=6))


def _start_and_stop_at(run: Path, checkpoints: Path, data: Path, step: int, sig) -> int:
    """Start the CLI run into `run` (checkpoints kept in `checkpoints`), send `sig` once checkpoint
    `step` exists; the exit status."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cli("--data", str(data), "--out", str(run), "--checkpoints", str(checkpoints), *FLAGS),
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (checkpoints / str(step)).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait()


def test_interrupted_and_killed_runs_resume_exactly(data, straight, tmp_path, hf_reference):
    _, reference = straight
    run, checkpoints = tmp_path / "run", tmp_path / "elsewhere"   # --checkpoints: kept outside the run folder
    # Ctrl-C: the step in flight finishes, a checkpoint is written, exit 130
    assert _start_and_stop_at(run, checkpoints, data, 2, signal.SIGINT) == 130
    assert max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()) >= 2
    # SIGKILL: nothing is saved on the way out; the last finished checkpoint survives
    _start_and_stop_at(run, checkpoints, data, 4, signal.SIGKILL)
    assert not (run / "model").exists(), "the run finished before it could be killed"
    done = subprocess.run(_cli("--data", str(data), "--out", str(run), "--checkpoints", str(checkpoints), *FLAGS),
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr and not (run / "checkpoints").exists()
    assert _losses(run) == reference.run.losses       # bit for bit

    # the exported folder loads in transformers and gives our logits
    ours = Qwen25VL.from_pretrained(run / "model")
    theirs = hf_reference.load(run / "model")
    ids = np.arange(5, 40)[None]
    import torch

    with torch.no_grad():
        want = theirs(input_ids=torch.tensor(ids)).logits.numpy()
    assert np.abs(np.asarray(ours(ids)) - want).max() < 1e-4


def test_checkpoints_go_to_out_a_folder_or_a_url_unchanged(tmp_path):
    assert str(checkpoint_location(tmp_path / "run")) == str(tmp_path / "run" / "checkpoints")
    assert str(checkpoint_location(tmp_path, tmp_path / "ck")) == str(tmp_path / "ck")
    assert str(checkpoint_location(tmp_path, "gs://bucket/runs/cold")) == "gs://bucket/runs/cold"   # not gs:/
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot keep checkpoints in .*file/ck"):
        checkpoint_location(tmp_path, tmp_path / "file" / "ck")


def test_a_truncated_checkpoint_is_reported_and_the_previous_one_used(data, straight, tmp_path, capsys):
    source, reference = straight
    out = tmp_path / "run"
    shutil.copytree(source, out)
    shutil.rmtree(out / "model")
    for f in (out / "checkpoints" / "6").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    capsys.readouterr()
    result = run_sft(data=data, out=out, preset="tiny", devices=1, progress=False, config=small(max_steps=6))
    err = capsys.readouterr().err
    assert "checkpoint step 6" in err and "cannot be read" in err and "from step 4" in err
    assert result.run.losses == reference.run.losses[4:]


# ----------------------------------------------------------------------------- errors before compiling
def test_errors_before_any_compile(data, straight, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        run_sft(data=tmp_path / "missing.json", out=tmp_path / "o", preset="tiny", config=small())
    with pytest.raises(ConfigError, match="does not divide over 8 devices"):
        run_sft(data=data, out=tmp_path / "o", preset="tiny", devices=8, config=small(batch_size=4))
    with pytest.raises(ConfigError, match="multiple of micro_batch_size"):
        small(batch_size=4, micro_batch_size=3)
    with pytest.raises(ConfigError, match=r"needs at least \d+\.\d GiB"):
        check_host_memory(Qwen25VLConfig.preset("7b"), TrainConfig())
    shutil.copytree(straight[0], tmp_path / "resumed")
    with pytest.raises(CheckpointError, match="learning_rate"):
        run_sft(data=data, out=tmp_path / "resumed", preset="tiny", devices=1, progress=False,
                config=small(max_steps=6, learning_rate=1e-4))


def test_bad_records_are_skipped_and_counted(data, tmp_path):
    records = json.loads(data.read_text())
    for r in records:
        r["images"] = [str(data.parent / p) for p in r["images"]]
    broken = [dict(records[0], images=[str(tmp_path / "gone.png"), *records[0]["images"][1:]]),   # missing image
              dict(records[1], images=records[1]["images"][:1]),                                 # 2 slots, 1 image
              {"conversations": "not a list"}]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(records + broken))
    result = run_sft(data=path, out=tmp_path / "o", preset="tiny", devices=1, progress=False,
                     config=small(max_steps=2, batch_size=2))
    assert result.run.step == 2 and sum(result.run.skipped.values()) >= 1
    only_bad = tmp_path / "bad.json"
    only_bad.write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match="the data ran out at step 0"):
        run_sft(data=only_bad, out=tmp_path / "o2", preset="tiny", devices=1, progress=False, config=small())


def test_cli_missing_data_is_one_line(tmp_path):
    from vilasr.cli import main

    assert main(["train", "cold-start", "--preset", "tiny", "--data", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path / "o")]) == 2


def test_data_parallel_over_two_devices_matches_one(data, tmp_path):
    one = run_sft(data=data, out=tmp_path / "one", preset="tiny", devices=1, progress=False, config=small(max_steps=2))
    two = run_sft(data=data, out=tmp_path / "two", preset="tiny", devices=2, progress=False, config=small(max_steps=2))
    np.testing.assert_allclose(two.run.losses, one.run.losses, rtol=1e-5)
