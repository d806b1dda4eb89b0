"""What a compiled program says about itself: per-device memory (XLA's memory analysis) and the
compiler's cost analysis (flops, bytes accessed and, from the TPU compiler, `optimal_seconds`:
its own estimate of the step's time on the target chip). These are estimates of the compiler,
made without running anything.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Per-device figures of one compiled step."""

    argument_bytes: int
    output_bytes: int
    alias_bytes: int       # outputs that reuse a donated argument's buffer
    temp_bytes: int
    code_bytes: int
    flops: float
    bytes_accessed: float
    seconds: float | None  # the compiler's estimated step time (TPU only)

    @property
    def peak_bytes(self) -> int:
        """Arguments + outputs not aliased to an argument + temporaries: what must fit at once."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):   # older JAX: one dict per program
        cost = cost[0] if cost else {}
    return dict(cost or {})


def analyse(compiled) -> Estimate:
    """The memory and cost analysis of a `jax.jit(...).lower(...).compile()` result."""
    mem = compiled.memory_analysis()
    cost = _cost(compiled)
    seconds = cost.get("optimal_seconds")
    seconds = float(seconds) if seconds is not None and math.isfinite(seconds) and seconds > 0 else None
    get = lambda name: int(getattr(mem, name, 0) or 0) if mem is not None else 0
    return Estimate(argument_bytes=get("argument_size_in_bytes"), output_bytes=get("output_size_in_bytes"),
                    alias_bytes=get("alias_size_in_bytes"), temp_bytes=get("temp_size_in_bytes"),
                    code_bytes=get("generated_code_size_in_bytes"), flops=float(cost.get("flops", 0.0)),
                    bytes_accessed=float(cost.get("bytes accessed", 0.0)), seconds=seconds)


def collectives(hlo_text: str) -> dict[str, int]:
    """How many of each collective the optimized HLO holds (what an FSDP step pays in links)."""
    kinds = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
    return {k: hlo_text.count(f" {k}(") + hlo_text.count(f" {k}-start(") for k in kinds}
