"""vilasr: ViLaSR (reasoning by drawing) on Qwen2.5-VL in JAX/Flax.

    model/       Qwen2.5-VL in Flax NNX, Hugging Face import/export
    processing/  images, tokenizers, the chat template (`Processor`)
    rollout/     the sampler and the multi-turn drawing rollout
    eval/        scoring and benchmarks
    metrics      `score(prediction, answer, problem_type)`: evaluation metrics (SPEC §4)
    rewards      `trajectory_reward(assistant_turns, answer, problem_type)`: the RL reward
    cli/         the `vilasr` command

Heavy modules (JAX, the model) load on first use, so `import vilasr` stays cheap.
"""

from importlib import import_module

from vilasr.errors import CheckpointError, ConfigError, InputError, VilasrError

_SUBMODULES = ("metrics", "rewards")  # `vilasr.metrics.score` works after a bare `import vilasr`
_LAZY = {
    "Qwen25VL": "vilasr.model",
    "Qwen25VLConfig": "vilasr.model",
    "Processor": "vilasr.processing",
}

__all__ = ["CheckpointError", "ConfigError", "InputError", "VilasrError", "__version__", *_LAZY]


def __getattr__(name):
    if name == "__version__":  # one source: the installed distribution's metadata (pyproject.toml)
        from importlib.metadata import version

        return version("vilasr")
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"vilasr.{name}")
    raise AttributeError(f"module 'vilasr' has no attribute {name!r}")
