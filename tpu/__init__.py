"""tpu: placing arrays on devices and compiling for TPU slices: logical axis names -> shardings
(`logical`), meshes (`mesh`), rules tables (`rules`), placement (`sharding`), Cloud TPU topologies
and libtpu (`topology`), compile analysis (`aot`), multi-host start (`distributed`), and launch
scripts for TPU VM slices (launch/).

Imports jax and flax only (nothing else of the project), so every other package may use it.

Importing it on a host without a TPU chip, with libtpu installed, makes JAX run on the CPU and
keeps libtpu's start-up errors quiet (`topology.quiet_host_defaults`; set JAX_PLATFORMS to
choose otherwise); libtpu then only compiles for named topologies (`vilasr plan`).
"""

from tpu.topology import quiet_host_defaults as _quiet_host_defaults

_quiet_host_defaults()
