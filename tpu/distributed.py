"""Multi-host start and per-host input.

On a TPU slice of several hosts every worker runs the same program (tpu/launch/start.sh).
`initialize()` joins them into one JAX runtime before anything touches a device: on Cloud TPU
VMs JAX reads the coordinator, the process count and this worker's id from the TPU metadata;
elsewhere give them (or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).

Input: each host reads only its own rows (`host_rows`, a Grain MapDataset slice) and
`global_array` assembles the per-host pieces into one array sharded over the mesh, so no host
ever holds the global batch.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from tpu.errors import TpuError


@dataclasses.dataclass(frozen=True)
class Hosts:
    process_index: int
    process_count: int
    local_devices: int
    global_devices: int


def _multi_host_tpu() -> bool:
    """A Cloud TPU VM that is one of several workers (its metadata lists more than one host)."""
    names = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in names or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> Hosts:
    """Join the other hosts (a no-op on one host, or when already joined); returns where we are."""
    explicit = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if (explicit or _multi_host_tpu()) and not jax.distributed.is_initialized():
        try:
            jax.distributed.initialize(coordinator_address=explicit, num_processes=num_processes,
                                       process_id=process_id)
        except (RuntimeError, ValueError) as exc:
            raise TpuError(f"cannot join the other hosts ({exc}); start the same command on every worker "
                           "(tpu/launch/start.sh) or give the coordinator address, process count and id") from None
    return Hosts(jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def host_rows(dataset, index: int | None = None, count: int | None = None):
    """This host's share of a Grain MapDataset: rows index, index + count, ... (every host the same
    number, so the global batch divides evenly)."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    usable = len(dataset) // count * count
    if usable == 0:
        raise TpuError(f"{len(dataset)} records cannot be shared by {count} hosts; use more data")
    return dataset[:usable][index::count]


def global_array(local: np.ndarray, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """One array over the mesh from this host's rows (its share of the leading axis)."""
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, local)
