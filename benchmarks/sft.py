"""Cold-start SFT step: ours (stages.trainer) vs the same step in transformers + PyTorch, CPU; and how
many programs our trainer compiles as the data's image sizes vary.

(a) Tokens per second of one optimizer step (forward, backward over the decoder with the vision
    tower frozen, AdamW) on the same batches of synthetic drawing trajectories, the same loss mask
    (assistant tokens and each turn's end token), the same tiny random weights, float32.
(b) Compilations: our trainer run for a few steps over datasets whose images take one, two or
    three sizes; XLA compile events counted with jax.monitoring.

    .venv/bin/python benchmarks/sft.py [--steps 5] [--repeats 5]

Run it with nothing else on the cores (check `uptime`) and write the load with the figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def synth_data(folder: Path, family: str, n: int, size: int) -> Path:
    from synth import families, io

    config = families.default_config(family, size)
    samples = families.iter_samples(family, n, seed=0, config=config, trajectory="cold")
    io.export_sharegpt(samples, folder, name="train")
    return folder / "train.json"


def ours_step_time(model, processor, batch, repeats: int) -> float:
    from stages.config import TrainConfig
    from stages.trainer import Trainer

    cfg = TrainConfig(batch_size=batch.input_ids.shape[0], precision="fp32", learning_rate=1e-5, max_steps=10**6)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, processor, cfg, out, total_steps=10**6, devices=1, progress=False)
        source = iter(lambda: batch, None)
        trainer._one_step(source)            # compile
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            trainer._one_step(source)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peer_step_time(hf_dir: Path, processor, batch, repeats: int) -> float:
    import torch
    import transformers

    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        hf_dir, attn_implementation="eager", dtype=torch.float32).train()
    for name, p in model.named_parameters():
        p.requires_grad_("visual" not in name)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)
    pix = processor.image_processor(list(batch.images))
    ids = torch.tensor(batch.input_ids, dtype=torch.long)
    labels = torch.where(torch.tensor(batch.loss_mask), ids, torch.full_like(ids, -100))
    kw = dict(input_ids=ids, attention_mask=torch.tensor(batch.attention_mask, dtype=torch.long), labels=labels,
              pixel_values=torch.tensor(pix["pixel_values"]), image_grid_thw=torch.tensor(pix["image_grid_thw"]),
              mm_token_type_ids=(ids == model.config.image_token_id).long())

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(**kw).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_throughput(args) -> None:
    from flax import nnx

    from stages.data import batches, open_source, SkipLog
    from vilasr.model import Qwen25VL, Qwen25VLConfig
    from vilasr.processing import Processor

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synth_data(tmp / "data", "static", args.batch, 224)
        processor = Processor.tiny()
        model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
        model.save_pretrained(tmp / "hf")
        batch = next(batches(open_source(data), processor, micro_batch=args.batch, max_seq_len=4096, seed=0,
                             epochs=1, skipped=SkipLog()))
        tokens = int(batch.attention_mask.sum())
        ours = ours_step_time(model, processor, batch, args.repeats)
        theirs = peer_step_time(tmp / "hf", processor, batch, args.repeats)
    print(f"(a) SFT step, tiny preset, batch {args.batch} x {batch.input_ids.shape[1]} padded tokens "
          f"({tokens} real, {batch.num_loss_tokens} trained), {len(batch.images)} images, float32")
    print(f"    ours {tokens / ours:8.0f} tokens/s ({ours * 1e3:.0f} ms)   transformers {tokens / theirs:8.0f} tokens/s "
          f"({theirs * 1e3:.0f} ms)   ratio {theirs / ours:.2f}x")


def bench_compilations(args) -> None:
    import jax

    from stages.config import TrainConfig
    from stages.sft import run_sft

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None)
    mixes = {"one size (static 224)": [("static", 224)],
             "two sizes (+ multiview 224x168)": [("static", 224), ("multiview", 224)],
             "three sizes (+ maze 196)": [("static", 224), ("multiview", 224), ("maze", 196)]}
    print(f"(b) compilations over {args.steps} steps of batch 4 (the trainer's step, the vision encoder, the rest)")
    for name, parts in mixes.items():
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            import json

            records = []
            for family, size in parts:
                path = synth_data(tmp / family, family, 8, size)
                for r in json.loads(path.read_text()):
                    r["images"] = [str(path.parent / p) for p in r["images"]]
                    records.append(r)
            (tmp / "mix.json").write_text(json.dumps(records))
            before = len(compiles)
            run_sft(data=tmp / "mix.json", out=tmp / "run", preset="tiny", devices=1, progress=False,
                    config=TrainConfig(max_steps=args.steps, batch_size=4, precision="fp32", save_every=10**6))
            print(f"    {name:36s} {len(compiles) - before:4d} compilations")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--only", choices=["a", "b"], default=None)
    args = ap.parse_args()
    if args.only in (None, "a"):
        bench_throughput(args)
    if args.only in (None, "b"):
        bench_compilations(args)


if __name__ == "__main__":
    main()
