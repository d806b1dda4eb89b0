"""Qwen2.5-VL forward and training step: ours (JAX/Flax NNX, jitted) vs transformers + PyTorch, CPU.

Same tiny random config, same weights (ours -> save_pretrained -> transformers), same inputs:
a batch of `--batch` sequences of `--length` tokens, each with one `--image`x`--image` image.

    .venv/bin/python benchmarks/model.py                    # prints the table
    .venv/bin/python benchmarks/model.py --append benchmarks/RESULTS.md

Forward: logits for the whole batch (torch under `no_grad`). Train step: next-token cross-entropy
over all positions, backward, AdamW update (`nnx.Optimizer(model, optax.adamw, wrt=nnx.Param)` vs
`torch.optim.AdamW`). Times are the median of `--repeats` runs after warm-up (compilation excluded;
the one-off compile times are printed separately). Both sides use float32 and all CPU threads.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import numpy as np


def build_inputs(cfg, batch: int, length: int, image: int, seed: int = 0):
    rs = np.random.RandomState(seed)
    side = image // cfg.vision.patch_size
    grid = np.array([[1, side, side]] * batch, dtype=np.int64)
    pixels = rs.randn(int(grid.prod(-1).sum()), cfg.vision.patch_dim).astype(np.float32)
    n_img = side * side // cfg.vision.merge_unit
    rows = []
    for _ in range(batch):
        text = rs.randint(0, cfg.vision_start_token_id, size=length - n_img - 2)
        head = rs.randint(1, 20)
        row = np.concatenate([text[:head], [cfg.vision_start_token_id], [cfg.image_token_id] * n_img,
                              [cfg.vision_end_token_id], text[head:]])
        rows.append(row)
    return np.stack(rows).astype(np.int64), pixels, grid


def timeit(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--stat", choices=["min", "median"], default="median")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--append", default=None, help="append a markdown section to this file")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    import torch
    import transformers
    from flax import nnx

    from vilasr.model import Qwen25VL, Qwen25VLConfig, prepare_inputs

    cfg = Qwen25VLConfig.preset(args.preset)
    ids, pixels, grid = build_inputs(cfg, args.batch, args.length, args.image)
    tokens = ids.size
    model = Qwen25VL(cfg, rngs=nnx.Rngs(0))
    extras = prepare_inputs(cfg, ids, None, grid)
    extras.pop("rope_deltas")

    # ---------------------------------------------------------------- ours
    # The performance idiom: split the NNX objects once, jit pure functions of their state.
    def loss_fn(model, ids, pixels, extras):
        # next-token CE; the last position is weighted 0 instead of sliced away (no logits copy)
        logits = model(ids, pixels, **extras)
        weights = jnp.ones(ids.shape, jnp.float32).at[:, -1].set(0.0)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.roll(ids, -1, axis=1))
        return (ce * weights).sum() / weights.sum()

    optimizer = nnx.Optimizer(model, optax.adamw(1e-4), wrt=nnx.Param)
    model_def, _ = nnx.split(model)
    train_def, train_state = nnx.split((model, optimizer))

    @jax.jit
    def forward(state, ids, pixels, extras):
        return nnx.merge(model_def, state)(ids, pixels, **extras)

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, ids, pixels, extras):
        model, optimizer = nnx.merge(train_def, state)
        loss, grads = nnx.value_and_grad(loss_fn)(model, ids, pixels, extras)
        optimizer.update(model, grads)
        return loss, nnx.state((model, optimizer))

    with tempfile.TemporaryDirectory() as tmp:  # same weights for the peer
        model.save_pretrained(tmp)
        hf = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32)

    jids, jpix = jax.numpy.asarray(ids), jax.numpy.asarray(pixels)
    extras = jax.tree.map(jax.numpy.asarray, extras)  # on device once, like ids and pixels: no per-step copies
    params = jax.tree.map(jax.numpy.copy, nnx.state(model))  # train_state buffers get donated
    t0 = time.perf_counter()
    forward(params, jids, jpix, extras).block_until_ready()
    compile_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss, train_state = train_step(train_state, jids, jpix, extras)
    first_loss = float(loss)
    compile_train = time.perf_counter() - t0

    def ours_step():
        nonlocal train_state
        loss, train_state = train_step(train_state, jids, jpix, extras)
        loss.block_until_ready()

    # ---------------------------------------------------------------- transformers + torch
    inputs = dict(
        input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels), image_grid_thw=torch.tensor(grid),
        mm_token_type_ids=torch.tensor((ids == cfg.image_token_id).astype(np.int64)))
    labels = torch.tensor(ids)
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def torch_forward():
        hf.eval()
        with torch.no_grad():
            return hf(**inputs).logits

    def torch_step():
        hf.train()
        opt.zero_grad(set_to_none=True)
        out = hf(**inputs, labels=labels)
        out.loss.backward()
        opt.step()
        return out.loss.detach()

    ref_logits = torch_forward().numpy()
    torch_first_loss = float(torch_step())

    # Interleave the four measurements round by round so that load changes hit all of them.
    runs = {"ours_fwd": [], "torch_fwd": [], "ours_train": [], "torch_train": []}
    fns = {
        "ours_fwd": lambda: forward(params, jids, jpix, extras).block_until_ready(),
        "torch_fwd": torch_forward,
        "ours_train": ours_step,
        "torch_train": torch_step,
    }
    for _ in range(args.repeats):
        for key, fn in fns.items():
            runs[key].append(timeit(fn, 1))
    stat = min if args.stat == "min" else statistics.median
    ours_fwd, torch_fwd = stat(runs["ours_fwd"]), stat(runs["torch_fwd"])
    ours_train, torch_train = stat(runs["ours_train"]), stat(runs["torch_train"])

    # same model before training: logits and first loss agree
    fresh = nnx.state(Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    parity = float(np.abs(np.asarray(forward(fresh, jids, jpix, extras)) - ref_logits).max())

    rows = [
        ("forward", tokens / ours_fwd, tokens / torch_fwd),
        ("train step (fwd + bwd + AdamW)", tokens / ours_train, tokens / torch_train),
    ]
    header = (f"config `{args.preset}` ({model.num_params() / 1e6:.2f}M params), batch {args.batch} x "
              f"{args.length} tokens, one {args.image}x{args.image} image per sequence "
              f"({int(grid.prod(-1).sum())} patches), float32, {args.stat} of {args.repeats} interleaved rounds")
    lines = [
        "| step | ours tokens/s | transformers tokens/s | ours / transformers |",
        "|---|---|---|---|",
        *[f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |" for name, a, b in rows],
    ]
    notes = (f"Compile (one-off): forward {compile_fwd:.1f} s, train step {compile_train:.1f} s. "
             f"Logit parity at init: max abs diff {parity:.1e}; first loss ours {first_loss:.4f} vs "
             f"transformers {torch_first_loss:.4f}. torch {torch.__version__} "
             f"({torch.get_num_threads()} threads, attn `{hf.config._attn_implementation}`), "
             f"jax {jax.__version__}, transformers {transformers.__version__}.")
    print(header)
    print("\n".join(lines))
    print(notes)
    if args.append:
        cmd = "`.venv/bin/python benchmarks/model.py" + (
            f" --batch {args.batch} --length {args.length} --image {args.image} --repeats {args.repeats}"
            f" --stat {args.stat} --append benchmarks/RESULTS.md`")
        section = ["", "## model: Qwen2.5-VL forward and train step vs transformers (CPU)", "",
                   f"Command: {cmd}. {header}. 2-core CPU shared with other jobs: read the ratios.", "",
                   *lines, "", notes, ""]
        with open(args.append, "a") as f:
            f.write("\n".join(section))


if __name__ == "__main__":
    main()
