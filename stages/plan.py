"""`vilasr plan`: will a step fit on a TPU slice, with which mesh, and how fast -- answered by
compiling the real step ahead of time, with nothing allocated.

The step is the one the project runs: the trainer's SFT step (`stages.trainer`: micro-batch
gradients, then the AdamW update), the GRPO update step (the same with the GRPO policy loss),
or one step of the sampler's decode loop (`vilasr.rollout.sampler`). The model and optimizer
are built abstractly (`nnx.eval_shape`), every array is a `jax.ShapeDtypeStruct` placed by its
logical axis names (tpu/rules.py), and `jax.jit(step).lower(...).compile()` runs the compiler:

* with `topology` and libtpu installed, the TPU compiler for that slice (no chip needed); its
  memory analysis and its cost analysis (flops and `optimal_seconds`, its estimated step time)
  are estimates for that TPU;
* otherwise XLA:CPU on as many simulated host devices (memory and flops; no time estimate).

Nothing here is a measurement.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stages.config import TrainConfig
from stages.rl.math import GrpoLossConfig
from tpu import aot, logical, rules, target
from tpu import mesh as tpu_mesh
from tpu import sharding as tpu_sharding
from tpu import topology as tpu_topology
from tpu.errors import TpuError
from vilasr.errors import ConfigError
from vilasr.model.config import Remat
from vilasr.uses import RESPONSE_TOKENS, SFT_MAX_TOKENS, Use

RL_PROMPT_TOKENS = 5120   # SPEC §5: prompts <= 5,120 tokens
DEFAULT_IMAGE = {"sft": 616, "rl": 448, "decode": 0}   # SPEC §3: 616x616 mazes as is (SFT), 448x448 (RL)
TINY_SEQ, TINY_IMAGE = 512, 112   # the tiny preset plans a small step (seconds to compile)
DECODE_CONTEXT = 8192     # slots filled in the cache when a decode step is planned (its cost grows with it)


class PlanStage(str, enum.Enum):
    SFT = "sft"         # one micro-batch: forward, backward, AdamW update (stages 1 and 2)
    RL = "rl"           # one GRPO update micro-batch (stage 3)
    DECODE = "decode"   # one step of the sampler's decode loop over the KV cache

    def __str__(self) -> str:
        return self.value


def _field(default, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanConfig:
    """What to plan. Zeros take ViLaSR's settings (SPEC §5) for the stage."""

    preset: str = _field("7b", "model size: tiny, 3b or 7b")
    stage: PlanStage = dataclasses.field(default=PlanStage.SFT, metadata={
        "help": "which step: sft, rl (GRPO update) or decode (one sampler step)"})
    topology: str = _field("", "TPU slice, e.g. v5p-16, v5e-32, v6e-8 or v5p:2x2x2; empty = simulated CPU devices")
    cpu_devices: int = _field(8, "simulated CPU devices when there is no topology (or no libtpu)")
    seq: int = _field(0, "tokens per sequence (sft 18432, rl 5120 + 13312); decode: filled cache slots (8192); "
                         "tiny: 512")
    batch: int = _field(0, "sequences per compiled step over the whole slice (0: one per chip for sft/rl, "
                           "prompts x group for decode)")
    prompts: int = _field(32, "decode: prompts per rollout batch")
    group: int = _field(8, "decode: rollouts per prompt")
    image: int = _field(-1, "side in pixels of one image per sequence (-1: 616 sft, 448 rl, 0 decode; 0 = text only)")
    remat: str = _field("full", "what each layer keeps for the backward pass: none, dots or full")
    mesh: str = _field("", "DATA,FSDP,TENSOR sizes (-1 fills); empty = chosen for the stage")

    def __post_init__(self):
        object.__setattr__(self, "stage", PlanStage(self.stage))
        for name in ("seq", "batch", "prompts", "group"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.cpu_devices < 1:
            raise ConfigError(f"--cpu-devices must be >= 1, got {self.cpu_devices}")

    @property
    def seq_len(self) -> int:
        if self.seq:
            return self.seq
        if self.preset == "tiny":
            return TINY_SEQ
        return {PlanStage.SFT: SFT_MAX_TOKENS, PlanStage.RL: RL_PROMPT_TOKENS + RESPONSE_TOKENS[Use.RL],
                PlanStage.DECODE: DECODE_CONTEXT}[self.stage]

    @property
    def image_side(self) -> int:
        if self.image >= 0:
            return self.image
        return min(DEFAULT_IMAGE[self.stage.value], TINY_IMAGE) if self.preset == "tiny" else DEFAULT_IMAGE[self.stage.value]


# ----------------------------------------------------------------------------- where it compiles
@dataclasses.dataclass(frozen=True)
class Target:
    devices: list
    topology: tpu_topology.Topology | None   # None: simulated CPU devices
    note: str                                # how the figures were made

    @property
    def chips(self) -> int:
        return len(self.devices)


def compile_target(config: PlanConfig) -> Target:
    """The TPU slice's devices (via libtpu), or simulated CPU devices -- saying which."""
    topo = tpu_topology.parse(config.topology) if config.topology else None
    if topo is not None and tpu_topology.libtpu_available():
        devices = tpu_topology.devices(topo)
        return Target(devices, topo, f"TPU compiler (libtpu) for {topo.label}: the compiler's estimates, "
                                     "not measurements")
    wanted = topo.chips if topo is not None else config.cpu_devices
    host = jax.devices("cpu")
    if len(host) < wanted:
        raise TpuError(f"a simulated mesh of {wanted} devices needs {wanted} host devices, but JAX started with "
                       f"{len(host)}; run the plan in a fresh process (it sets "
                       f"--xla_force_host_platform_device_count) or pass --cpu-devices {len(host)}")
    why = (f"libtpu is not installed, so {wanted} simulated CPU devices stand in for {topo.label} "
           "(XLA:CPU memory and flops; no TPU time estimate; install the `tpu` extra for TPU figures)"
           if topo is not None else f"{wanted} simulated CPU devices (XLA:CPU memory and flops; no time estimate)")
    return Target(host[:wanted], None, why)


def simulated_devices_flag(config: PlanConfig) -> None:
    """Ask for enough host devices before JAX starts (a no-op once it has)."""
    wanted = config.cpu_devices
    if config.topology:
        try:
            wanted = max(wanted, tpu_topology.parse(config.topology).chips)
        except TpuError:
            return   # reported when the plan runs
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={wanted}".strip()


def choose_mesh(config: PlanConfig, chips: int, weight_bytes: int, hbm: int | None,
                kv_heads: int = 1 << 30) -> tpu_mesh.MeshConfig:
    """Training: every chip on fsdp (weights, gradients and optimizer state split chips ways).
    Decode: data parallel, with the smallest power-of-two tensor split whose weights take at
    most a quarter of a chip's memory (the rest is KV cache), and at most the KV heads (a split
    the heads do not divide would copy the cache on every chip of the split)."""
    if config.mesh:
        return tpu_mesh.MeshConfig.parse(config.mesh)
    if config.stage is not PlanStage.DECODE:
        return tpu_mesh.MeshConfig(fsdp=-1)
    tensor = 1
    while hbm and weight_bytes / tensor > hbm / 4 and tensor < min(chips, kv_heads):
        tensor *= 2
    return tpu_mesh.MeshConfig(data=-1, fsdp=1, tensor=tensor)


# ----------------------------------------------------------------------------- abstract inputs
def _spec(shape, dtype, names, mesh, table):
    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=logical.named_sharding(mesh, names, table, shape))


