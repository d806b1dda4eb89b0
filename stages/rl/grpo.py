"""Stage 3: GRPO on multi-turn drawing rollouts (docs/method.md, the recipe).

A step: take the next `prompts_per_step` prompts; sample `group_size` rollouts of each with the
current weights (`vilasr.rollout`: every observation is an image the policy drew, and each turn
continues one persistent KV cache); score every trajectory (`vilasr.rewards.trajectory_reward`,
RL semantics); normalise the scores within each group (`stages.rl.math`); then take
`rows / batch_size` optimizer steps, in prompt order, on the policy loss over the tokens the
model wrote -- each turn's end-of-turn token included (the reference masks it out, so its policy
never learns when to stop).

The old log-probabilities are the sampler's, recorded as it chose each token (temperature-scaled,
before top-p / top-k): no second forward. They equal a teacher-forced forward over the finished
trajectory with all its images (a test checks it to 1e-4), so the first update's ratio is 1.

Everything a step does follows from (weights, step, seed), so a run killed at any point resumes
exactly from its last checkpoint (the trainer's, shared with SFT).

    result = run_grpo(prompts="data/maze_rl.jsonl", out="runs/rl", model_dir="runs/reflective/sft/model")
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from drawing_ops.protocol import FinishReason
from stages.config import Stage, TrainConfig
from stages.data import Batch, Example, SkipLog, collate
from stages.losses import next_token_logprobs
from stages.prompts import Prompt, load_prompts, sample
from stages.rl.config import GrpoConfig
from stages.rl.math import GrpoLossConfig, advantages_for, grpo_loss
from stages.sft import SftResult, export_model, load_model
from stages.trainer import StopReason, Trainer, apply_gradients, on_mesh, place_rows
from tpu.sharding import constrain_like_params
from vilasr.errors import ConfigError
from vilasr.eval.rewards import trajectory_reward
from vilasr.rollout import RolloutConfig, Trajectory, prompt_length

REWARD_KEYS = ("overall", "accuracy", "format", "reflection")


# ----------------------------------------------------------------------------- prompts
class PromptStream:
    """The prompts in a fresh seeded order on every pass, `per_step` at a time; its position (the
    prompts handed out so far) is all a checkpoint needs to resume it."""

    def __init__(self, prompts: Sequence[Prompt], per_step: int, seed: int):
        self.prompts, self.per_step, self.seed = list(prompts), per_step, seed
        self.position = 0
        self._orders: dict[int, np.ndarray] = {}

    def __iter__(self):
        return self

    def __next__(self) -> list[Prompt]:
        out = [self._at(self.position + i) for i in range(self.per_step)]
        self.position += self.per_step
        return out

    def _at(self, i: int) -> Prompt:
        epoch, k = divmod(i, len(self.prompts))
        if epoch not in self._orders:
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.prompts))
        return self.prompts[self._orders[epoch][k]]

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])


# ----------------------------------------------------------------------------- one rollout batch
@dataclasses.dataclass(frozen=True)
class Group:
    """A rollout batch, scored: rows in prompt-major order (prompt i's rollouts at i·G ... i·G + G − 1)."""

    trajectories: list[Trajectory]
    rewards: list[dict]
    advantages: np.ndarray   # (rows,)

    def summary(self) -> dict:
        """What the progress bar and the logs show: mean reward parts, turns, lengths, endings."""
        trajs = self.trajectories
        out = {key if key != "overall" else "reward": float(np.mean([r[key] for r in self.rewards]))
               for key in REWARD_KEYS}
        out["reward_std"] = float(np.std([r["overall"] for r in self.rewards]))
        out["turns"] = float(np.mean([len(t.turns) for t in trajs]))
        out["tool_calls"] = float(np.mean([sum(len(p.actions) for p in t.parsed) for t in trajs]))
        out["response_len"] = float(np.mean([t.response_len for t in trajs]))
        out["answered"] = float(np.mean([t.finish_reason is FinishReason.ANSWER for t in trajs]))
        return out


def sample_group(model, processor, prompts: Sequence[Prompt], *, group_size: int, config: RolloutConfig,
                 loss: GrpoLossConfig, seed: int, rows_at_once: int = 0, forced_turns=None,
                 progress: bool = False) -> Group:
    """`group_size` rollouts of each prompt (every row its own key), their rewards and advantages.
    `forced_turns[i]` scripts row i's first turns (as `rollout`'s; for tests and benchmarks)."""
    pairs = sample(model, processor, prompts, k=group_size, config=config, seed=seed,
                   batch_size=rows_at_once or len(prompts) * group_size, forced=forced_turns, progress=progress)
    trajs = [t for _, t in pairs]
    rewards = [trajectory_reward(t.turns, p.answer, str(t.task.problem_type)) for p, t in pairs]
    scores = np.array([r["overall"] for r in rewards], np.float32).reshape(len(prompts), group_size)
    advantages = np.asarray(advantages_for(jnp.asarray(scores), loss)).reshape(-1)
    return Group(trajs, rewards, advantages)


def trajectory_batch(trajectories: Sequence[Trajectory], pad_id: int) -> tuple[Batch, np.ndarray]:
    """Finished trajectories as a training batch (the loss mask = the model-written tokens) and
    their recorded log-probabilities, padded alike."""
    batch = collate([Example(t.token_ids, t.model_mask, tuple(t.images)) for t in trajectories], pad_id,
                    rows=len(trajectories))
    old = np.zeros(batch.input_ids.shape, np.float32)
    for row, t in enumerate(trajectories):
        old[row, :len(t.logprobs)] = t.logprobs
    return batch, old


# ----------------------------------------------------------------------------- the update
def sequence_logprobs(model, input_ids, attention_mask, positions, images: dict, temperature: float):
    """(B, L − 1) log-probability of each next token under the model, teacher-forced, from the
    distribution the sampler draws from (placeholders banned); `images` as the trainer passes them
    (features of a frozen tower, or pixels and their plan)."""
    hidden = model(input_ids, attention_mask=attention_mask, positions=positions, return_hidden=True,
                   image_embeds=images.get("embeds"), pixel_values=images.get("pixels"), image_plan=images.get("plan"))
    return next_token_logprobs(hidden, model.logits, input_ids, temperature, banned=model.config.placeholder_ids)


teacher_forced_logprobs = nnx.jit(sequence_logprobs, static_argnames=("temperature",))


@on_mesh
@nnx.jit(static_argnames=("wrt", "loss", "temperature"))
def _grpo_grad_step(model, wrt, loss: GrpoLossConfig, temperature: float, input_ids, attention_mask, loss_mask,
                    positions, images, old_logp, advantages, ref_logp):
    """(loss × rows, rows, metrics × rows, gradients of loss × rows) of one micro-batch, where rows
    counts the rows holding a model token: summed over micro-batches and divided by their rows,
    the accumulated update equals one over the whole batch."""
    mask = loss_mask[:, 1:]
    rows = jnp.sum(jnp.any(mask, axis=-1)).astype(jnp.float32)

    def loss_fn(m):
        logp = sequence_logprobs(m, input_ids, attention_mask, positions, images, temperature)
        value, parts = grpo_loss(logp, old_logp[:, 1:], advantages, mask, loss, ref_logp=ref_logp)
        return value * rows, parts

    (total, parts), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model)
    grads = constrain_like_params(grads)   # sharded like the parameters, never whole
    return total, rows, {k: v * rows for k, v in parts.items()}, grads


