"""Stage 3, GRPO: the pure math (advantages, policy losses, KL) in `stages.rl.math`."""