def _image_layout(cfg, batch: int, length: int, side: int):
    """Token ids with one side x side image per row (or none), and the host-side inputs the model
    takes for them (M-RoPE positions, the vision plan): their shapes are what the step compiles for."""

    if not side:
        return np.ones((batch, length), np.int32), None, 0
    patches = side // cfg.vision.patch_size
    grid = np.array([[1, patches, patches]] * batch)
    n_img = patches * patches // cfg.vision.merge_unit
    if n_img + 2 > length:
        raise ConfigError(f"a {side}x{side} image takes {n_img} tokens, more than --seq {length}")
    row = [cfg.vision_start_token_id] + [cfg.image_token_id] * n_img + [cfg.vision_end_token_id]
    ids = np.array([row + [1] * (length - len(row))] * batch, np.int32)
    return ids, grid, n_img


@dataclasses.dataclass(frozen=True)
class Step:
    """A step ready to lower: the function, its abstract arguments, and the work it does."""

    fn: object
    args: tuple
    tokens: int            # tokens the step processes (trained on, or sampled)
    model_flops: float     # the model's own flops for those tokens (6·N·T + attention; 2·N·T for decode)
    describe: str
    loops: tuple = ()      # Loop per scanned stack of layers (see `scale_loops`)


@dataclasses.dataclass(frozen=True)
class Loop:
    """A stack of layers run by `lax.scan`, and one layer's work per device."""

    trips: int
    flops: float
    bytes: float