class GrpoTrainer(Trainer):
    """The shared trainer, whose step is a GRPO step (see the module's docstring)."""

    progress_fields: ClassVar[dict[str, str]] = {"reward": ".3f", "accuracy": ".2f", "format": ".2f",
                                                 "turns": ".1f", "response_len": ".0f"}
    desc = "grpo"

    def __init__(self, model, processor, config: TrainConfig, grpo: GrpoConfig, rollout_config: RolloutConfig,
                 out_dir, *, total_steps: int, devices: int = 0, progress: bool = True,
                 checkpoints: str | None = None):
        if grpo.rows % config.batch_size:
            raise ConfigError(f"a rollout batch of {grpo.prompts_per_step} prompts x {grpo.group_size} = {grpo.rows} "
                              f"rows does not split into updates of batch_size {config.batch_size}; make batch_size "
                              f"divide {grpo.rows}")
        super().__init__(model, processor, config, out_dir, total_steps=total_steps, devices=devices,
                         progress=progress, updates_per_step=grpo.rows // config.batch_size, checkpoints=checkpoints)
        self.grpo, self.rollout_config, self.loss = grpo, rollout_config, grpo.loss_config
        sampling = rollout_config.sampling
        self.temperature = 1.0 if sampling.is_greedy else float(sampling.temperature)
        # the KL anchor: the starting weights (taken before a resume loads newer ones)
        self.reference = nnx.clone(model) if grpo.kl_coef > 0 else None

    def settings(self) -> dict:
        rollout_fields = {f"rollout.{f.name}": repr(getattr(self.rollout_config, f.name))
                          for f in dataclasses.fields(self.rollout_config)}
        return {**super().settings(), **{f"grpo.{k}": v for k, v in self.grpo.to_json().items()}, **rollout_fields}

    def train_step(self, prompts) -> dict:
        started = time.perf_counter()
        group = self.sample(next(prompts))
        sampled = time.perf_counter()
        record = self.update(group)
        return {**record, **group.summary(), "rollout_s": sampled - started, "update_s": time.perf_counter() - sampled}

    def sample(self, prompts: Sequence[Prompt], forced_turns=None) -> Group:
        """This step's rollout batch from the current weights (`forced_turns` as `rollout`'s)."""
        return sample_group(self.model, self.processor, prompts, group_size=self.grpo.group_size,
                            config=self.rollout_config, loss=self.loss, seed=self.config.seed * 1_000_003 + self.step,
                            rows_at_once=self.grpo.rollout_rows, forced_turns=forced_turns)

    def update(self, group: Group) -> dict:
        """The optimizer steps on a rollout batch: `batch_size` rows each, in prompt order."""
        sums, rows_seen, grad_norms = {}, 0.0, []
        size, micro = self.config.batch_size, self.config.micro_size
        for start in range(0, self.grpo.rows, size):
            grads, rows = None, 0.0
            for m in range(start, start + size, micro):
                parts, n, g = self._micro_step(group, range(m, m + micro))
                grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
                rows += n
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value
            rows_seen += rows
            grad_norms.append(float(apply_gradients(self.model, self.optimizer, grads, rows)))
        tokens = int(sum(t.model_mask.sum() for t in group.trajectories))
        return {"loss": sums.get("loss", 0.0) / max(rows_seen, 1.0),
                **{k: v / max(rows_seen, 1.0) for k, v in sums.items() if k != "loss"},
                "grad_norm": float(np.mean(grad_norms)), "tokens": tokens}

    def _micro_step(self, group: Group, rows: range) -> tuple[dict, float, object]:
        batch, old = trajectory_batch([group.trajectories[i] for i in rows], self.processor.tokenizer.pad_id)
        arrays = self.arrays(batch)
        old, advantages = place_rows((old, group.advantages[rows.start:rows.stop]), self.mesh)
        ref = None
        if self.reference is not None:
            ref = teacher_forced_logprobs(self.reference, arrays[0], arrays[1], arrays[3], arrays[4],
                                          temperature=self.temperature)
        total, n, parts, grads = _grpo_grad_step(self.model, self.wrt, self.loss, self.temperature, *arrays, old,
                                                 advantages, ref)
        return {"loss": float(total), **{k: float(v) for k, v in parts.items()}}, float(n), grads


# ----------------------------------------------------------------------------- the stage
def usable_prompts(prompts: Sequence[Prompt], processor, config: RolloutConfig, max_tokens: int,
                   skipped: SkipLog) -> list[Prompt]:
    """The prompts whose text and images fit in `max_tokens` (the others are counted in `skipped`)."""
    kept = []
    for p in prompts:
        if prompt_length(processor, p.task, config) <= max_tokens:
            kept.append(p)
        else:
            skipped.add(f"prompt longer than max_prompt_tokens={max_tokens}")
    return kept


def run_grpo(*, prompts, out, preset: str | None = None, model_dir: Path | None = None,
             config: TrainConfig | None = None, grpo: GrpoConfig | None = None,
             rollout_config: RolloutConfig | None = None, devices: int = 0, progress: bool = True,
             model=None, processor=None, checkpoints: str | None = None) -> SftResult:
    """GRPO from the model in `model_dir` (or a preset, or `model`) on the prompts in `prompts`
    (an RL prompt file, a benchmark-form file or a synth folder). Output and `checkpoints` as
    `run_sft`'s."""
    config = config or TrainConfig.for_stage(Stage.RL)
    grpo = grpo or GrpoConfig()
    skipped = SkipLog()
    pool = load_prompts(prompts, skipped)   # first: a missing prompt file fails before any model work
    Path(out).mkdir(parents=True, exist_ok=True)
    if model is None:
        model, processor = load_model(preset=preset, model_dir=model_dir, config=config)
    if rollout_config is None:
        rollout_config = RolloutConfig.for_rl(max_pixels=processor.image_processor.max_pixels)
    pool = usable_prompts(pool, processor, rollout_config, grpo.max_prompt_tokens, skipped)
    if not pool:
        raise ConfigError(f"no prompt of {prompts} fits in max_prompt_tokens={grpo.max_prompt_tokens}")
    steps = config.max_steps or max(1, math.ceil(config.epochs * len(pool) / grpo.prompts_per_step))
    trainer = GrpoTrainer(model, processor, config, grpo, rollout_config, out, total_steps=steps, devices=devices,
                          progress=progress, checkpoints=checkpoints)
    result = trainer.run(lambda: PromptStream(pool, grpo.prompts_per_step, config.seed), skipped)
    exported = export_model(model, processor, Path(out)) if result.stop is StopReason.FINISHED else None
    return SftResult(result, exported)
