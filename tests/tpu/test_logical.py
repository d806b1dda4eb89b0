"""tpu.logical: logical axis names -> shardings, on the test session's several host devices."""

import jax
import numpy as np
from jax.sharding import PartitionSpec

from tpu import logical


def test_tests_see_several_host_devices():
    assert len(jax.devices()) >= 8  # set by tests/conftest.py


def test_logical_names_map_to_a_real_sharding():
    mesh = jax.make_mesh((4, 2), ("fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    rules = (("embed", "fsdp"), ("mlp", "tensor"), ("vocab", ("fsdp", "tensor")))
    assert logical.to_pspec(("embed", "mlp"), rules) == PartitionSpec("fsdp", "tensor")
    assert logical.to_pspec(("vocab", "embed"), rules) == PartitionSpec(("fsdp", "tensor"), None)  # fsdp used once
    sharding = logical.named_sharding(mesh, ("embed", "mlp"), rules, shape=(8, 6))
    x = jax.device_put(np.arange(48.0).reshape(8, 6), sharding)
    assert len({s.device for s in x.addressable_shards}) == 8
    assert x.addressable_shards[0].data.shape == (2, 3)
    # a dimension the mesh axes do not divide stays whole
    assert logical.named_sharding(mesh, ("embed", "mlp"), rules, shape=(8, 5)).spec == PartitionSpec("fsdp", None)
