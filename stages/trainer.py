"""The trainer all three stages share: AdamW with warm-up + cosine (or constant) and global-norm
clipping, gradient accumulation, bf16 compute over float32 master weights, frozen parameter
groups, FSDP over a `tpu` mesh (tpu/rules.py TRAIN), Orbax checkpoints with exact resume, and
metrics as TensorBoard events + JSONL with a progress bar.

Exact resume. A checkpoint holds the parameters, the optimizer state, the step and the Grain
iterator's position. Training is deterministic given those, so a run killed at any moment and
restarted computes the same losses, bit for bit, as one that never stopped (a test kills one with
SIGKILL). Orbax writes a step into a temporary folder and renames it when complete, so a half
written step is never taken for a finished one; a finished step that cannot be read (truncated
files) is reported and the previous one is used.

SIGTERM (preemption) and SIGINT (Ctrl-C) stop the run after the current step, with a checkpoint.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stages.config import Precision, Schedule, TrainConfig
from stages.data import Batch, SkipLog
from stages.losses import next_token_loss_sum
from tpu import distributed, logical
from tpu import mesh as tpu_mesh
from tpu import rules as tpu_rules
from tpu import sharding as tpu_sharding
from vilasr.compiled import release_compiled_programs
from vilasr.errors import CheckpointError, ConfigError
from drawing_ops.render_jax import bucket, chunk_bucket
from vilasr.model import prepare_inputs, vision_plan
from vilasr.rollout.vision import DeviceVision

VISION_PREFIX = "visual"   # the vision tower and its patch merger live under model.visual
BOOKKEEPING_FIELDS = {"save_every", "keep_checkpoints", "log_every"}   # may change when resuming


class StopReason(str, enum.Enum):
    FINISHED = "finished"
    INTERRUPTED = "interrupted"   # SIGINT: saved, the command exits 130
    PREEMPTED = "preempted"       # SIGTERM: saved, resume later


def trainable(freeze_vision: bool):
    """The NNX filter of the parameters that train."""
    if not freeze_vision:
        return nnx.Param
    return lambda path, value: isinstance(value, nnx.Param) and (not path or path[0] != VISION_PREFIX)


def learning_rate(config: TrainConfig, total_steps: int) -> optax.Schedule:
    warmup = int(math.ceil(config.warmup_ratio * total_steps))
    if Schedule(config.schedule) is Schedule.CONSTANT:
        if not warmup:
            return optax.constant_schedule(config.learning_rate)
        return optax.join_schedules([optax.linear_schedule(0.0, config.learning_rate, warmup),
                                     optax.constant_schedule(config.learning_rate)], [warmup])
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, max(warmup, 1) if warmup else 0,
                                              max(total_steps, warmup + 1), end_value=0.0)


def optimizer_chain(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm else []
    parts.append(optax.adamw(learning_rate(config, total_steps), b1=0.9, b2=0.999, eps=1e-8,
                             weight_decay=config.weight_decay))
    return optax.chain(*parts)


def compute_dtype(config: TrainConfig):
    return jnp.bfloat16 if Precision(config.precision) is Precision.BF16 else jnp.float32


def memory_needed(model_config, config: TrainConfig) -> int:
    """Bytes of parameters, gradients and AdamW state for training (activations not counted)."""
    from vilasr.model import Qwen25VL

    abstract = nnx.eval_shape(lambda: Qwen25VL(model_config, rngs=nnx.Rngs(0)))
    total = trained = 0
    keep = nnx.filterlib.to_predicate(trainable(config.freeze_vision))
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        n = int(np.prod(var.shape))
        total += n
        trained += n if keep(path, var) else 0
    extra = 2 if Precision(config.precision) is Precision.BF16 else 0  # a bf16 working copy
    return total * (4 + extra) + trained * (4 + 8)   # f32 weights (+ bf16 copy); f32 grads + two moments


def check_host_memory(model_config, config: TrainConfig) -> None:
    """Refuse, before allocating anything, a run whose weights and optimizer cannot fit in RAM."""
    if jax.default_backend() != "cpu":
        return   # accelerators: `vilasr plan` answers with the compiler's own numbers
    need = memory_needed(model_config, config)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.9 * have:
        raise ConfigError(f"training this model needs at least {need / 2**30:.1f} GiB for weights, gradients and "
                          f"AdamW state, but this host has {have / 2**30:.1f} GiB; use a smaller preset or a TPU slice")


# ----------------------------------------------------------------------------- steps
def _loss_sum(model, input_ids, attention_mask, loss_mask, positions, images: dict):
    """`images` holds either `embeds` (features encoded outside: a frozen tower) or `pixels` and
    `plan` (encoded here, so a trainable tower gets gradients)."""
    hidden = model(input_ids, attention_mask=attention_mask, positions=positions, return_hidden=True,
                   image_embeds=images.get("embeds"), pixel_values=images.get("pixels"),
                   image_plan=images.get("plan"))
    return next_token_loss_sum(hidden, model.logits, input_ids, loss_mask)


def on_mesh(step):
    """Run a jitted step under the mesh its model's parameters live on and the TRAIN rules, so
    the model's logical constraints (activations, gradients) take effect; unchanged on one device."""
    @functools.wraps(step)
    def run(model, *args, **kwargs):
        leaf = jax.tree.leaves(nnx.state(model, nnx.Param))[0]
        traced = isinstance(leaf, jax.core.Tracer)   # inside another jit: its caller set the mesh
        mesh = None if traced else getattr(getattr(leaf, "sharding", None), "mesh", None)
        if not isinstance(mesh, jax.sharding.Mesh) or mesh.size == 1:
            return step(model, *args, **kwargs)
        with jax.set_mesh(mesh), nnx.logical_axis_rules(tpu_rules.TRAIN):
            return step(model, *args, **kwargs)
    return run


