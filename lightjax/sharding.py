"""The device mesh a run trains on, and where each array lives on it.

`config.mesh` names the axes and their sizes: `data` (the batch is split
over it; every device holds the whole model) and `fsdp` (the batch is split
over it too, and so are parameters and optimizer state: each device keeps
1/fsdp of every large array, as in ZeRO-3 / FSDP, Rajbhandari et al. 2020,
"ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
sec. 5). One size may be -1: the devices left over. Data parallel over every
device (`data=-1, fsdp=1`) is the default.

XLA's SPMD partitioner does the rest: the jitted steps are compiled for
the shardings their arguments carry (gathering a parameter where a layer
needs it whole, reducing gradients across the batch axes), so the train
step is the same Python function on 1 device or 8.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")  # both split the batch


class MeshError(ValueError):
  """A mesh or batch the devices cannot hold (one line; exit code 2)."""


# Arrays smaller than this stay whole on every device: sharding a bias or a
# LayerNorm scale saves nothing and costs a gather per use.
MIN_SHARDED_SIZE = 2 ** 12


def initialize_distributed(coordinator_address: str = "",
                           num_processes: int = 0, process_id: int = -1,
                           auto: bool = False) -> None:
  """Joins JAX's distributed runtime, before anything touches a device.

  `coordinator_address` (host:port of process 0) with `num_processes` and
  `process_id` starts a job by hand (several processes on one machine, or
  hosts without a cluster manager); `auto` lets JAX detect the cluster
  (Cloud TPU VMs, Slurm, Open MPI). Neither: one process, nothing to do.
  Each process then sees every device of the job in `jax.devices()` and
  its own in `jax.local_devices()`; CPU processes exchange through gloo.
  """
  if coordinator_address:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"--coordinator_address needs --num_processes >= 1"
                       f" and 0 <= --process_id < num_processes; got"
                       f" {num_processes} and {process_id}")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif auto:
    jax.distributed.initialize()


def put_global(tree: Any, shardings: Any) -> Any:
  """`tree` (the same values on every process: seeded init, zeros) placed
  with `shardings`, which may span every process's devices; each process
  fills only the shards on its own devices (`jax.device_put` accepts
  addressable devices only)."""
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)
  if isinstance(shardings, NamedSharding):
    shardings = jax.tree.map(lambda _: shardings, tree)

  def put(x, s):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # RNG state
      return jax.random.wrap_key_data(put(jax.random.key_data(x), s),
                                      impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, s, lambda idx: host[idx])
  return jax.tree.map(put, tree, shardings)


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding
              ) -> dict[str, jax.Array]:
  """A global host batch (every process computes the same one: the order
  is a function of the step) as arrays split over the batch axes. With
  several processes each puts only its own rows on its own devices
  (`jax.make_array_from_process_local_data`): the rows of the devices it
  holds, which `make_mesh` lays out contiguously, process by process."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  n, p = jax.process_count(), jax.process_index()
  out = {}
  for key, value in batch.items():
    rows = value.shape[0] // n
    out[key] = jax.make_array_from_process_local_data(
        sharding, value[p * rows:(p + 1) * rows], value.shape)
  return out


def axis_sizes(mesh_cfg, num_devices: int) -> dict[str, int]:
  """{axis: size} with the -1 resolved; one-line MeshError unless the sizes
  multiply to `num_devices`."""
  sizes = {axis: int(dict(mesh_cfg).get(axis, 1)) for axis in AXES}
  unknown = sorted(set(dict(mesh_cfg)) - set(AXES))
  if unknown:
    raise MeshError(f"config.mesh has unknown axes {unknown}; valid:"
                     f" {', '.join(AXES)}")
  free = [a for a, n in sizes.items() if n == -1]
  if len(free) > 1 or any(n == 0 or n < -1 for n in sizes.values()):
    raise MeshError(f"config.mesh sizes must be positive, with at most one"
                     f" -1 (the devices left over); got {sizes}")
  fixed = math.prod(n for n in sizes.values() if n != -1)
  if free:
    if num_devices % fixed:
      raise MeshError(f"config.mesh {sizes}: {num_devices} devices are not"
                       f" a multiple of {fixed}")
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise MeshError(f"config.mesh {sizes} needs {math.prod(sizes.values())}"
                     f" devices; there are {num_devices}")
  return sizes


def make_mesh(mesh_cfg, devices) -> Mesh:
  sizes = axis_sizes(mesh_cfg, len(devices))
  return Mesh(np.asarray(devices).reshape(tuple(sizes.values())), AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Examples split over every batch axis (data x fsdp devices)."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def spec_for(shape: tuple[int, ...], fsdp: int) -> P:
  """FSDP's rule: the largest dimension that `fsdp` divides is split over
  the fsdp axis; small arrays (and everything when fsdp = 1) stay whole."""
  if fsdp == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp == 0:
      return P(*([None] * dim + ["fsdp"]))
  return P()


# `config.sharding_rules`: (regex, strategy) pairs matched in order against
# each array's path ("model/backbone/blocks/0/mlp/fc1/kernel", and the same
# path inside the optimizer state, "opt/opt_state/0/mu/backbone/..."); the
# first match decides (big_vision's `sharding_strategy`). Strategies:
STRATEGIES = {
    "fsdp": "split over fsdp by FSDP's rule (`spec_for`)",
    "replicate": "whole on every device",
}
DEFAULT_RULES = ((".*", "fsdp"),)


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                  for k in path)


def state_shardings(tree: Any, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
  """A NamedSharding per array of `tree` (parameters, optimizer state):
  the strategy of the first rule whose regex matches its path."""
  import re  # pylint: disable=import-outside-toplevel
  compiled = []
  for pattern, strategy in rules:
    if strategy not in STRATEGIES:
      raise MeshError(f"config.sharding_rules: unknown strategy {strategy!r}"
                      f" for {pattern!r}; valid: {', '.join(STRATEGIES)}")
    compiled.append((re.compile(pattern), strategy))
  fsdp = mesh.shape["fsdp"]

  def place(path, x):
    name = _path_str(path)
    strategy = next((s for r, s in compiled if r.search(name)), "replicate")
    spec = (spec_for(tuple(np.shape(x)), fsdp) if strategy == "fsdp"
            else P())
    return NamedSharding(mesh, spec)
  return jax.tree_util.tree_map_with_path(place, tree)


def describe(mesh: Mesh, batch_size: int) -> str:
  """The line a run logs at start: mesh shape and per-device batch."""
  n = mesh.devices.size
  return (f"Mesh {dict(mesh.shape)} over {n} {mesh.devices.flat[0].platform}"
          f" device{'s' if n > 1 else ''}: global batch {batch_size},"
          f" {batch_size // n} per device.")


def describe_state(shardings: Any) -> str:
  """How much of the train state each device holds whole or split."""
  specs = [s.spec for s in jax.tree.leaves(shardings)]
  split = sum(1 for spec in specs if spec != P())
  return (f"Train state: {split} of {len(specs)} arrays split over fsdp,"
          f" the rest whole on every device.")
