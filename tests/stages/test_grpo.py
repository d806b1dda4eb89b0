"""Stage 3 (GRPO) and the command line of stages 2 and 3: recorded log-probabilities against a
teacher-forced forward, learning on a colour task after a cold start made here, exact resume
after SIGKILL, the prompt stream, and the errors a user meets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from drawing_ops import Box, ImageInfo, VisualContext, parse_tool_calls
from drawing_ops.protocol import PromptTemplate, format_answer_turn, format_tool_turn
from stages.config import TrainConfig
from stages.prompts import Prompt, load_prompts
from stages.rl.config import GrpoConfig
from stages.rl.grpo import GrpoTrainer, PromptStream, run_grpo, teacher_forced_logprobs, trajectory_batch
from stages.sft import load_model, run_sft
from synth.io import png_bytes
from vilasr import ConfigError
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = PromptTemplate(system="Draw, look, answer.", closing="")
COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
OPTIONS = ("A. red", "B. green", "C. blue", "D. yellow")
QUESTION = "What colour is the object?"
BOX = Box(1, (16, 12, 36, 40), "o")


def scene(color: str, shade: int) -> np.ndarray:
    image = np.full((56, 56, 3), 235, np.uint8)
    image[12:40, 16:36] = np.clip(np.array(COLORS[color]) + 8 * (shade - 2), 0, 255)
    return image


def letter(color: str) -> str:
    return "ABCD"[list(COLORS).index(color)]


def write_cold_start_data(folder: Path, seed: int = 0) -> Path:
    """Trajectories that box the object, look, and answer with a *random* letter: the cold start
    teaches the protocol, not the task (its accuracy stays at chance for GRPO to improve)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (color, shade) in enumerate((c, s) for c in COLORS for s in range(4)):
        messages = TEMPLATE.prompt_messages(QUESTION, [ImageInfo(1, 56, 56)], options=list(OPTIONS))
        messages.append({"role": "assistant", "content": format_tool_turn("Box it.", [BOX])})
        messages.append({"role": "user", "content": TEMPLATE.feedback_prompt([ImageInfo(2, 56, 56)], final=False)})
        messages.append({"role": "assistant", "content": format_answer_turn("Look.", "ABCD"[rng.integers(4)])})
        context = VisualContext([scene(color, shade)])
        context.apply(parse_tool_calls(messages[2]["content"]).actions)
        paths = []
        for j, im in enumerate(context.images):
            (folder / f"{i}_{j}.png").write_bytes(png_bytes(im))
            paths.append(f"{i}_{j}.png")
        records.append({"conversations": messages, "images": paths})
    path = folder / "train.json"
    path.write_text(json.dumps(records))
    return path


def write_prompts(folder: Path) -> Path:
    """RL prompt JSON lines (the reference's form): one per colour and shade."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (color, shade) in enumerate((c, s) for c in COLORS for s in range(4)):
        (folder / f"p{i}.png").write_bytes(png_bytes(scene(color, shade)))
        lines.append(json.dumps({"question": QUESTION, "options": list(OPTIONS), "answer": letter(color),
                                 "image_path": [f"p{i}.png"], "question_type": color, "data_type": "single_view"}))
    path = folder / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def rl_rollout(processor, temperature=1.0) -> RolloutConfig:
    return RolloutConfig(max_turns=3, max_turn_tokens=64, max_response_tokens=None, template=TEMPLATE,
                         sampling=SamplingConfig(temperature=temperature))


@pytest.fixture(scope="module")
def cold(tmp_path_factory) -> Path:
    """A tiny model cold-started here on the colour task's protocol (float32), as a Hugging Face folder."""
    root = tmp_path_factory.mktemp("cold")
    config = TrainConfig(learning_rate=3e-3, max_steps=60, batch_size=4, save_every=1000, precision="fp32",
                         max_seq_len=1024, warmup_ratio=0.0, schedule="constant")
    result = run_sft(data=write_cold_start_data(root / "data"), out=root / "run", preset="tiny", config=config,
                     devices=1, progress=False)
    return result.model_dir


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts"))


