"""The device mesh a run trains on, and where each array lives on it.

`config.mesh` names the axes and their sizes (one may be -1: the devices
left over):
  data   the batch is split over it; every device holds the whole model.
  fsdp   the batch is split over it too, and so are parameters and their
         optimizer state (along their embed dimension): each device keeps a
         1/fsdp share, as in ZeRO-3 / FSDP (Rajbhandari et al. 2020, "ZeRO:
         Memory Optimizations Toward Training Trillion Parameter Models",
         sec. 5).
  seq    the activations' positions (the residual stream between blocks).
  model  heads, MLP units and the vocabulary: Megatron's tensor parallelism
         (Shoeybi et al. 2019, "Megatron-LM", sec. 3), q/k/v and fc1 split
         by output columns, out and fc2 by input rows.
Data parallel over every device (`data=-1`, the rest 1) is the default.

Where an array lives follows from what its dimensions are, not from its
path: each parameter carries logical axis names (`attention.param_axes`,
Flax's `out_sharding` metadata, which `nnx.Optimizer` copies to its Adam
moments), and rules map names to mesh axes (`DEFAULT_RULES`, overridden
name by name by `config.sharding_rules`), the logical partitioning of
Flax / T5X / MaxText. Activations are pinned the same way inside the
model (`constrain`).

XLA's SPMD partitioner does the rest: the jitted steps are compiled for
the shardings their arguments carry (gathering a parameter where a layer
needs it whole, reducing gradients across the batch axes), so the train
step is the same Python function on 1 device or 8.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "seq", "model")
BATCH_AXES = ("data", "fsdp")  # both split the batch

# The roles a dimension can have (`attention.param_axes` on parameters,
# `constrain` on activations). `config.sharding_rules` maps each to a mesh
# axis (or a tuple of them, or None: whole).
LOGICAL_AXES = {
    "batch": "examples (activations)",
    "length": "sequence positions (activations)",
    "vocab": "token-table rows, the tied output's columns",
    "embed": "the residual width (d_model)",
    "heads": "the concatenated heads' width, H x head_dim (q, k, v outputs,"
             " out's input)",
    "mlp": "the feed-forward hidden width (and a classifier's hidden layer)",
    "rank": "a bottleneck width: low-rank factors, ALBERT's factorised"
            " embedding, Linformer's projected length",
    "norm": "LayerNorm scales and biases",
    "classes": "a classifier's outputs",
    "projection": "a sentence encoder's projected embedding (the output of"
                  " sentence-transformers' Dense; never the residual width)",
}
# Data and fsdp split the batch; fsdp splits parameters (and their Adam
# moments) along their embed dimension, as ZeRO-3 / FSDP does; seq splits
# the activations' length; model splits heads, MLP units and the
# vocabulary (Megatron's tensor parallelism). A size-1 axis splits nothing,
# so these rules hold for every mesh, data parallel included.
DEFAULT_RULES = (
    ("batch", BATCH_AXES),
    ("length", "seq"),
    ("embed", "fsdp"),
    ("heads", "model"),
    ("mlp", "model"),
    ("vocab", "model"),
)


class MeshError(ValueError):
  """A mesh or batch the devices cannot hold (one line; exit code 2)."""


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


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh, rules: tuple = ()
              ) -> dict[str, jax.Array]:
  """A global host batch (every process computes the same one: the order
  is a function of the step) as arrays split by `batch_sharding`: examples
  over the batch axes, positions over seq. With several processes
  each fills only the shards of its own devices
  (`jax.make_array_from_callback`: a process's rows, and with seq its
  positions, go only to its devices)."""
  out = {}
  for key, value in batch.items():
    sharding = batch_sharding(mesh, np.ndim(value), rules)
    if jax.process_count() == 1:
      out[key] = jax.device_put(value, sharding)
    else:
      out[key] = jax.make_array_from_callback(
          value.shape, sharding, lambda idx, v=value: v[idx])
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


def check_rules(rules) -> tuple[tuple[str, Any], ...]:
  """`config.sharding_rules` ((logical name, mesh axis | (axes) | None)
  pairs) checked, then the defaults for every name they leave out, one
  pair per name (the first given wins), so checking checked rules changes
  nothing."""
  out = []
  for rule in tuple(rules or ()):
    if len(rule) != 2:
      raise MeshError(f"config.sharding_rules: each rule is (logical name,"
                      f" mesh axis); got {tuple(rule)!r}")
    name, target = rule
    if name not in LOGICAL_AXES:
      raise MeshError(f"config.sharding_rules: unknown logical axis {name!r};"
                      f" valid: {', '.join(LOGICAL_AXES)}")
    targets = ((target,) if isinstance(target, str) or target is None
               else tuple(target) if isinstance(target, (tuple, list))
               else (target,))
    for t in targets:
      if t is not None and t not in AXES:
        raise MeshError(f"config.sharding_rules: {name!r} -> unknown mesh axis"
                        f" {t!r}; valid: {', '.join(AXES)} (or None: whole)")
    out.append((name, None if not targets else targets[0]
                if len(targets) == 1 else targets))
  table: dict[str, Any] = {}
  for name, target in (*out, *DEFAULT_RULES):
    table.setdefault(name, target)
  return tuple(table.items())


def spec_for(names, shape: tuple[int, ...], mesh_shape: dict[str, int],
             rules=DEFAULT_RULES, even: bool = True) -> P:
  """The PartitionSpec of an array whose dimensions have logical `names`.

  Each name becomes the mesh axes its (first) rule gives, keeping only
  axes of size > 1, each at most once per array (a square [embed, embed]
  kernel is split along its first dimension only), and with `even` only
  axes the dimension's size is divisible by (what is left of the
  product): arrays placed with `device_put` must split evenly, so a layout
  that cannot split a dimension keeps it whole rather than failing. An
  activation constraint may split unevenly (XLA pads the last shard): the
  residual stream with a CLS position has L + 1 positions.
  """
  table = {}
  for name, target in rules:
    table.setdefault(name, target)
  used, spec = set(), []
  for name, size in zip(names, shape):
    target = table.get(name) if name is not None else None
    targets = (target,) if isinstance(target, str) else (target or ())
    kept = []
    for axis in targets:
      n = mesh_shape.get(axis, 1)
      if n > 1 and axis not in used and (not even or size % (n * math.prod(
          mesh_shape[a] for a in kept)) == 0):
        kept.append(axis)
        used.add(axis)
    spec.append(None if not kept else kept[0] if len(kept) == 1
                else tuple(kept))
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)


@functools.lru_cache(maxsize=None)
def batch_sharding(mesh: Mesh, ndim: int = 1, rules: tuple = ()
                   ) -> NamedSharding:
  """A batch array [B, L, ...]: examples split as "batch", positions
  (ndim >= 2) as "length" (by default data x fsdp, and seq). Cached, so
  the rules are checked once, not per batch."""
  names = ("batch", "length")[:ndim]
  return NamedSharding(mesh, spec_for(names, (0,) * len(names),
                                      dict(mesh.shape), check_rules(rules)))


def ways(sharding: NamedSharding, dim: int) -> int:
  """Into how many parts `sharding` splits dimension `dim`."""
  spec = tuple(sharding.spec) + (None,) * (dim + 1)
  axes = spec[dim] or ()
  return math.prod(sharding.mesh.shape[a] for a in (
      (axes,) if isinstance(axes, str) else axes))


def check_batch(mesh: Mesh, batch_size: int, rules: tuple = ()) -> int:
  """How many parts the examples of a batch are split into; one-line
  MeshError unless they divide `batch_size`."""
  n = ways(batch_sharding(mesh, 1, rules), 0)
  if batch_size % n:
    raise MeshError(f"batch_size {batch_size} is not divisible by the {n}"
                    f" parts its examples are split into (config.mesh)")
  return n


def batch_shardings(mesh: Mesh, batch: dict[str, Any], rules: tuple = ()
                    ) -> dict[str, NamedSharding]:
  """`batch_sharding` per array of a batch (or of a whole split: only
  shapes are read). One-line MeshError when the positions' split does not
  divide an array's length (the examples' count is checked at setup)."""
  out = {key: batch_sharding(mesh, np.ndim(x), rules)
         for key, x in batch.items()}
  for key, x in batch.items():
    n = ways(out[key], 1) if np.ndim(x) >= 2 else 1
    if np.ndim(x) >= 2 and np.shape(x)[1] % n:
      raise MeshError(f"config.mesh splits positions into {n} parts (seq),"
                      f" which do not divide the length {np.shape(x)[1]} of"
                      f" {key!r}")
  return out


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def logical_names(variable) -> tuple | None:
  """A Variable's logical axis names (`attention.param_axes`), or None."""
  get = getattr(variable, "get_metadata", None)
  names = get().get("out_sharding") if get else None
  return tuple(names) if names else None


