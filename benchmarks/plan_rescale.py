"""Scale a 7B plan's printed compiler figures (made before `vilasr plan` scaled the scanned
layers) to every layer, with the functions the plan uses now (stages.plan._train_loops and
scale_loops). Prints per-device flops, the scaled step time, tokens/s per chip and MFU on v5p.

    PYTHONPATH=. .venv/bin/python benchmarks/plan_rescale.py sft 8 1.031e14 0.42356
    (stage, chips, the compiler's flops per device, its optimal_seconds)
"""

import math
import sys

import jax.numpy as jnp
from flax import nnx

from stages import plan
from tpu import aot
from tpu.topology import CHIPS
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.model.config import Remat


def main() -> None:
    stage, chips, flops, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    config = plan.PlanConfig(preset="7b", stage=stage)
    cfg = Qwen25VLConfig.preset("7b").replace(remat=Remat.FULL)
    state = nnx.state(nnx.eval_shape(lambda: Qwen25VL(cfg, dtype=jnp.bfloat16, param_dtype=jnp.float32,
                                                        rngs=nnx.Rngs(0))))
    tokens = chips * config.seq_len
    patches = chips * (config.image_side // cfg.vision.patch_size) ** 2 if stage == "rl" else 0
    loops = plan._train_loops(cfg, state, tokens, patches, chips, config.seq_len)
    total_flops, scaled = plan.scale_loops(aot.Estimate(0, 0, 0, 0, 0, flops, 0.0, seconds), loops, memory_bound=False)
    _, matmul = plan._param_count(state)
    vision = sum(math.prod(v.shape) for p, v in nnx.to_flat_state(state) if p[0] == "visual")
    model = tokens * (6 * matmul + 3 * plan._attention_flops(cfg, config.seq_len)) + 6 * vision * patches
    peak = CHIPS["v5p"].peak_bf16_flops
    print(f"{stage}: flops per device {total_flops:.3e}; scaled step time {scaled:.3f} s; tokens/s per chip "
          f"{tokens / scaled / chips:,.0f}; MFU {100 * model / (scaled * chips * peak):.1f}% (model flops {model:.3e})")


if __name__ == "__main__":
    main()
