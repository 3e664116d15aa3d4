"""Token and position embeddings.

Kept apart from the blocks so that shrinking recipes (e.g. ALBERT-style
factorised embeddings, Lan et al. 2020 sec. 3.1) can swap them without touching
the Transformer itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lightjax.attention import param_axes


def sinusoidal_table(max_len: int, dim: int) -> np.ndarray:
  """Fixed sin/cos positions, Vaswani et al. 2017 sec. 3.5."""
  pos_Lx1 = np.arange(max_len)[:, None]
  div = np.exp(np.arange(0, dim, 2) * (-np.log(10000.0) / dim))
  table_LxD = np.zeros((max_len, dim), np.float32)
  table_LxD[:, 0::2] = np.sin(pos_Lx1 * div)
  table_LxD[:, 1::2] = np.cos(pos_Lx1 * div)[:, : dim // 2]
  return table_LxD


class PositionTable(nnx.Variable):
  """A fixed (non-trained) position table: counted as a buffer, not a Param."""


class PositionEmbedding(nnx.Module):
  """Learned (`kind="learned"`) or fixed sinusoidal (`kind="sinusoidal"`) positions."""

  def __init__(self, max_len: int, dim: int, kind: str, *, rngs: nnx.Rngs):
    if kind not in ("learned", "sinusoidal"):  # ModelConfig.pos_embedding
      raise ValueError(f"unknown position embedding {kind!r}; valid:"
                       " learned, sinusoidal")
    if kind == "learned":
      init = nnx.initializers.normal(stddev=0.02)
      self.table = nnx.Param(init(rngs.params(), (max_len, dim)),
                             **param_axes(None, "embed"))
    else:
      self.table = PositionTable(jnp.asarray(sinusoidal_table(max_len, dim)))

  def __call__(self, length: int, offset: jax.Array | int = 0) -> jax.Array:
    """Returns positions [offset, offset + length) as [length, dim].

    A gather of those rows rather than a slice: the same values, and an
    exported graph then reads the table through a Gather, which int8
    quantizers handle (onnxruntime's dynamic quantization skips a Slice's
    input), so the position table is quantized like the token table.
    An input longer than the table is refused here (its length is
    static); a traced decode offset past it is clipped to the last row,
    as a slice clamps its start (generation checks the length first)."""
    rows = self.table.shape[0]
    if isinstance(length, int) and length > rows:  # (a symbolic length: its
      # exported shape carries the bound, see lightjax/export/stablehlo.py)
      raise ValueError(f"an input of {length} positions is longer than the"
                       f" model's position table ({rows} rows: its max_len)")
    positions_L = jnp.minimum(offset + jnp.arange(length), rows - 1)
    return self.table[...].at[positions_L].get(mode="promise_in_bounds")