def scale_loops(estimate: aot.Estimate, loops, memory_bound: bool) -> tuple[float, float | None]:
    """(flops, seconds) per device with every layer counted.

    XLA's cost analysis counts the body of a loop once, whatever its trip count, so for a model
    whose layers are scanned the compiler's flops and `optimal_seconds` cover one layer of each
    stack plus everything outside the loops. We add the other trips' work (computed from the
    layer's shapes) and scale the compiler's time by the work it saw: by flops for a training
    step (compute-bound), by bytes for a decode step (weight reads). This is our extrapolation of
    the compiler's estimate, printed as such."""
    flops = estimate.flops + sum((lp.trips - 1) * lp.flops for lp in loops)
    moved = estimate.bytes_accessed + sum((lp.trips - 1) * lp.bytes for lp in loops)
    if estimate.seconds is None:
        return flops, None
    ratio = moved / max(estimate.bytes_accessed, 1.0) if memory_bound else flops / max(estimate.flops, 1.0)
    return flops, estimate.seconds * ratio


def _stack_params(state, prefix: tuple) -> int:
    """Parameters under `prefix` (a stacked module), per layer."""
    sizes = [(v.shape[0], math.prod(v.shape)) for p, v in nnx.to_flat_state(state) if tuple(p[:len(prefix)]) == prefix]
    return sum(n for _, n in sizes) // sizes[0][0] if sizes else 0


def _train_loops(cfg, state, tokens: int, patches: int, chips: int, seq: int) -> tuple:
    """Per-device work of one decoder layer (and one vision block when the tower runs) in a
    training step: 2·N·T per pass; passes 3 (forward, backward) or 4 with full remat."""
    full = cfg.remat is Remat.FULL
    passes, attn_passes = (4 if full else 3), (3 if cfg.remat is Remat.NONE else 4)
    text = _stack_params(state, ("layers",))
    attention = _attention_flops(cfg, seq) / cfg.text.num_hidden_layers
    loops = [Loop(cfg.text.num_hidden_layers, (passes * 2 * text + attn_passes * attention) * tokens / chips,
                  passes * 4 * text / chips)]
    if patches:
        vision = _stack_params(state, ("visual", "blocks"))
        loops.append(Loop(cfg.vision.depth, passes * 2 * vision * patches / chips, passes * 4 * vision / chips))
    return tuple(loops)


def _param_count(state) -> tuple[int, int]:
    """(all parameters, parameters of the text decoder's matmuls + lm_head: what a token multiplies)."""
    total = matmul = 0
    for path, var in nnx.to_flat_state(state):
        n = math.prod(var.shape)
        total += n
        if path[0] == "lm_head" or (path[0] == "layers" and len(var.shape) >= 3):
            matmul += n
    return total, matmul


def _attention_flops(cfg, length: int) -> float:
    """Forward flops of causal attention (scores and values) per token at `length`."""
    t = cfg.text
    return 2 * 2 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * length / 2


