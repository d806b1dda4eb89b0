"""Multi-host start and per-host input.

On a TPU slice of several hosts every worker runs the same program (tpu/launch/start.sh).
`initialize()` joins them into one JAX runtime before anything touches a device: on Cloud TPU
VMs JAX reads the coordinator, the process count and this worker's id from the TPU metadata;
elsewhere give them (or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).

Input: each host reads and encodes only its own rows (`host_rows`: its share of a Grain
MapDataset, here the shuffled record order), and `global_array` assembles the per-host pieces
into one array sharded over the mesh, so no host ever holds the global batch's tokens. What every
host's program needs whole (the images, which go through the vision tower together) is exchanged
with `gather_images`, and shapes are agreed with `agree_max`.
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
        if explicit:   # outside Cloud TPU nothing else tells JAX how many we are and who we are
            num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
            process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
        # CPU devices of several processes talk through Gloo (TPU chips use their own network)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(coordinator_address=explicit, num_processes=num_processes,
                                       process_id=process_id)
        except (RuntimeError, ValueError) as exc:
            raise TpuError(f"cannot join the other hosts ({exc}); start the same command on every worker "
                           "(tpu/launch/start.sh) or give the coordinator address, process count and id") from None
    return Hosts(jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise TpuError(f"{name}={value!r} is not a whole number") from None


def host_rows(dataset, index: int | None = None, count: int | None = None):
    """This host's share of a Grain MapDataset: rows index, index + count, ... (every host the same
    number, so the global batch divides evenly)."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    usable = len(dataset) // count * count
    if usable == 0:
        raise TpuError(f"{len(dataset)} records cannot be shared by {count} hosts; use more data")
    return dataset[:usable][index::count]


def agree_max(value: int) -> int:
    """The largest of every host's `value` (each host's batch must have the same shape)."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.array([value], np.int64))))


def gather_ragged(local: np.ndarray) -> np.ndarray:
    """Every host's `local` (any leading length, the same trailing shape and dtype), concatenated
    in process order, on every host."""
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils

    lengths = multihost_utils.process_allgather(np.array([len(local)], np.int64)).reshape(-1)
    padded = np.zeros((int(lengths.max()), *local.shape[1:]), local.dtype)
    padded[:len(local)] = local
    every = multihost_utils.process_allgather(padded)   # (hosts, longest, ...)
    return np.concatenate([every[h, :n] for h, n in enumerate(lengths.tolist())])


def gather_images(local) -> tuple[np.ndarray, ...]:
    """Every host's images (HxWxC arrays of any sizes), in process order, on every host."""
    if jax.process_count() == 1:
        return tuple(local)
    shapes = gather_ragged(np.array([im.shape for im in local], np.int64).reshape(-1, 3))
    flat = gather_ragged(np.concatenate([im.reshape(-1) for im in local]) if local else np.zeros(0, np.uint8))
    ends = np.cumsum(np.prod(shapes, axis=1))
    return tuple(part.reshape(shape) for part, shape in zip(np.split(flat, ends[:-1]), shapes.tolist()))


def global_array(local: np.ndarray, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """One array over the mesh from this host's rows (its share of the leading axis)."""
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, local)
