"""A trainable tower's batch is padded with blank frames to a bucketed patch total
(stages.trainer.pad_patches): the real images' features are unchanged by the padding."""

from __future__ import annotations

import numpy as np
from flax import nnx

from stages.trainer import pad_patches
from vilasr.model import Qwen25VL, Qwen25VLConfig, vision_plan
from vilasr.processing import Processor
from drawing_ops.render_jax import chunk_bucket


def test_blank_frames_leave_the_real_features_unchanged():
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    processor = Processor.tiny()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((224, 224), (196, 252), (112, 84))]
    out = processor.image_processor(images)
    pixels, grids = out["pixel_values"], np.asarray(out["image_grid_thw"], np.int32)
    padded, padded_grids = pad_patches(pixels, grids)
    assert padded.shape[0] == chunk_bucket(pixels.shape[0]) > pixels.shape[0]   # this mix needs padding
    assert (padded_grids[len(grids):, 1] == 2).all()
    assert (padded_grids[:, 1] * padded_grids[:, 2]).max() == (grids[:, 1] * grids[:, 2]).max()
    real = np.asarray(model.image_features(pixels, plan=vision_plan(grids, model.config.vision)))
    both = np.asarray(model.image_features(padded, plan=vision_plan(padded_grids, model.config.vision)))
    np.testing.assert_allclose(both[: len(real)], real, atol=1e-5)
    assert both.shape[0] == padded.shape[0] // 4