def _train_state(cfg, train_cfg: TrainConfig, mesh, table):
    from stages.trainer import optimizer_chain, trainable
    from vilasr.model import Qwen25VL

    def build():
        model = Qwen25VL(cfg, dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
        return model, nnx.Optimizer(model, optimizer_chain(train_cfg, 1000), wrt=trainable(train_cfg.freeze_vision))

    graphdef, state = nnx.split(nnx.eval_shape(build))
    return graphdef, tpu_sharding.abstract(state, mesh, table)


def _train_inputs(cfg, batch, length, side, mesh, table, *, pixels: bool):
    """Abstract (ids, attention mask, loss mask, positions, images) as the trainer passes them."""
    from stages.trainer import bucket
    from vilasr.model import prepare_inputs

    rows = ("batch", "length")
    ids, grid, n_img = _image_layout(cfg, batch, length, side)
    arrays = [_spec((batch, length), jnp.int32, rows, mesh, table), _spec((batch, length), jnp.bool_, rows, mesh, table),
              _spec((batch, length), jnp.bool_, rows, mesh, table),
              _spec((3, batch, length), jnp.int32, (None, *rows), mesh, table)]
    whole = lambda a: _spec(a.shape, a.dtype, (None,) * len(a.shape), mesh, table)
    if grid is not None and pixels:
        host = prepare_inputs(cfg, ids, None, grid)
        images = {"pixels": _spec((int(grid.prod(-1).sum()), cfg.vision.patch_dim), jnp.float32,
                                  ("vision_tokens", None), mesh, table),
                  "plan": jax.tree.map(whole, host["image_plan"])}
    else:
        images = {"embeds": _spec((bucket(batch * n_img, 16), cfg.text.hidden_size), jnp.bfloat16, (None, None),
                                  mesh, table)}
    return (*arrays, images), n_img


def sft_step(cfg, config: PlanConfig, batch: int, mesh, table) -> Step:
    """The trainer's step for one micro-batch: `_grad_step`, then the AdamW update (`apply_gradients`)."""
    from stages import trainer

    train_cfg = TrainConfig(batch_size=batch, max_seq_len=config.seq_len)
    graphdef, state = _train_state(cfg, train_cfg, mesh, table)
    wrt = trainer.trainable(train_cfg.freeze_vision)
    inputs, n_img = _train_inputs(cfg, batch, config.seq_len, config.image_side, mesh, table, pixels=False)

    def step(state, inputs):
        model, optimizer = nnx.merge(graphdef, state)
        total, count, grads = trainer._grad_step(model, wrt, *inputs)
        trainer.apply_gradients(model, optimizer, grads, count)
        return total / jnp.maximum(count, 1.0), nnx.state((model, optimizer))

    tokens = batch * config.seq_len
    _, matmul = _param_count(state[0])
    flops = tokens * (6 * matmul + 3 * _attention_flops(cfg, config.seq_len))
    loops = _train_loops(cfg, state[0], tokens, 0, mesh.size, config.seq_len)
    what = f"SFT step: {batch} x {config.seq_len} tokens" + (f", one {config.image_side} px image each "
                                                             f"({n_img} tokens, frozen tower)" if n_img else "")
    return Step(jax.jit(step, donate_argnums=0), (state, inputs), tokens, flops, what, loops)


def rl_step(cfg, config: PlanConfig, batch: int, mesh, table) -> Step:
    """The GRPO trainer's update for one micro-batch (`stages.rl.grpo._grpo_grad_step`: the
    teacher-forced log-probs of the rollouts with the vision tower trained on pixels, the clipped
    policy loss, its gradients), then the AdamW update (`apply_gradients`)."""
    from stages import trainer
    from stages.rl import grpo

    train_cfg = TrainConfig.for_stage("rl", batch_size=batch, max_seq_len=config.seq_len)
    graphdef, state = _train_state(cfg, train_cfg, mesh, table)
    wrt = trainer.trainable(train_cfg.freeze_vision)
    inputs, n_img = _train_inputs(cfg, batch, config.seq_len, config.image_side, mesh, table, pixels=True)
    old_logp = _spec((batch, config.seq_len), jnp.float32, ("batch", "length"), mesh, table)
    advantages = _spec((batch,), jnp.float32, ("batch",), mesh, table)
    loss_cfg = GrpoLossConfig()

    def step(state, inputs, old_logp, advantages):
        model, optimizer = nnx.merge(graphdef, state)
        total, rows, _, grads = grpo._grpo_grad_step(model, wrt, loss_cfg, 1.0, *inputs, old_logp, advantages, None)
        trainer.apply_gradients(model, optimizer, grads, rows)
        return total / jnp.maximum(rows, 1.0), nnx.state((model, optimizer))

    tokens = batch * config.seq_len
    total, matmul = _param_count(state[0])
    vision = total - sum(math.prod(v.shape) for p, v in nnx.to_flat_state(state[0]) if p[0] != "visual")
    patches = batch * (config.image_side // cfg.vision.patch_size) ** 2 if n_img else 0
    flops = tokens * (6 * matmul + 3 * _attention_flops(cfg, config.seq_len)) + 6 * vision * patches
    loops = _train_loops(cfg, state[0], tokens, patches, mesh.size, config.seq_len)
    what = (f"GRPO update step: {batch} x {config.seq_len} tokens"
            + (f", one {config.image_side} px image each ({n_img} tokens, tower trained)" if n_img else ""))
    return Step(jax.jit(step, donate_argnums=0), (state, inputs, old_logp, advantages), tokens, flops, what, loops)


def decode_step(cfg, config: PlanConfig, batch: int, mesh, table) -> Step:
    """One step of the sampler's decode loop (`sampler._decode` with room for one token) on a
    cache with `seq` slots, bf16 weights and cache, RL sampling (temperature 1)."""
    from vilasr.model import KVCache, Qwen25VL
    from vilasr.rollout import sampler
    from vilasr.rollout.config import SamplingConfig

    graphdef, params = nnx.split(nnx.eval_shape(
        lambda: Qwen25VL(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))))
    params = tpu_sharding.abstract(params, mesh, table)
    t = cfg.text
    slots = -(-config.seq_len // sampler.CACHE_BLOCK) * sampler.CACHE_BLOCK
    spec = lambda shape, dtype, names: _spec(shape, dtype, names, mesh, table)
    cache = KVCache(k=spec((t.num_hidden_layers, batch, t.num_key_value_heads, t.head_dim, slots), jnp.bfloat16,
                           KVCache.K_AXES),
                    v=spec((t.num_hidden_layers, batch, t.num_key_value_heads, slots, t.head_dim), jnp.bfloat16,
                           KVCache.V_AXES),
                    lengths=spec((batch,), jnp.int32, KVCache.ROW_AXES),
                    next_pos=spec((batch,), jnp.int32, KVCache.ROW_AXES))
    row = lambda dtype: spec((batch,), dtype, ("batch",))
    state = sampler.DecodeState(cache=cache, logits=spec((batch, t.vocab_size), jnp.float32, ("batch", "vocab")),
                                tokens=spec((batch, 1), jnp.int32, ("batch", None)),
                                logprobs=spec((batch, 1), jnp.float32, ("batch", None)), length=row(jnp.int32),
                                done=row(jnp.bool_), stopped=row(jnp.bool_), step=spec((), jnp.int32, ()))
    key_type = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch))
    keys = jax.ShapeDtypeStruct(key_type.shape, key_type.dtype, sharding=logical.named_sharding(
        mesh, ("batch",), table, (batch,)))
    sampling = SamplingConfig(temperature=1.0)
    stop_ids = spec((len(cfg.eos_token_ids),), jnp.int32, (None,))
    forced = spec((batch, 1), jnp.int32, ("batch", None))

    banned = spec((len(cfg.placeholder_ids),), jnp.int32, (None,))   # image placeholders, as the rollout bans

    def step(params, state, keys, caps, stop_ids, forced, forced_len, banned):
        return sampler._decode(graphdef, sampling, int(cfg.pad_token_id or 0), params, state, keys, caps, stop_ids,
                               forced, forced_len, banned, jnp.zeros((), jnp.int32))

    _, matmul = _param_count(params)
    flops = batch * (2 * matmul + _attention_flops(cfg, 2 * config.seq_len))
    layer = _stack_params(params, ("layers",))
    # one decoder layer per step: its bf16 weights (split over tensor), its matmuls for this chip's rows
    loops = (Loop(t.num_hidden_layers, 2 * layer * batch / mesh.size, 2 * layer / mesh.shape["tensor"]),)
    what = f"decode step: {batch} sequences, {config.seq_len} cache slots filled (bf16 weights and cache)"
    return Step(jax.jit(step, donate_argnums=1), (params, state, keys, row(jnp.int32), stop_ids, forced,
                                                  row(jnp.int32), banned), batch, flops, what, loops)


