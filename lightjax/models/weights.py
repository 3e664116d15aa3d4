"""A model's parameters as flat paths, and loading weights into a model.

The one place parameter paths are spelled: `init_from` (a run's weights),
`lightjax.shrink` (sliced, dropped or factorised layers) and `lightjax.hf`
(Hugging Face tensor maps, both directions) all reach a block's parameters
through `block_path` / `block_of` rather than writing ("backbone",
"blocks", i, ...) themselves, so renaming a module attribute is a change
here and in the layers, nowhere else.

A path is a tuple of attribute names and list indices, as
`nnx.to_flat_state` gives it: ("backbone", "blocks", 0, "attn", "query",
"kernel").
"""

from __future__ import annotations

from typing import Any, Iterable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax import errors

Path = tuple

# Where the blocks live in every model (`Backbone.blocks`) and where
# BERT-of-Theseus keeps its frozen predecessor's (`TheseusBackbone`).
BACKBONE = ("backbone",)
BLOCKS = BACKBONE + ("blocks",)
PREDECESSOR = BACKBONE + ("predecessor",)
# Each block projection's path inside a block (`Block.attn` / `Block.mlp`).
# What a model may leave to its initialiser when weights come from a model
# with another head (a checkpoint's classifier for other labels, no pooler).
HEAD_MODULES = ("head", "head_hidden", "pooler")
PROJECTIONS = {"query": ("attn", "query"), "key": ("attn", "key"),
               "value": ("attn", "value"), "out": ("attn", "out"),
               "fc1": ("mlp", "fc1"), "fc2": ("mlp", "fc2")}
# A sentence encoder's projection of the pooled vector (sentence-transformers'
# Dense module; `SentenceEncoder.projection`).
PROJECTION = ("projection",)


class CheckpointError(errors.CheckpointError):
  """A checkpoint lightjax cannot read or map; the message names the key."""


def name(path: Path) -> str:
  """"backbone/blocks/0/attn/query/kernel"."""
  return "/".join(map(str, path))


def backbone_path(*rest) -> Path:
  """A path under the backbone (embeddings, final LayerNorm)."""
  return BACKBONE + tuple(rest)


def block_path(layer: int, *rest) -> Path:
  """Layer `layer`'s parameter path, e.g. block_path(0, "attn", "query")."""
  return BLOCKS + (layer,) + tuple(rest)


def projection_path(layer: int, matrix: str) -> Path:
  """Layer `layer`'s block projection `matrix` ("query" .. "fc2")."""
  return block_path(layer, *PROJECTIONS[matrix])


def block_of(path: Path) -> tuple[int, Path] | None:
  """(layer, the path inside the block) for a block parameter, else None."""
  if len(path) > len(BLOCKS) and path[:len(BLOCKS)] == BLOCKS:
    return path[len(BLOCKS)], path[len(BLOCKS) + 1:]
  return None


def is_kernel_param(path: Path) -> bool:
  """A parameter of the attention variant itself (attn.kernel.*), not a projection."""
  return any(a == "attn" and b == "kernel" for a, b in zip(path, path[1:]))


class Weights(dict):
  """{parameter path: float32 array}; `source[path]` names where each came
  from (a checkpoint tensor), for error messages."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.source: dict[Path, str] = {}


def params(model: nnx.Module) -> dict[Path, nnx.Variable]:
  """The model's `nnx.Param`s by path (shared ones once, under their first
  path)."""
  return {tuple(p): v for p, v in
          nnx.to_flat_state(nnx.state(model, nnx.Param))}


def arrays(model: nnx.Module) -> dict[Path, np.ndarray]:
  """The model's parameters as float32 numpy arrays by path."""
  return {p: np.asarray(v[...], np.float32) for p, v in params(model).items()}


def load(model: nnx.Module, weights: dict[Path, np.ndarray], *,
         optional: Iterable[str] = ()) -> list[str]:
  """Puts `weights` into `model`'s parameters; returns those left initialised.

  A parameter without a weight is an error unless its first path element
  is one of `optional` (e.g. a classifier head that starts fresh) or it
  belongs to the attention variant (`attn.kernel.*`); a weight without a
  parameter, or of another shape, is a `CheckpointError` naming both shapes.
  """
  have = params(model)
  initialized = check(have, weights, optional=optional)
  updates = [(path, var.replace(jnp.asarray(weights[path], var.dtype)))
             for path, var in have.items() if path in weights]
  nnx.update(model, nnx.from_flat_state(updates))
  return initialized


def check(have: dict[Path, Any], weights: dict[Path, Any], *,
          optional: Iterable[str] = ()) -> list[str]:
  """`load`'s checks on shapes alone: `have` and `weights` map paths to
  anything with a `.shape` (parameters, arrays, `jax.ShapeDtypeStruct`s
  of `nnx.eval_shape`), so a checkpoint can be checked against a model
  before either is allocated. Returns the parameters left initialised."""
  optional = tuple(optional)
  for path, value in weights.items():
    if path not in have:
      raise CheckpointError(f"weight {name(path)} {tuple(value.shape)} has no"
                            " parameter in the lightjax model")
    shape = tuple(have[path].shape)
    if shape != tuple(value.shape):
      source = getattr(weights, "source", {}).get(path)
      source = f"checkpoint tensor {source!r} as " if source else "checkpoint "
      raise CheckpointError(
          f"shape mismatch at {name(path)}: {source}{tuple(value.shape)},"
          f" lightjax model {shape}")
  initialized = []
  for path, var in have.items():
    if path in weights:
      continue
    if path[0] in optional or is_kernel_param(path):
      initialized.append(name(path))
    else:
      raise CheckpointError(f"the checkpoint has no weight for {name(path)}"
                            f" {tuple(var.shape)}")
  return initialized
