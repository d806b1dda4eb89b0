"""tpu.mesh, tpu.rules, tpu.sharding, tpu.topology: meshes from a config, placement by logical
names, and topology names (on the test session's 8 host CPU devices)."""

import jax
import numpy as np
import pytest
from flax import nnx

from tpu import mesh as tpu_mesh
from tpu import rules, sharding, topology
from tpu.errors import TpuError
from vilasr.model import Qwen25VL, Qwen25VLConfig


def test_fill_and_mesh_shapes():
    assert tpu_mesh.mesh_shape(tpu_mesh.MeshConfig(), 8) == ((1, 8, 1), (1, 1, 1))
    assert tpu_mesh.mesh_shape(tpu_mesh.MeshConfig(data=2, fsdp=-1, tensor=2), 8)[0] == (2, 2, 2)
    assert tpu_mesh.mesh_shape(tpu_mesh.MeshConfig(fsdp=-1, dcn_data=-1), 8, slices=2) == ((1, 4, 1), (2, 1, 1))
    with pytest.raises(TpuError, match="needs 12 devices"):
        tpu_mesh.mesh_shape(tpu_mesh.MeshConfig(data=3, fsdp=4), 8)
    with pytest.raises(TpuError, match="at most one"):
        tpu_mesh.MeshConfig(data=-1, fsdp=-1)
    with pytest.raises(TpuError, match="do not divide"):
        tpu_mesh.mesh_shape(tpu_mesh.MeshConfig(data=3, fsdp=-1), 8)
    assert tpu_mesh.MeshConfig.parse("2,-1,1") == tpu_mesh.MeshConfig(data=2, fsdp=-1, tensor=1)


def test_make_mesh_names_and_auto_axes():
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    assert tpu_mesh.batch_divisor(mesh) == 4


def test_sharded_init_builds_each_shard_in_place():
    from vilasr.model.layers import GatedMLP

    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
    mlp = sharding.sharded_init(lambda: GatedMLP(32, 64, ("embed", "mlp"), use_bias=False, dtype=np.float32,
                                                 param_dtype=np.float32, rngs=nnx.Rngs(0)), mesh, rules.TRAIN)
    gate = mlp.gate.kernel.get_value()   # (embed, mlp)
    assert gate.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert gate.addressable_shards[0].data.shape == (16, 32) and float(np.std(np.asarray(gate))) > 0.01


def test_placement_shards_weights_and_keeps_values():
    cfg = Qwen25VLConfig.preset("tiny")
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
    other = Qwen25VL(cfg, rngs=nnx.Rngs(0))
    sharding.place(other, mesh, rules.TRAIN)
    embed = other.embed.get_value()   # (vocab, embed)
    assert embed.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    np.testing.assert_array_equal(np.asarray(embed), np.asarray(Qwen25VL(cfg, rngs=nnx.Rngs(0)).embed.get_value()))


def test_decode_rules_keep_weights_whole_along_embed():
    assert dict(rules.DECODE).get("embed") is None
    assert dict(rules.TRAIN)["embed"] == "fsdp"


@pytest.mark.parametrize("name, grid, chips", [("v5p-8", (2, 2, 1), 4), ("v5p-16", (2, 2, 2), 8),
                                               ("v5p-32", (2, 2, 4), 16), ("v5e-16", (4, 4), 16),
                                               ("v5litepod-32", (4, 8), 32), ("v6e-8", (2, 4), 8),
                                               ("v5p:2x2x2", (2, 2, 2), 8), ("v6e:4x4", (4, 4), 16)])
def test_topology_names_count_cores_or_chips(name, grid, chips):
    topo = topology.parse(name)
    assert topo.grid == grid and topo.chips == chips


@pytest.mark.parametrize("name, match", [("v5p-7", "TensorCores"), ("v9x-8", "unknown TPU generation"),
                                         ("tpu", "unknown TPU topology"), ("v5p:2x2", "3-D"),
                                         ("v6e-12", "power of two")])
def test_bad_topologies_say_what_to_do(name, match):
    with pytest.raises(TpuError, match=match):
        topology.parse(name)
