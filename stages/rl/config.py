"""GRPO's own settings (the optimizer's are stages.config.TrainConfig's, Stage.RL recipe).

A GRPO *step* is one rollout batch -- `prompts_per_step` prompts × `group_size` rollouts -- and
the optimizer updates on it: the rows are split, in prompt order, into updates of
`TrainConfig.batch_size` sequences each (the reference: 32 × 8 = 256 rows in two updates of 16
prompts × 8). Every field's metadata carries its command-line help.
"""

from __future__ import annotations

import dataclasses

from stages.rl.math import ADVANTAGES, POLICY_LOSSES, GrpoLossConfig
from vilasr.errors import ConfigError


def _field(default, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrpoConfig:
    prompts_per_step: int = _field(32, "prompts per rollout batch")
    group_size: int = _field(8, "rollouts per prompt (the group its advantage is normalised in)")
    rollout_rows: int = _field(0, "slots: rollouts under way at once, the step's prompts x group size streaming "
                                  "through them (0 = one slot per rollout); bounds the cache's memory")
    advantage: str = _field("grpo", f"advantage estimator: {' or '.join(sorted(ADVANTAGES))}")
    policy_loss: str = _field("ppo_clip", f"policy loss: {' or '.join(sorted(POLICY_LOSSES))}")
    clip_low: float = _field(0.2, "the ratio's lower clip is 1 - clip_low")
    clip_high: float = _field(0.3, "the ratio's upper clip is 1 + clip_high")
    dual_clip: float = _field(3.0, "cap of a negative-advantage token's loss at -A * dual_clip (0 = off)")
    kl_coef: float = _field(0.0, "weight of the k3 KL to the starting weights (0 = off, as ViLaSR)")
    max_prompt_tokens: int = _field(5120, "skip prompts longer than this many tokens, images included")

    def __post_init__(self):
        for name in ("prompts_per_step", "group_size", "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout_rows < 0:
            raise ConfigError(f"rollout_rows must be >= 0 (0 = all rows at once), got {self.rollout_rows}")
        _ = self.loss_config   # validates the loss fields

    @property
    def rows(self) -> int:
        return self.prompts_per_step * self.group_size

    @property
    def loss_config(self) -> GrpoLossConfig:
        return GrpoLossConfig(advantage=self.advantage, loss=self.policy_loss, clip_low=self.clip_low,
                              clip_high=self.clip_high, dual_clip=self.dual_clip or None, kl_coef=self.kl_coef)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