@on_mesh
@nnx.jit(static_argnames=("wrt",))
def _grad_step(model, wrt, input_ids, attention_mask, loss_mask, positions, images):
    """(loss sum, target count, gradients of the loss sum) of one micro-batch."""
    def loss_fn(m):
        total, count = _loss_sum(m, input_ids, attention_mask, loss_mask, positions, images)
        return total, count

    (total, count), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model)
    grads = tpu_sharding.constrain_like_params(grads)   # sharded like the parameters, never whole
    return total, count, grads


@nnx.jit
def apply_gradients(model, optimizer, grads, count):
    """Average the summed gradients over the batch's targets and take one optimizer step."""
    grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)
    optimizer.update(model, grads)
    return optax.tree.norm(grads)


@on_mesh
@nnx.jit
def _eval_loss(model, input_ids, attention_mask, loss_mask, positions, images):
    return _loss_sum(model, input_ids, attention_mask, loss_mask, positions, images)


# ----------------------------------------------------------------------------- the trainer
@dataclasses.dataclass
class RunResult:
    step: int
    stop: StopReason
    losses: list[float]
    skipped: dict[str, int]


def pad_patches(pixels: np.ndarray, grids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows (patches) padded with blank frames to a bucketed total (chunk_bucket: at most ~25 %
    more), and the grids with the blank frames added. The tower's shapes then depend on the total
    alone, so a trainable tower compiles once per bucket, not once per mix of image sizes. Blank
    frames come after the real ones (no image token takes their features), 2 patches tall and at
    most as long as the longest real frame (which keeps the attention block sizes)."""
    total = int(pixels.shape[0])
    missing = chunk_bucket(total) - total
    longest = int((grids[:, 1] * grids[:, 2]).max())
    extra = []
    while missing > 0:
        patches = min(missing, max(4, longest - longest % 4))
        extra.append((1, 2, patches // 2))
        missing -= patches
    if not extra:
        return pixels, grids
    blank = np.zeros((sum(2 * w for _, _, w in extra), pixels.shape[1]), pixels.dtype)
    return np.concatenate([pixels, blank]), np.concatenate([grids, np.array(extra, grids.dtype)])


class Trainer:
    """Runs `config` on `model`; checkpoints, metrics and the exported model go to `out_dir`."""

    # what the progress bar shows of a step's record, and how
    progress_fields: ClassVar[dict[str, str]] = {"loss": ".4f", "tokens_per_s": ".0f"}
    desc = "train"

    def __init__(self, model, processor, config: TrainConfig, out_dir, *, total_steps: int,
                 devices: int | jax.sharding.Mesh = 0, progress: bool = True, updates_per_step: int = 1,
                 checkpoints: str | None = None):
        self.model, self.processor, self.config = model, processor, config
        self.out = Path(out_dir)
        self.checkpoints = checkpoint_location(self.out, checkpoints)
        self.total_steps = total_steps
        self.updates_per_step = updates_per_step   # optimizer updates per step (GRPO: several per rollout batch)
        self.wrt = trainable(config.freeze_vision)
        if not nnx.state(model, self.wrt):
            raise ConfigError("every parameter is frozen: nothing would train (set freeze_vision=False or "
                              "train another model)")
        self.mesh = _data_mesh(devices, config.micro_size)
        self.optimizer = nnx.Optimizer(model, optimizer_chain(config, total_steps * updates_per_step), wrt=self.wrt)
        if self.mesh is not None:
            _replicate(model, self.mesh)
            _replicate(self.optimizer, self.mesh)
        self.progress = progress
        self.vision = DeviceVision(model, nnx.split(model), processor.image_processor, draw_labels=True)
        self.step = 0
        self._stop: StopReason | None = None

    def settings(self) -> dict:
        """What a resumed run must share with the run it resumes (bookkeeping fields aside)."""
        return self.config.to_json()

    # -- checkpoints ------------------------------------------------------------------------
    def _manager(self):
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(max_to_keep=self.config.keep_checkpoints,
                                               enable_async_checkpointing=True)
        return ocp.CheckpointManager(self.checkpoints, options=options)

    def save(self, manager, data_state) -> None:
        import orbax.checkpoint as ocp

        meta = {"step": self.step, "data": _jsonable(data_state), "config": self.settings()}
        manager.save(self.step, args=ocp.args.Composite(
            model=ocp.args.StandardSave(nnx.state(self.model, nnx.Param)),
            optimizer=ocp.args.StandardSave(nnx.state(self.optimizer)),
            meta=ocp.args.JsonSave(meta)))

    def restore(self, manager) -> dict | None:
        """Restore the newest readable checkpoint; returns its meta, or None when there is none."""
        import orbax.checkpoint as ocp

        for step in sorted(manager.all_steps(), reverse=True):
            try:
                restored = manager.restore(step, args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(_abstract(nnx.state(self.model, nnx.Param))),
                    optimizer=ocp.args.StandardRestore(_abstract(nnx.state(self.optimizer))),
                    meta=ocp.args.JsonRestore()))
            except Exception as exc:  # noqa: BLE001 -- any unreadable step: report it and fall back
                print(f"warning: checkpoint step {step} in {self.checkpoints} cannot be read "
                      f"({type(exc).__name__}: {str(exc)[:200]}); trying the previous one", file=sys.stderr)
                continue
            changed = sorted(k for k, v in self.settings().items()
                             if restored.meta["config"].get(k) != v and k not in BOOKKEEPING_FIELDS)
            if changed:
                raise CheckpointError(f"{self.out} holds a run with other settings ({', '.join(changed)}); "
                                      "resume with the same settings or pass a new --out")
            nnx.update(self.model, restored.model)
            nnx.update(self.optimizer, restored.optimizer)
            self.step = int(restored.meta["step"])
            return restored.meta
        if manager.all_steps():
            raise CheckpointError(f"no checkpoint in {self.checkpoints} can be read; move the folder "
                                  "away to start over")
        return None

    # -- the loop ---------------------------------------------------------------------------
    def run(self, make_source: Callable[[], Iterator], skipped: SkipLog) -> RunResult:
        """Train until `total_steps` (resuming from the newest checkpoint in `out_dir`).

        `make_source()` gives what `train_step` draws from (batches for SFT, prompts for GRPO): an
        iterator with `get_state()` / `set_state()`, whose position the checkpoints keep."""
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        manager = self._manager()
        source = make_source()
        meta = self.restore(manager)
        if meta is not None:
            source.set_state(meta["data"])
            print(f"resuming {self.out} from step {self.step}", file=sys.stderr)
        metrics = _Metrics(self.out, resume_step=self.step)
        losses: list[float] = []
        old_handlers = self._catch_signals()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.desc, unit="step",
                   disable=not self.progress or jax.process_index() != 0, file=sys.stderr)
        try:
            while self.step < self.total_steps and self._stop is None:
                release_compiled_programs()   # length buckets and rollouts compile many shapes (vilasr.compiled)
                started = time.perf_counter()
                try:
                    record = self.train_step(source)
                except StopIteration:
                    reasons = "; ".join(f"{n} x {why}" for why, n in skipped.counts.most_common(3))
                    raise ConfigError(f"the data ran out at step {self.step} of {self.total_steps}: "
                                      f"{skipped.total} record(s) were skipped ({reasons or 'none'})") from None
                self.step += 1
                losses.append(record["loss"])
                record = {"step": self.step, **record, "seconds": time.perf_counter() - started,
                          "lr": float(self.optimizer_lr()), "skipped": skipped.total}
                if self.step % self.config.log_every == 0 or self.step == self.total_steps:
                    metrics.write(record)
                bar.set_postfix({k: format(record[k], f) for k, f in self.progress_fields.items() if k in record})
                bar.update(1)
                if self.step % self.config.save_every == 0 or self.step == self.total_steps or self._stop:
                    self.save(manager, source.get_state())
        finally:
            bar.close()
            manager.wait_until_finished()
            manager.close()
            metrics.close()
            self._restore_signals(old_handlers)
        return RunResult(self.step, self._stop or StopReason.FINISHED, losses, dict(skipped.counts))

    def optimizer_lr(self) -> float:
        """The learning rate of the last update."""
        total = self.total_steps * self.updates_per_step
        return learning_rate(self.config, total)(max(self.step * self.updates_per_step - 1, 0))

    def train_step(self, batches) -> dict:
        """One optimizer step over `batch_size` sequences (accumulated over micro-batches); its record."""
        started = time.perf_counter()
        grads, total, count = None, 0.0, 0.0
        for _ in range(self.config.accumulation_steps):
            arrays = self.arrays(next(batches), local=True)   # on several hosts, each reads its own rows
            t, c, g = _grad_step(self.model, self.wrt, *arrays)
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
            total, count = total + t, count + c
        grad_norm = apply_gradients(self.model, self.optimizer, grads, count)
        count = float(count)
        tokens = int(count)
        return {"loss": float(total) / max(count, 1.0), "grad_norm": float(grad_norm), "tokens": tokens,
                "tokens_per_s": tokens / (time.perf_counter() - started)}

    def arrays(self, batch: Batch, *, local: bool = False) -> tuple:
        """The device inputs of a micro-batch: ids, masks, M-RoPE positions and the images (as
        features from the frozen tower, padded to a power-of-two count; or as pixels).

        `local`: on several hosts, `batch` holds this host's rows only (every host as many); the
        hosts agree on the length, exchange images (the tower sees them all, in row order) and
        assemble the rows into arrays over the whole mesh."""
        cfg = self.model.config
        local = local and jax.process_count() > 1
        if local:
            batch = _pad_length(batch, distributed.agree_max(batch.input_ids.shape[1]), self.processor.tokenizer.pad_id)
        grids = self._grids(batch.images)
        positions = prepare_inputs(cfg, batch.input_ids, batch.attention_mask,
                                   grids if len(grids) else None)["positions"]
        every_image = distributed.gather_images(batch.images) if local else batch.images
        if not self.config.freeze_vision and every_image:
            pixels = self.processor.image_processor(list(every_image))["pixel_values"]
            pixels, padded_grids = pad_patches(pixels, grids if every_image is batch.images else self._grids(every_image))
            images = {"pixels": pixels, "plan": vision_plan(padded_grids, cfg.vision)}
        else:
            self.vision.parts = nnx.split(self.model)   # current weights (and no stale copies kept alive)
            feats = self.vision.encode(every_image) if every_image else []
            n_tokens = sum(int(f.shape[0]) for f in feats)
            embeds = jnp.zeros((bucket(n_tokens, 16), cfg.text.hidden_size), self.model.dtype)
            if feats:
                embeds = embeds.at[:n_tokens].set(jax.lax.stop_gradient(jnp.concatenate(feats)).astype(embeds.dtype))
            images = {"embeds": embeds}
        arrays = (batch.input_ids, batch.attention_mask, batch.loss_mask, positions, images)
        return _place_batch(arrays, self.mesh, local=local)

    def _grids(self, images) -> np.ndarray:
        """(n, 3) patch grids (t, h, w) of `images`."""
        return np.array([self.vision.grid(*im.shape[:2]) for im in images], np.int32).reshape(-1, 3)

    def evaluate(self, batch: Batch) -> float:
        """Mean next-token loss of one batch under the current weights (no update)."""
        total, count = _eval_loss(self.model, *self.arrays(batch))
        return float(total) / max(float(count), 1.0)

    # -- signals ----------------------------------------------------------------------------
    def _catch_signals(self):
        def on(reason):
            def handler(signum, frame):
                if self._stop is not None:   # a second signal: stop at once
                    raise KeyboardInterrupt
                self._stop = reason
                print(f"signal {signum}: saving a checkpoint after this step (again to stop at once)",
                      file=sys.stderr)
            return handler

        try:
            return {sig: signal.signal(sig, on(reason)) for sig, reason in
                    ((signal.SIGTERM, StopReason.PREEMPTED), (signal.SIGINT, StopReason.INTERRUPTED))}
        except ValueError:   # not the main thread: leave signals alone
            return {}

    @staticmethod
    def _restore_signals(old) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------- helpers
class _Metrics:
    """metrics.jsonl (one line per logged step) and TensorBoard scalars under tensorboard/, written
    by the first host only (the others compute the same numbers)."""

    def __init__(self, out: Path, resume_step: int):
        self.path = out / "metrics.jsonl"
        self.file = self.tb = None
        if jax.process_index() != 0:
            return
        if self.path.exists():   # drop lines of steps a resumed run will redo
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self.file = self.path.open("a", encoding="utf-8")
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:
            self.tb = None

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                        state)


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def checkpoint_location(out: Path, checkpoints: str | None = None):
    """Where Orbax keeps a run's checkpoints: `out/checkpoints`, or `checkpoints` (a folder, or a
    URL such as gs://bucket/run that Orbax writes to directly: on several hosts every host writes
    its own shards there, and a preempted slice's successor finds them)."""
    from etils import epath

    if checkpoints is not None and "://" in str(checkpoints):
        return epath.Path(str(checkpoints))   # not through pathlib, which would fold gs:// into gs:/
    folder = out.absolute() / "checkpoints" if checkpoints is None else Path(checkpoints).absolute()
    try:   # a folder we cannot write fails here, before any step
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot keep checkpoints in {folder} ({exc.strerror}); give a writable folder") from None
    return epath.Path(folder)


def _data_mesh(devices, micro_batch: int):
    """The training mesh: `devices` is a count (0 = all visible), every one of them on the `fsdp`
    axis (weights, gradients and optimizer state sharded, the batch split by rows), or a Mesh
    made with `tpu.mesh.make_mesh`; None for one device."""
    if isinstance(devices, jax.sharding.Mesh):
        mesh = devices
    else:
        available = jax.devices()
        n = len(available) if devices == 0 else devices
        if n > len(available) or n < 1:
            raise ConfigError(f"--devices {devices}: only {len(available)} device(s) are visible")
        mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(fsdp=-1), available[:n]) if n > 1 else None
    if mesh is None or mesh.size == 1:
        return None
    rows = tpu_mesh.batch_divisor(mesh)
    if micro_batch % rows:
        raise ConfigError(f"the micro-batch of {micro_batch} sequences does not divide over {rows} devices (the "
                          f"mesh's data x fsdp axes); use a multiple of {rows} or --devices 1")
    return mesh


