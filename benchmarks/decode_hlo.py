"""What one decode step does with the KV cache, read from the compiled sampler loop's HLO.

    .venv/bin/python benchmarks/decode_hlo.py                     # XLA:CPU, both forms
    PYTHONPATH=/path/to/libtpu-package .venv/bin/python benchmarks/decode_hlo.py --tpu v5p:2x2x2

Compiles the sampler's decode loop (`vilasr.rollout.sampler._decode`, tiny model, greedy) and,
in the bodies of its while loops (the step loop and, when scanned, the layer loop inside it),
lists every instruction whose result has the shape of the stacked cache (all layers) or of one
layer's cache, and every instruction copying a weight-sized slice, by opcode. Two forms:

* apart: the model's layers and the cache held per layer (`Qwen25VL.apart()`,
  `KVCache.per_layer()`), what the sampler does on XLA:CPU (`keep_layers_apart()`);
* scanned: one `lax.scan` over the stacked layers writing into the stacked cache, what it does
  on other backends. With `--tpu` this form is also compiled by the TPU compiler (libtpu, for a
  topology description: no chip needed) on one chip.

A `dynamic-update-slice` (or a fusion around one) of the cache's shape writes one token in
place; a `copy` of the cache's shape would copy it; a fusion of one layer's shape that only
slices is a materialised read (XLA:CPU does this before a library matmul).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys


def while_bodies(hlo: str) -> dict[str, list[str]]:
    """The instructions of every computation used as a while body, by computation name."""
    comps, name = {}, None
    for line in hlo.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if m and not line.startswith(" "):
            name = m.group(1)
            comps[name] = []
        elif name:
            comps[name].append(line)
    fused = {}
    for lines in comps.values():  # which computations a fusion calls, to see what it does
        for line in lines:
            m = re.search(r"calls=%?([\w.\-]+)", line)
            if m and " fusion(" in line:
                fused[m.group(1)] = comps.get(m.group(1), [])
    bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo))
    return {b: comps.get(b, []) for b in bodies}, fused


def classify(hlo: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, collections.Counter]:
    bodies, fused = while_bodies(hlo)
    wanted = {tuple(v): k for k, v in shapes.items()}
    out = {}
    for body, lines in bodies.items():
        counts = collections.Counter()
        for line in lines:
            m = re.match(r"\s*(?:ROOT )?%[\w.\-]+ = \w+\[([\d,]*)\]\S* ([\w\-]+)\(", line)
            if not m:
                continue
            dims = tuple(int(d) for d in m.group(1).split(",") if d)
            op = m.group(2)
            if op in ("get-tuple-element", "tuple", "parameter", "bitcast"):
                continue  # the loop carrying its buffers along
            what = wanted.get(dims)
            if op == "fusion":
                callee = re.search(r"calls=%?([\w.\-]+)", line).group(1)
                inner = " ".join(fused.get(callee, []))
                kinds = [k for k in ("dynamic-update-slice", "dynamic-slice", "convolution", "dot", "custom-call")
                         if f" {k}(" in inner]
                op = "fusion[" + "+".join(kinds or ["elementwise"]) + "]"
            if what is not None:
                counts[f"{what}: {op}"] += 1
            elif op in ("copy", "slice", "dynamic-slice") or (op.startswith("fusion[") and op.endswith(
                    "slice]") and "update" not in op and len(dims) == 2):
                counts[f"other {list(dims)}: {op}"] += 1
        out[body] = counts
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--slots", type=int, default=320)
    ap.add_argument("--tpu", default=None, metavar="TOPOLOGY")
    args = ap.parse_args()
    if args.tpu:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vilasr.model import Qwen25VL, Qwen25VLConfig
    from vilasr.rollout import SamplingConfig
    from vilasr.rollout import sampler

    cfg = Qwen25VLConfig.preset("tiny")
    model = Qwen25VL(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    b, steps = args.batch, 256
    cache = model.init_cache(b, args.slots)
    state = sampler.DecodeState(
        cache=cache, logits=jnp.zeros((b, cfg.text.vocab_size)), tokens=jnp.zeros((b, steps), jnp.int32),
        logprobs=jnp.zeros((b, steps)), length=jnp.zeros(b, jnp.int32), done=jnp.zeros(b, bool),
        stopped=jnp.zeros(b, bool), step=jnp.zeros((), jnp.int32))
    rest = (jax.random.split(jax.random.key(0), b), jnp.full(b, steps, jnp.int32), jnp.asarray([-1], jnp.int32),
            jnp.zeros((b, 1), jnp.int32), jnp.zeros(b, jnp.int32))
    shapes = {"stacked cache k": cache.k.shape, "stacked cache v": cache.v.shape,
              "one layer's cache k": cache.k.shape[1:], "one layer's cache v": cache.v.shape[1:]}
    print(f"tiny model, batch {b}, cache {cache.k.shape} (k) / {cache.v.shape} (v)")

    targets = [("XLA:CPU", None)]
    if args.tpu:
        from jax.experimental import topologies

        chip = topologies.get_topology_desc(topology_name=args.tpu, platform="tpu").devices[0]
        targets.append((f"TPU {args.tpu} (one chip)", chip))
    for where, device in targets:
        forms = [("apart", True), ("scanned", False)] if device is None else [("scanned", False)]
        for form, apart in forms:
            sampler.keep_layers_apart = lambda apart=apart: apart  # the form to compile
            fresh = lambda *a: sampler._decode.__wrapped__(*a)  # noqa: E731  (a new function: no trace reuse)
            decode = jax.jit(fresh, static_argnums=(0, 1, 2))
            call = (graphdef, SamplingConfig(greedy=True), 0, params, state, *rest)
            if device is not None:
                sharding = jax.sharding.SingleDeviceSharding(device)
                call = call[:3] + jax.tree.map(
                    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), call[3:])
            hlo = decode.lower(*call).compile().as_text()
            print(f"\n{where}, {form}:")
            for body, counts in sorted(classify(hlo, shapes).items(), key=lambda kv: -sum(kv[1].values())):
                listed = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "(none)"
                print(f"  while body {body}: {listed}")


if __name__ == "__main__":
    main()
