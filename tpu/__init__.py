"""tpu: placing arrays on devices. Logical axis names -> mesh shardings (`tpu.logical`); meshes,
rules tables, multi-host start and ahead-of-time memory/speed planning build on it.

Imports jax and flax only (nothing else of the project), so every other package may use it.
"""