# ----------------------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class Plan:
    config: PlanConfig
    target: Target
    mesh: dict
    step: str
    estimate: aot.Estimate
    tokens: int
    model_flops: float
    cache_seconds: float          # decode: reading the filled cache, which the compiler's loop estimate leaves out
    collectives: dict
    flops: float                  # per device, every layer counted (scale_loops)
    scaled_seconds: float | None  # the compiler's time scaled to every layer (scale_loops)

    @property
    def hbm(self) -> int | None:
        return self.target.topology.chip.hbm_bytes if self.target.topology else None

    @property
    def fits(self) -> bool | None:
        return None if self.hbm is None else self.estimate.peak_bytes <= self.hbm

    @property
    def seconds(self) -> float | None:
        return None if self.scaled_seconds is None else self.scaled_seconds + self.cache_seconds

    @property
    def tokens_per_second_per_chip(self) -> float | None:
        return None if self.seconds is None else self.tokens / self.seconds / self.target.chips

    @property
    def mfu(self) -> float | None:
        """Model flops over the slice's bf16 peak during the estimated step time."""
        if self.seconds is None or self.target.topology is None:
            return None
        return self.model_flops / (self.seconds * self.target.chips * self.target.topology.chip.peak_bf16_flops)


def default_batch(config: PlanConfig, chips: int) -> int:
    if config.batch:
        return config.batch
    return config.prompts * config.group if config.stage is PlanStage.DECODE else chips


