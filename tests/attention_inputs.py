"""Inputs shared by the attention tests: q/k/v arrays and padding masks.

Plain functions (not fixtures) so parametrized tests and helpers call them
with the shapes they need; one place instead of one copy per test file.
"""

import jax.numpy as jnp
import numpy as np


def qkv(seed: int = 0, b: int = 2, l: int = 12, h: int = 2, d: int = 8,
        scale: float = 1.0, dtype=jnp.float32, length_k: int | None = None):
  """Gaussian queries, keys and values [b, l, h, d] (keys/values may be longer).

  `scale` multiplies queries and keys only (the softmax temperature); values
  stay unit-variance.
  """
  rng = np.random.default_rng(seed)
  s = l if length_k is None else length_k
  q = rng.standard_normal((b, l, h, d)) * scale
  k = rng.standard_normal((b, s, h, d)) * scale
  v = rng.standard_normal((b, s, h, d))
  return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def padding_mask(lengths, l: int) -> jnp.ndarray:
  """Boolean [len(lengths), l] key-padding mask: row i keeps its first lengths[i]."""
  return jnp.arange(l)[None, :] < jnp.asarray(lengths)[:, None]
