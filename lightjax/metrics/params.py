"""Parameter counts by group: the x-axis of every parameter-efficiency plot.

Groups are read off the module paths, so any model built from
`lightjax.models` is counted without model-specific code:
  embedding  token, position and segment (token type) tables, the CLS vector,
             ALBERT's factorised-embedding projection `embed_proj`
  attention  q/k/v/out projections and any parameters of the attention kernel
             (Linformer's E/F projections)
  mlp        the feed-forward layers of the blocks
  other      LayerNorms (the embedding LayerNorm too), the pooler and the
             classifier head
Only trainable `nnx.Param`s count; fixed buffers (sinusoidal tables,
Performer's random features) and head gates do not. A parameter shared by
several modules counts once: `nnx.state` lists it under its first path, so a
model with `share_layers` has one entry in "per_layer" (its one block, as
layer 0), and a layer-shared Linformer projection counts in layer 0 only.
Per-layer sizes (`heads_per_layer`, `mlp_dims_per_layer`) show as different
"per_layer" entries. A low-rank projection (`low_rank_ranks`) counts its two
factors and bias (`attn.query.down/up`, `mlp.fc1.down/up`) in the group of
the projection it replaces, r * (in + out) + out instead of in * out + out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx

_EMBED_KEYS = ("token_embed", "embed_proj", "pos_embed", "type_embed", "cls")


def _group(path: tuple) -> str:
  keys = [str(p) for p in path]
  if any(k in _EMBED_KEYS for k in keys):
    return "embedding"
  if "attn" in keys:
    return "attention"
  if "mlp" in keys:
    return "mlp"
  return "other"


def _layer(path: tuple) -> int | None:
  keys = list(path)
  if "blocks" in keys:
    i = keys.index("blocks")
    if i + 1 < len(keys):
      return int(keys[i + 1])
  return None


def count_params(model: nnx.Module) -> dict[str, Any]:
  """{"total", "embedding", "attention", "mlp", "other", "per_layer": [...]}."""
  counts = {"total": 0, "embedding": 0, "attention": 0, "mlp": 0, "other": 0}
  per_layer: dict[int, int] = {}
  for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    n = int(np.prod(np.shape(value)))
    counts["total"] += n
    counts[_group(path)] += n
    layer = _layer(path)
    if layer is not None:
      per_layer[layer] = per_layer.get(layer, 0) + n
  counts["per_layer"] = [per_layer[i] for i in sorted(per_layer)]
  return counts
