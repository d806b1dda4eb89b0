"""Sharded training on 8 host CPU devices: the trainer's SFT step and a GRPO update step on meshes
(data, fsdp, tensor) = (8,1,1), (1,8,1), (2,2,2) give the loss and updated parameters of one
device, with weights, gradients and optimizer state sharded; a checkpoint saved under one mesh
restores under another."""

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
    return trainer.train_step(iter([batch]))["loss"]


def _params(trainer):
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in
            nnx.to_flat_state(nnx.state(trainer.model, nnx.Param))}


def _assert_same_params(params, ref):
    """Equal within float tolerance. AdamW's first steps move a weight by about lr·g/|g|, so a
    gradient that is nearly zero (a token seen once) turns summation-order noise into a step of up
    to lr: allow a few such weights, each within what one AdamW step can move it."""
    for name, value in ref.items():
        diff = np.abs(params[name] - value)
        assert np.mean(diff <= 1e-5) >= 0.9999, (name, float(diff.max()))
        assert diff.max() <= 2 * _config().learning_rate, (name, float(diff.max()))


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    trainer = _trainer(tmp_path_factory.mktemp("one"), 1, "run")
    losses = [_step(trainer, _batch(0))]
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
    losses = [_step(trainer, _batch(0))]
    ref_losses, ref_params = one_device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    _assert_same_params(_params(trainer), ref_params)
    assert trainer.model.layers.mlp.gate.kernel.get_value().sharding.is_equivalent_to(kernel.sharding, 3)


def test_checkpoint_saved_under_one_mesh_restores_under_another(tmp_path):
    first = _trainer(tmp_path, tpu_mesh.make_mesh(tpu_mesh.MeshConfig(fsdp=8), jax.devices()[:8]), "run")
    first.step = 1
    manager = first._manager()
    first.save(manager, {"position": 1})
    manager.wait_until_finished()
    manager.close()
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(1))   # other weights: the restore must replace them
    second = Trainer(model, Processor.tiny(), _config(), tmp_path / "run", total_steps=2, devices=mesh, progress=False)
    manager = second._manager()
    meta = second.restore(manager)
    manager.close()
    assert meta["data"] == {"position": 1} and second.step == 1
    for name, value in _params(first).items():
        np.testing.assert_array_equal(_params(second)[name], value, err_msg=name)
    kernel = second.model.layers.mlp.gate.kernel.get_value()
    assert kernel.sharding.mesh.shape == mesh.shape and kernel.sharding.spec[1:] == ("fsdp", "tensor")
    mu = next(v for p, v in nnx.to_flat_state(nnx.state(second.optimizer)) if "mu" in p and p[-1] == "kernel")
    assert mu.get_value().sharding.mesh.shape == mesh.shape


# ----------------------------------------------------------------------------- GRPO update step
def _grpo_inputs(seed=0):
    batch = _batch(seed)
    rng = np.random.default_rng(seed + 10)
    positions = np.broadcast_to(np.arange(LENGTH, dtype=np.int32), (3, ROWS, LENGTH)).copy()
    old_logp = (-rng.uniform(5, 9, (ROWS, LENGTH))).astype(np.float32)
    advantages = rng.normal(size=ROWS).astype(np.float32)
    arrays = (batch.input_ids, batch.attention_mask, batch.loss_mask, positions,
              {"embeds": np.zeros((16, 128), np.float32)})
    return arrays, old_logp, advantages


def _grpo_run(mesh):
    """One update of the GRPO trainer's step (`_grpo_grad_step`, `apply_gradients`) on the tiny
    model, on `mesh` or on one device."""
    from stages import trainer
    from stages.rl import grpo
    from stages.rl.math import GrpoLossConfig

    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    config = TrainConfig.for_stage("rl", batch_size=ROWS, precision="fp32", learning_rate=1e-3)
    optimizer = nnx.Optimizer(model, trainer.optimizer_chain(config, 2), wrt=nnx.Param)
    arrays, old_logp, advantages = _grpo_inputs()
    if mesh is not None:
        trainer._replicate(model, mesh)
        trainer._replicate(optimizer, mesh)
        arrays = trainer._place_batch(arrays, mesh)
        old_logp, advantages = trainer.place_rows((old_logp, advantages), mesh)
    total, rows, _, grads = grpo._grpo_grad_step(model, nnx.Param, GrpoLossConfig(), 1.0, *arrays, old_logp,
                                                 advantages, None)
    norm = trainer.apply_gradients(model, optimizer, grads, rows)
    return float(total) / float(rows), float(norm), {"/".join(map(str, p)): np.asarray(v.get_value())
                                                     for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.fixture(scope="module")
def grpo_one_device():
    return _grpo_run(None)


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_grpo_step_on_a_mesh_equals_one_device(grpo_one_device, shape):
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=shape[0], fsdp=shape[1], tensor=shape[2]), jax.devices()[:8])
    loss, norm, params = _grpo_run(mesh)
    ref_loss, ref_norm, ref_params = grpo_one_device
    assert abs(ref_loss) > 1e-3   # a real loss, not a masked-out zero
    np.testing.assert_allclose([loss, norm], [ref_loss, ref_norm], rtol=1e-5)
    _assert_same_params(params, ref_params)
