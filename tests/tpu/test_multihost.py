"""Two hosts for real: two processes of 2 CPU devices each, joined by `jax.distributed` (Gloo
between the processes), run `vilasr train cold-start` on one 4-device mesh. Each host reads and
encodes only its own rows, the hosts exchange images and agree on lengths, and only the first
host writes metrics. The losses and the exported weights equal one process training on the two
hosts' rows side by side."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

import stages.sft
from drawing_ops.protocol import IMAGE_PLACEHOLDER
from stages.data import Batch
from stages.sft import run_sft
from synth.io import png_bytes
from vilasr.cli.main import build_parser
from vilasr.cli.train import build_config

REPO = Path(__file__).resolve().parents[2]
STEPS = 2
FLAGS = ["--preset", "tiny", "--max-steps", str(STEPS), "--batch-size", "8", "--save-every", "100",
         "--precision", "fp32", "--learning-rate", "0.003", "--no-progress"]


def _dataset(folder: Path) -> Path:
    """Sixteen one-image conversations of different image sizes and answer lengths."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(16):
        size = (28 * int(rng.integers(1, 3)), 28 * int(rng.integers(1, 4)))
        (folder / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (*size, 3), dtype=np.uint8)))
        answer = " ".join(["left", "right", "up", "down"][int(k)] for k in rng.integers(0, 4, int(rng.integers(2, 40))))
        records.append({"conversations": [{"role": "user", "content": f"{IMAGE_PLACEHOLDER}Which way? ({i})"},
                                          {"role": "assistant", "content": answer}], "images": [f"{i}.png"]})
    path = folder / "train.json"
    path.write_text(json.dumps(records))
    return path


class _SideBySide:
    """One process's view of two hosts' batches: their rows side by side, their images in row order."""

    def __init__(self, streams, pad_id: int):
        self.streams, self.pad_id = streams, pad_id

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        parts = [next(s) for s in self.streams]
        width = max(p.input_ids.shape[1] for p in parts)

        def rows(name, value):
            return np.concatenate([np.pad(getattr(p, name), ((0, 0), (0, width - p.input_ids.shape[1])),
                                          constant_values=value) for p in parts])

        return Batch(rows("input_ids", self.pad_id), rows("attention_mask", False),
                     rows("loss_mask", False), tuple(im for p in parts for im in p.images),
                     sum(p.num_rows for p in parts))

    def get_state(self):
        return [s.get_state() for s in self.streams]

    def set_state(self, state):
        for s, st in zip(self.streams, state):
            s.set_state(st)


def test_two_hosts_reading_their_own_rows_train_like_one_process(tmp_path, monkeypatch):
    data = _dataset(tmp_path / "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = tmp_path / "two"
    hosts = [subprocess.Popen([sys.executable, "-m", "vilasr", "train", "cold-start", *FLAGS, "--data", str(data),
                               "--out", str(two)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
                                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                                   "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                                   "JAX_PROCESS_ID": str(i)})
             for i in range(2)]

    # meanwhile, here: one process, one device, fed both hosts' rows side by side
    host_batches = stages.sft.batches
    monkeypatch.setattr(stages.sft, "batches", lambda records, processor, **kw: _SideBySide(
        [host_batches(records, processor, **{**kw, "host": h, "hosts": 2}) for h in range(2)], processor.tokenizer.pad_id))
    args = build_parser().parse_args(["train", "cold-start", *FLAGS, "--data", str(data), "--out", str(tmp_path / "one")])
    one = run_sft(data=data, out=tmp_path / "one", preset="tiny", config=build_config(args), devices=1, progress=False)

    logs = [h.communicate(timeout=600)[0] for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0], "\n".join(log[-3000:] for log in logs)
    logged = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == list(range(1, STEPS + 1))   # the first host's lines only
    np.testing.assert_allclose([m["loss"] for m in logged], one.run.losses, rtol=1e-5)
    assert logged[0]["tokens"] == json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[0])["tokens"]
    ours, reference = load_file(two / "model" / "model.safetensors"), load_file(one.model_dir / "model.safetensors")
    assert ours.keys() == reference.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], reference[name], atol=2e-5, err_msg=name)