def _replicate(module, mesh) -> None:
    """Place `module`'s state on `mesh` by its logical names (TRAIN rules: sharded, not copied)."""
    tpu_sharding.place(module, mesh, tpu_rules.TRAIN)


def place_rows(arrays: tuple, mesh) -> tuple:
    """Arrays whose first axis is the batch's rows, split like the batch (TRAIN rules: data x fsdp)."""
    if mesh is None:
        return arrays
    return tuple(jax.device_put(a, logical.named_sharding(mesh, ("batch",), tpu_rules.TRAIN, np.shape(a)[:1]))
                 for a in arrays)


def _place_batch(arrays, mesh, *, local: bool = False):
    """The batch on the mesh: rows split over data x fsdp, images whole on every device. `local`:
    the rows are this host's share (several hosts), assembled into arrays over the whole mesh."""
    if mesh is None:
        return arrays

    def put(x, names):
        shape = list(np.shape(x))
        if local:   # the global shape decides the sharding: every host holds as many rows
            shape[names.index("batch")] *= jax.process_count()
        sharding = logical.named_sharding(mesh, names, tpu_rules.TRAIN, shape)
        return distributed.global_array(x, sharding) if local else jax.device_put(x, sharding)

    ids, attn, loss, positions, images = arrays
    rows = ("batch", "length")
    return (put(ids, rows), put(attn, rows), put(loss, rows), put(positions, (None, *rows)),
            jax.tree.map(lambda x: jax.device_put(x, logical.named_sharding(mesh, (None,) * np.ndim(x),
                                                                             tpu_rules.TRAIN, np.shape(x))), images))


def _pad_length(batch: Batch, width: int, pad_id: int) -> Batch:
    """`batch` right-padded to `width` tokens."""
    extra = width - batch.input_ids.shape[1]
    if extra == 0:
        return batch

    def pad(a, value):
        return np.pad(a, ((0, 0), (0, extra)), constant_values=value)

    return dataclasses.replace(batch, input_ids=pad(batch.input_ids, pad_id),
                               attention_mask=pad(batch.attention_mask, False), loss_mask=pad(batch.loss_mask, False))