def make_plan(config: PlanConfig) -> Plan:
    from vilasr.model import Qwen25VLConfig
    from vilasr.model.config import Remat

    where = compile_target(config)
    cfg = Qwen25VLConfig.preset(config.preset).replace(remat=Remat.of(config.remat))
    table = rules.DECODE if config.stage is PlanStage.DECODE else rules.TRAIN
    chip = where.topology.chip if where.topology else None
    weights = 2 * _weights(cfg)
    mesh = tpu_mesh.make_mesh(choose_mesh(config, where.chips, weights, chip.hbm_bytes if chip else None,
                                          cfg.text.num_key_value_heads), where.devices)
    batch = default_batch(config, where.chips)
    if batch % tpu_mesh.batch_divisor(mesh):
        raise ConfigError(f"--batch {batch} does not split over the mesh's {tpu_mesh.batch_divisor(mesh)} "
                          f"data x fsdp devices; use a multiple of it")
    build = {PlanStage.SFT: sft_step, PlanStage.RL: rl_step, PlanStage.DECODE: decode_step}[config.stage]
    platform = "tpu" if where.topology else "cpu"
    step = build(cfg, config, batch, mesh, table)   # abstract state: outside the mesh (NNX would apply names)
    with target.compiling_for(platform), jax.set_mesh(mesh), nnx.logical_axis_rules(table):
        try:
            compiled = step.fn.lower(*step.args).compile()
        except Exception as exc:   # the TPU compiler refuses a program larger than the chip's memory
            if "RESOURCE_EXHAUSTED" not in str(exc):
                raise
            detail = next((line.strip() for line in str(exc).splitlines() if "exceed" in line.lower()),
                          str(exc).splitlines()[0])
            raise TpuError(f"{step.describe} does not fit on {where.topology.label if where.topology else 'a device'} "
                           f"with mesh {dict(mesh.shape)}: {detail[:300]}; use a bigger slice, another --mesh, "
                           "a smaller --batch or a shorter --seq") from None
    estimate = aot.analyse(compiled)
    cache_seconds = 0.0
    if config.stage is PlanStage.DECODE and chip is not None:
        cache_seconds = _cache_read_bytes(cfg, batch, config.seq_len, mesh) / chip.hbm_bandwidth
    flops, scaled = scale_loops(estimate, step.loops, memory_bound=config.stage is PlanStage.DECODE)
    return Plan(config, where, dict(mesh.shape), step.describe, estimate, step.tokens, step.model_flops,
                cache_seconds, aot.collectives(compiled.as_text()), flops, scaled)


