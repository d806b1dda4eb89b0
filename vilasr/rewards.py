"""RL rewards (SPEC §4): `trajectory_reward(assistant_turns, answer, problem_type)`. Implemented in
`vilasr.eval.rewards` on the shared scoring core."""

from vilasr.eval.rewards import trajectory_reward

__all__ = ["trajectory_reward"]
