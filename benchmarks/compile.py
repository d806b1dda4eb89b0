"""Compile time of the train step: layers scanned (the model as it is) vs unrolled (the same model
with its layers apart, `Qwen25VL.apart()`: one copy of the code per layer, as before the scan).

    .venv/bin/python benchmarks/compile.py --preset tiny
    .venv/bin/python benchmarks/compile.py --preset 7b                 # 8 simulated CPU devices
    .venv/bin/python benchmarks/compile.py --preset 7b --image 448     # with the vision tower
    PYTHONPATH=/path/to/libtpu-package .venv/bin/python benchmarks/compile.py --preset 7b --tpu v5p:2x2x2

The train step is the real one: forward, next-token cross-entropy, backward and an AdamW update
(`nnx.Optimizer`), jitted with the state donated. Nothing is allocated: the model and optimizer
are built abstractly (`nnx.eval_shape`), every array is a `jax.ShapeDtypeStruct` placed on an
FSDP mesh by its logical axis names (`embed` and `vision_embed` sharded over `fsdp`, the batch
over `fsdp`, `layers` whole), and the step is lowered and compiled ahead of time. The mesh is
`--devices` simulated CPU devices (XLA:CPU compiles the program), or with `--tpu TOPOLOGY` the
devices of a TPU topology description from libtpu (the TPU compiler compiles it, no chip
needed: its times and memory are estimates for that TPU, made on this machine).
Prints lower and compile seconds per variant, unrolled / scanned ratios and program sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "3b", "7b"])
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default: one per device)")
    ap.add_argument("--length", type=int, default=None, help="tokens per sequence (default 512 tiny, 2048 else)")
    ap.add_argument("--image", type=int, default=0, help="one IMAGExIMAGE image per sequence (0: text only)")
    ap.add_argument("--remat", default="none", choices=["none", "full", "dots"])
    ap.add_argument("--dtype", default=None, help="parameter and compute dtype (default float32 tiny, bfloat16 else)")
    ap.add_argument("--devices", type=int, default=8, help="simulated CPU devices (without --tpu)")
    ap.add_argument("--tpu", default=None, metavar="TOPOLOGY", help="compile for a TPU topology, e.g. v5p:2x2x2")
    ap.add_argument("--variants", default="scanned,unrolled")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.tpu:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the host runs on CPU; libtpu only compiles
    elif "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.devices}").strip()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from tpu import logical
    from vilasr.model import Qwen25VL, Qwen25VLConfig, prepare_inputs

    if args.tpu:
        from jax.experimental import topologies

        devices = topologies.get_topology_desc(topology_name=args.tpu, platform="tpu").devices
        where = f"TPU {args.tpu} ({len(devices)} chips, TPU compiler via libtpu: estimates)"
    else:
        devices = jax.devices()[: args.devices]
        where = f"{len(devices)} simulated CPU devices (XLA:CPU)"
    mesh = jax.sharding.Mesh(np.array(devices), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    rules = (("batch", "fsdp"), ("embed", "fsdp"), ("vision_embed", "fsdp"))

    cfg = Qwen25VLConfig.preset(args.preset, remat=args.remat)
    dtype = jnp.dtype(args.dtype or ("float32" if args.preset == "tiny" else "bfloat16"))
    batch = args.batch or len(devices)
    length = args.length or (512 if args.preset == "tiny" else 2048)

    def build():
        model = Qwen25VL(cfg, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))
        return model, nnx.Optimizer(model, optax.adamw(1e-5), wrt=nnx.Param)

    t0 = time.perf_counter()
    graphdef, state = nnx.split(nnx.eval_shape(build))
    t_shape = time.perf_counter() - t0

    def placed(var):  # the abstract array, sharded by the variable's logical names
        names = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
        sharding = logical.named_sharding(mesh, names, rules, var.shape)
        return var.replace(jax.ShapeDtypeStruct(var.shape, var.dtype, sharding=sharding))

    state = jax.tree.map(placed, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    inputs, text = abstract_batch(cfg, batch, length, args.image, mesh, rules, prepare_inputs)

    def make_step(unrolled: bool):
        def loss_fn(model, inputs):
            model = model.apart() if unrolled else model
            ids = inputs["ids"]
            logits = model(ids, inputs.get("pixels"), image_plan=inputs.get("plan"), positions=inputs.get("positions"))
            return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], ids[:, 1:]).mean()

        def train_step(state, inputs):
            model, optimizer = nnx.merge(graphdef, state)
            loss, grads = nnx.value_and_grad(loss_fn)(model, inputs)
            optimizer.update(model, grads)
            return loss, nnx.state((model, optimizer))

        return jax.jit(train_step, donate_argnums=0)

    n_params = sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(state[0], nnx.Param)))
    print(f"config `{args.preset}` ({n_params / 1e6:,.1f}M params, {dtype.name}), remat {args.remat}, "
          f"batch {batch} x {length} tokens, {text}; {where}; abstract model + optimizer built in "
          f"{t_shape:.1f} s; load average {os.getloadavg()[0]:.1f}")
    results = {}
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        for variant in args.variants.split(","):
            step = make_step(variant == "unrolled")
            t0 = time.perf_counter()
            lowered = step.lower(state, inputs)
            t_lower = time.perf_counter() - t0
            t0 = time.perf_counter()
            compiled = lowered.compile()
            t_compile = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            temp = getattr(mem, "temp_size_in_bytes", 0) / 2**30 if mem is not None else float("nan")
            results[variant] = (t_lower, t_compile, len(lowered.as_text()), len(compiled.as_text()), temp)
            print(f"  {variant:9s} lower {t_lower:7.1f} s  compile {t_compile:7.1f} s  StableHLO "
                  f"{results[variant][2] / 1e6:6.2f} MB  optimized HLO {results[variant][3] / 1e6:6.2f} MB  "
                  f"temp memory/device {temp:6.2f} GiB", flush=True)
            del lowered, compiled
    if {"scanned", "unrolled"} <= results.keys():
        s, u = results["scanned"], results["unrolled"]
        print(f"  unrolled / scanned: lower {u[0] / s[0]:.2f}x, compile {u[1] / s[1]:.2f}x, "
              f"lower + compile {(u[0] + u[1]) / (s[0] + s[1]):.2f}x, optimized HLO size {u[3] / s[3]:.2f}x")


def abstract_batch(cfg, batch, length, image, mesh, rules, prepare_inputs):
    """ShapeDtypeStructs of one step's inputs (and a description): token ids sharded on the batch,
    with `image` > 0 one image per sequence (pixels, vision plan and M-RoPE positions)."""
    import jax
    import numpy as np

    from tpu import logical

    def spec(shape, dtype, names):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=logical.named_sharding(mesh, names, rules, shape))

    inputs = {"ids": spec((batch, length), np.int32, ("batch", "length"))}
    if not image:
        return inputs, "text only"
    side = image // cfg.vision.patch_size
    grid = np.array([[1, side, side]] * batch)
    n_img = side * side // cfg.vision.merge_unit
    row = [cfg.vision_start_token_id] + [cfg.image_token_id] * n_img + [cfg.vision_end_token_id]
    ids = np.array([row + [1] * (length - len(row))] * batch)
    host = prepare_inputs(cfg, ids, None, grid)  # the plan's static block sizes come from the real grid
    abstract = lambda a: spec(a.shape, a.dtype, (None,) * a.ndim)  # noqa: E731
    inputs["plan"] = jax.tree.map(abstract, host["image_plan"])
    inputs["positions"] = spec(host["positions"].shape, np.int32, (None, "batch", "length"))
    inputs["pixels"] = spec((int(grid.prod(-1).sum()), cfg.vision.patch_dim), np.float32, (None, None))
    return inputs, f"one {image}x{image} image per sequence ({n_img} tokens)"


if __name__ == "__main__":
    main()