def _weights(cfg) -> int:
    from vilasr.model import Qwen25VL

    abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def _cache_read_bytes(cfg, batch: int, filled: int, mesh) -> float:
    """Bytes of keys and values one decode step reads per chip: every filled slot of every layer.
    The sampler reads the cache block by block in a loop whose trip count depends on the data,
    which the compiler's cost analysis counts once; this adds the rest, at HBM bandwidth."""
    t = cfg.text
    rows = batch / tpu_mesh.batch_divisor(mesh)
    heads = t.num_key_value_heads / math.gcd(t.num_key_value_heads, mesh.shape["tensor"])
    return 2 * t.num_hidden_layers * rows * heads * t.head_dim * filled * 2


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def format_plan(plan: Plan) -> str:
    e, t = plan.estimate, plan.target
    chips = f"{t.topology.label}" if t.topology else f"{t.chips} simulated CPU devices"
    lines = [f"{plan.config.preset} {plan.step}",
             f"on {chips}; mesh {plan.mesh}",
             f"how: {t.note}",
             "per device:"]
    hbm = f" of {_gb(plan.hbm)} HBM" if plan.hbm else ""
    lines += [(f"  arguments {_gb(e.argument_bytes)}, outputs {_gb(e.output_bytes)} ({_gb(e.alias_bytes)} reusing "
              f"donated arguments), temporaries {_gb(e.temp_bytes)}"),
              f"  at once {_gb(e.peak_bytes)}{hbm}"
              + ("" if plan.fits is None else ("  -> fits" if plan.fits else "  -> DOES NOT FIT")),
              f"  flops {plan.flops:.3e} (the compiler counted {e.flops:.3e}: each scanned stack's layer once)"]
    coll = ", ".join(f"{k} {v}" for k, v in plan.collectives.items() if v)
    lines.append(f"  collectives in the program: {coll or 'none'}")
    if plan.seconds is None:
        lines.append("time: no estimate (only the TPU compiler gives one)")
        return "\n".join(lines)
    extra = f" + {plan.cache_seconds * 1e3:.2f} ms reading the KV cache" if plan.cache_seconds else ""
    lines += [(f"compiler's estimated step time: {e.seconds * 1e3:.2f} ms with one layer per stack; "
              f"scaled to every layer {plan.scaled_seconds * 1e3:.2f} ms{extra}"),
              f"estimated tokens/s per chip: {plan.tokens_per_second_per_chip:,.0f}",
              (f"estimated MFU: {100 * plan.mfu:.1f}% (model flops {plan.model_flops:.3e} over {t.chips} chips x "
              f"{t.topology.chip.peak_bf16_flops / 1e12:.0f} TFLOP/s bf16 peak); compiler flops at "
              f"{100 * e.flops / e.seconds / t.topology.chip.peak_bf16_flops:.1f}% of peak"),
              "(estimates of the TPU compiler, not measurements)"]
    return "\n".join(lines)