# ----------------------------------------------------------------------------- old log-probabilities
def test_recorded_logprobs_equal_a_teacher_forced_forward_over_the_trajectory(tmp_path):
    """Two drawing turns (scripted), then sampled turns: the log-probabilities the sampler recorded
    turn by turn on its persistent cache equal one forward over the finished trajectory with all
    its images, through the GRPO update's own batch path (cache, image insertion and M-RoPE
    offsets agree)."""
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(3))
    processor = Processor.tiny()
    tasks = [RolloutTask(images=[scene(c, 1)], question=QUESTION, options=OPTIONS, seed=i)
             for i, c in enumerate(["red", "blue"])]
    redraw = format_tool_turn("Again.", [Box(2, (10, 8, 30, 44), "o")])
    config = RolloutConfig(max_turns=4, max_turn_tokens=64, max_response_tokens=None, template=TEMPLATE,
                           sampling=SamplingConfig(temperature=0.7))
    trajs = rollout(model, processor, tasks, config, forced_turns=[[format_tool_turn("Box.", [BOX]), redraw]] * 2)
    assert all(len(t.images) == 3 and len(t.turns) >= 3 for t in trajs)   # two drawn images, then sampled turns
    banned = set(model.config.placeholder_ids)
    assert not any(banned & set(t.token_ids[t.model_mask].tolist()) for t in trajs)   # the model never writes one
    trainer = GrpoTrainer(model, processor, TrainConfig(precision="fp32", freeze_vision=False, batch_size=2,
                                                        max_steps=1),
                          GrpoConfig(prompts_per_step=1, group_size=2), config, tmp_path, total_steps=1, devices=1,
                          progress=False)
    batch, old = trajectory_batch(trajs, processor.tokenizer.pad_id)
    ids, attention, _, positions, images = trainer.arrays(batch)
    forward = np.asarray(teacher_forced_logprobs(model, ids, attention, positions, images, temperature=0.7))
    mask = batch.loss_mask[:, 1:]
    assert mask.sum() > 100
    np.testing.assert_allclose(forward[mask], old[:, 1:][mask], atol=1e-4)


# ----------------------------------------------------------------------------- prompts
def test_prompt_stream_reshuffles_each_pass_and_resumes_from_its_position():
    prompts = [Prompt(RolloutTask(images=[], question=str(i)), "A", "f") for i in range(5)]
    stream = PromptStream(prompts, per_step=2, seed=7)
    seen = [p.task.question for _ in range(5) for p in next(stream)]
    assert sorted(seen[:5]) == sorted(seen[5:]) == [str(i) for i in range(5)] and seen[:5] != seen[5:]
    again = PromptStream(prompts, per_step=2, seed=7)
    again.set_state({"position": 4})
    assert [p.task.question for p in next(again)] == seen[4:6]


def test_bad_prompt_records_are_skipped_and_counted(tmp_path, prompts):
    from stages.data import SkipLog

    path = tmp_path / "mixed.jsonl"
    good = prompts.read_text().splitlines()[0].replace('"p0.png"', json.dumps(str(prompts.parent / "p0.png")))
    path.write_text("\n".join([good, json.dumps({"answer": "A"}), json.dumps({"question": "q", "answer": "A",
                                                                                "image_path": ["missing.png"]})]))
    skipped = SkipLog()
    assert len(load_prompts(path, skipped)) == 1 and skipped.total == 2


# ----------------------------------------------------------------------------- command line
def _cli(stage, *args):
    return [sys.executable, "-m", "vilasr", "train", stage, "--devices", "1", "--no-progress", *args]


def _run_cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(_cli(*args), cwd=REPO, env=env, capture_output=True, text=True, **kw)


def test_stage_flags_elsewhere_are_one_line_errors(tmp_path, prompts):
    out = _run_cli("cold-start", "--preset", "tiny", "--data", str(prompts), "--out", str(tmp_path / "r"),
                   "--group-size", "4", "--temperature", "0.5")
    assert out.returncode == 2 and "--group-size, --temperature: not a setting of `train cold-start`" in out.stderr
    out = _run_cli("rl", "--preset", "tiny", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "none.jsonl does not exist" in out.stderr
    assert not (tmp_path / "r").exists()


RL_FLAGS = ["--max-steps", "4", "--batch-size", "8", "--save-every", "1", "--learning-rate", "2e-4", "--precision",
            "fp32", "--prompts-per-step", "2", "--group-size", "4", "--max-turns", "3", "--max-turn-tokens", "64",
            "--max-response-tokens", "none"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_killed_grpo_run_resumes_exactly(cold, prompts, tmp_path):
    template = tmp_path / "template.json"
    template.write_text(json.dumps({"system": TEMPLATE.system, "closing": ""}))
    flags = ["--model", str(cold), "--data", str(prompts), "--prompt-template", str(template), *RL_FLAGS]
    straight = tmp_path / "straight"
    done = _run_cli("rl", *flags, "--out", str(straight))
    assert done.returncode == 0, done.stderr[-2000:]

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cli("rl", *flags, "--out", str(run)), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "2").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model").exists()
    resumed = _run_cli("rl", *flags, "--out", str(run))
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr[-2000:]
    keys = ("reward", "accuracy", "format", "loss", "grad_norm", "response_len")
    assert [[m[k] for k in keys] for m in _metrics(run)] == [[m[k] for k in keys] for m in _metrics(straight)]
    a, b = (load_model(preset=None, model_dir=r / "model", config=TrainConfig(precision="fp32"))[0] for r in (run, straight))
    for x, y in zip(jax.tree.leaves(nnx.state(a, nnx.Param)), jax.tree.leaves(nnx.state(b, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
