"""Sharded training on 8 host CPU devices: the trainer's SFT step on meshes (data, fsdp, tensor)
= (8,1,1), (1,8,1), (2,2,2) gives the loss and updated parameters of one device, with weights,
gradients and optimizer state sharded; a checkpoint saved under one mesh restores under another."""

import jax
import numpy as np
import pytest
from flax import nnx

from stages.config import TrainConfig
from stages.data import Batch
from stages.trainer import Trainer
from tpu import mesh as tpu_mesh
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor

MESHES = [(8, 1, 1), (1, 8, 1), (2, 2, 2)]
ROWS, LENGTH = 8, 32


def _config():
    return TrainConfig(batch_size=ROWS, max_steps=2, precision="fp32", learning_rate=1e-3, warmup_ratio=0.0,
                       schedule="constant", weight_decay=0.01, max_seq_len=LENGTH)


def _trainer(tmp_path, devices, name):
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    return Trainer(model, Processor.tiny(), _config(), tmp_path / name, total_steps=2, devices=devices,
                   progress=False)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2000, (ROWS, LENGTH)).astype(np.int32)
    attn = np.ones((ROWS, LENGTH), bool)
    attn[::2, -5:] = False   # some right padding
    loss = attn.copy()
    loss[:, :6] = False       # the prompt is not trained on
    return Batch(input_ids=ids, attention_mask=attn, loss_mask=loss, images=(), num_rows=ROWS)


def _step(trainer, batch):
    return trainer._one_step(iter([batch]))[0]   # (loss, tokens, grad norm) -> loss


def _params(trainer):
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in
            nnx.to_flat_state(nnx.state(trainer.model, nnx.Param))}


def _assert_same_params(params, ref):
    """Equal within float tolerance. AdamW's first steps move a weight by about lr·g/|g|, so a
    gradient that is nearly zero (a token seen once) turns summation-order noise into a step of up
    to lr: allow a few such weights, each within the most two AdamW steps can move it."""
    for name, value in ref.items():
        diff = np.abs(params[name] - value)
        assert np.mean(diff <= 1e-5) >= 0.9999, (name, float(diff.max()))
        assert diff.max() <= 2 * 2 * _config().learning_rate, (name, float(diff.max()))


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    trainer = _trainer(tmp_path_factory.mktemp("one"), 1, "run")
    losses = [_step(trainer, _batch(0)), _step(trainer, _batch(1))]
    return losses, _params(trainer)


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_sft_step_on_a_mesh_equals_one_device(tmp_path, one_device, shape):
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=shape[0], fsdp=shape[1], tensor=shape[2]), jax.devices()[:8])
    trainer = _trainer(tmp_path, mesh, "run")
    kernel = trainer.model.layers.mlp.gate.kernel.get_value()
    if shape[1] > 1:   # weights and AdamW moments sharded, not copied
        assert kernel.addressable_shards[0].data.shape[1] == kernel.shape[1] // shape[1]
        mu = jax.tree.leaves(nnx.state(trainer.optimizer))[1]
        assert len({s.data.shape for s in mu.addressable_shards}) == 1 and mu.addressable_shards[0].data.size < mu.size
    losses = [_step(trainer, _batch(0)), _step(trainer, _batch(1))]
    ref_losses, ref_params = one_device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    _assert_same_params(_params(trainer), ref_params)
    assert trainer.model.layers.mlp.gate.kernel.get_value().sharding.is_equivalent_to(kernel.sharding, 3)


def test_checkpoint_saved_under_one_mesh_restores_under_another(tmp_path):
    first = _trainer(tmp_path, tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=8, fsdp=1), jax.devices()[:8]), "run")
    _step(first, _batch(0))
    first.step = 1
    manager = first._manager()
    first.save(manager, {"position": 1})
    manager.wait_until_finished()
    manager.close()
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
    second = _trainer(tmp_path, mesh, "run")
    manager = second._manager()
    meta = second.restore(manager)
    manager.close()
    assert meta["data"] == {"position": 1} and second.step == 1
    for name, value in _params(first).items():
        np.testing.assert_array_equal(_params(second)[name], value, err_msg=name)
    kernel = second.model.layers.mlp.gate.kernel.get_value()
    assert kernel.sharding.mesh.shape == mesh.shape and kernel.sharding.spec[1:] == ("fsdp", "tensor")
    # the restored optimizer state carries on where the first run was
    np.testing.assert_allclose(_step(second, _batch(1)), _step(first, _batch(1)), rtol=1e-5)