def state_shardings(tree: Any, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
  """A NamedSharding per array of `tree` (an nnx State: parameters and
  their optimizer moments, which carry the parameter's names): from its
  logical names through `rules`. Arrays without names (step counters,
  RNG state, fixed buffers) stay whole on every device."""
  rules = check_rules(rules)
  mesh_shape = dict(mesh.shape)

  def place(x):
    names = logical_names(x)
    shape = tuple((x.get_value() if _is_variable(x) else x).shape)
    spec = (spec_for(names, shape, mesh_shape, rules)
            if names and len(names) == len(shape) else P())
    placed = NamedSharding(mesh, spec)
    return x.replace(placed) if _is_variable(x) else placed
  return jax.tree.map(place, tree, is_leaf=_is_variable)


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


# Activation layout: set by the trainer around tracing its steps, read by
# `constrain` in the model (trace time only; no cost per step).
_LAYOUT: list[tuple[Mesh, tuple]] = []


@contextlib.contextmanager
def activation_layout(mesh: Mesh, rules=DEFAULT_RULES):
  """Within this context `constrain` pins activations to `mesh`."""
  _LAYOUT.append((mesh, check_rules(rules)))
  try:
    yield
  finally:
    _LAYOUT.pop()


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
  """`x` with its dimensions' logical `names` laid out on the current
  mesh (`jax.lax.with_sharding_constraint`), so XLA keeps e.g. the
  residual stream split over batch and sequence between blocks rather
  than choosing its own layout; the identity outside `activation_layout`
  (evaluation tools, export, a model used on its own)."""
  if not _LAYOUT or _LAYOUT[-1][0].devices.size == 1:
    return x
  mesh, rules = _LAYOUT[-1]
  spec = spec_for(names, x.shape, dict(mesh.shape), rules, even=False)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def describe(mesh: Mesh, batch_size: int, rules: tuple = ()) -> str:
  """The line a run logs at start: mesh shape and per-device batch."""
  n = mesh.devices.size
  tokens = batch_sharding(mesh, 2, rules)
  parts = ways(tokens, 1)
  return (f"Mesh {dict(mesh.shape)} over {n} {mesh.devices.flat[0].platform}"
          f" device{'s' if n > 1 else ''}: global batch {batch_size},"
          f" {batch_size // ways(tokens, 0)} per device"
          + (f", 1/{parts} of their positions each." if parts > 1 else "."))


def describe_state(shardings: Any) -> str:
  """How many arrays of the train state each mesh axis splits."""
  leaves = [s.get_value() if _is_variable(s) else s
            for s in jax.tree.leaves(shardings, is_leaf=_is_variable)]
  by_axis: dict[str, int] = {}
  for s in leaves:
    for axis in sorted({a for d in s.spec if d for a in (
        (d,) if isinstance(d, str) else d)}):
      by_axis[axis] = by_axis.get(axis, 0) + 1
  split = sum(1 for s in leaves if s.spec != P())
  axes = ", ".join(f"{a} {n}" for a, n in by_axis.items())
  return (f"Train state: {split} of {len(leaves)} arrays split"
          f"{f' ({axes})' if axes else ''}, the rest whole on every device.")
