"""Images on the device during a rollout: preprocess and encode input images, and draw new images
with the JAX batch renderer and encode them in the same compiled program.

It runs the processor's own normalisation table and patch order (vilasr.processing.image) on the
device, so what the model sees equals the host processor's output.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from drawing_ops import pack_bucketed, render_batch
from drawing_ops.render_jax import bucket
from vilasr.model import vision_plan
from vilasr.processing.image import apply_table, patchify


def device_pixels(images: jax.Array, table: jax.Array, patch: int, temporal: int, merge: int) -> jax.Array:
    """(k, H, W, 3) uint8 -> (k * patches, 3 * temporal * patch * patch) float32: the processor's own
    normalisation table and patch order, run on the device."""
    frames = apply_table(table, images, jnp)[:, None]  # (k, T=1, 3, H, W)
    patches = jax.vmap(lambda f: patchify(f, patch, temporal, merge, xp=jnp)[0])(frames)
    return patches.reshape(-1, patches.shape[-1])


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _draw_and_encode(graphdef, state, sources, prims, draw_labels: bool, geometry: tuple, table, plan):
    model = nnx.merge(graphdef, state)
    drawn = render_batch(sources, prims, draw_labels=draw_labels)
    pixels = device_pixels(drawn, table, *geometry)
    return drawn, model.image_features(pixels, plan=plan)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _encode(graphdef, state, images, geometry: tuple, table, plan):
    model = nnx.merge(graphdef, state)
    return model.image_features(device_pixels(images, table, *geometry), plan=plan)


class DeviceVision:
    """Encodes images (and draws new ones) on the device, grouped by size, in power-of-two groups so
    the number of compilations stays bounded (one per image size and group bucket)."""

    def __init__(self, model, model_parts, image_processor, draw_labels: bool):
        self.parts = model_parts
        self.cfg = model.config
        ip = image_processor
        self.geometry = (ip.patch_size, ip.temporal_patch_size, ip.merge_size)
        self.table = jnp.asarray(ip.table)
        self.draw_labels = draw_labels

    def grid(self, h: int, w: int) -> tuple[int, int, int]:
        p = self.geometry[0]
        return (1, h // p, w // p)

    def _groups(self, images: Sequence[np.ndarray]):
        """(shape, indices, padded indices, vision plan) per image size; groups padded to a power of two
        by repeating their first image."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        for shape, idx in by_size.items():
            k = bucket(len(idx), 1)
            plan = vision_plan(np.array([self.grid(*shape)] * k), self.cfg.vision)
            yield shape, idx, idx + [idx[0]] * (k - len(idx)), plan

    def encode(self, images: Sequence[np.ndarray]) -> list[jax.Array]:
        """Features (tokens, hidden) of each image."""
        out: list = [None] * len(images)
        for _, idx, pick, plan in self._groups(images):
            batch = jnp.asarray(np.stack([images[i] for i in pick]))
            feats = _encode(self.parts[0], self.parts[1], batch, self.geometry, self.table, plan)
            for i, f in zip(idx, jnp.split(feats, len(pick))):
                out[i] = f
        return out

    def draw(self, sources: Sequence[np.ndarray], annotations) -> tuple[list[np.ndarray], list[jax.Array]]:
        """Draw `annotations[i]` on `sources[i]` and encode the results: (images, features)."""
        drawn: list = [None] * len(sources)
        feats_out: list = [None] * len(sources)
        for shape, idx, pick, plan in self._groups(sources):
            batch = jnp.asarray(np.stack([sources[i] for i in pick]))
            prims = pack_bucketed([(annotations[i].boxes, annotations[i].lines) for i in pick], image_hw=shape)
            images, feats = _draw_and_encode(self.parts[0], self.parts[1], batch, prims, self.draw_labels,
                                             self.geometry, self.table, plan)
            images = np.asarray(jax.device_get(images))
            for j, (i, f) in enumerate(zip(idx, jnp.split(feats, len(pick)))):
                drawn[i], feats_out[i] = images[j], f
        return drawn, feats_out
