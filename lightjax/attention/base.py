"""The interface every attention variant implements, and what it declares.

One signature for every kernel, as a function and as a module:

  out = <name>_attention(q, k, v, *, mask=None, causal=False, <its options>)
  out = kernel(q, k, v, *, mask=None, causal=False, deterministic=True)

q, k, v are [batch, length, heads, head_dim] (the layout of
`jax.nn.dot_product_attention`); `mask` is a boolean [batch, length] key-padding
mask (True = real token); `causal=True` restricts query i to keys j <= i. The
output has q's shape and dtype.

Each variant also declares what it promises (class attributes), and
`tests/test_attention_contract.py` turns the declarations into checks, so a
newly registered variant is tested without writing a test:

  supports_causal  causal=True works (else it raises ValueError).
  supports_decode  init_cache / decode_step exist and equal the causal forward.
  exact            the output equals dense softmax attention restricted to
                   `allowed_mask(L, causal)` (`attention.dense`), to float32
                   rounding. Otherwise the variant approximates softmax
                   attention, and `softmax_tolerance` states how closely: the
                   mean absolute error against softmax over real query
                   positions, on the contract's inputs (unit-variance values,
                   queries/keys of std 0.5, 300 tokens, head_dim 16, default
                   options); None = no softmax approximation is claimed (e.g.
                   a different similarity function, or learned projections).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class AttentionKernel(nnx.Module):
  """Base class: maps (q, k, v) of shape [B, L, H, D] to outputs [B, L, H, D].

  Subclasses receive already-projected queries, keys and values (the q/k/v/out
  projections live in `lightjax.models.transformer.MultiHeadAttention`), so a
  variant only implements the token-mixing rule, plus any parameters that rule
  needs (Linformer's sequence projections) or non-trainable state (Performer's
  random features).

  Constructor keyword arguments every subclass accepts: `num_heads`,
  `head_dim`, `max_len`, `rngs`, `dtype`, plus its own options listed by
  `default_options()`.
  """

  registry_name: str = "?"
  supports_causal: bool = True
  supports_decode: bool = False
  exact: bool = True
  softmax_tolerance: float | None = None
  # True if the constructor takes `shared`: a dict the model hands to every
  # layer's kernel, so a kernel can reuse another layer's nnx.Variable objects
  # (cross-layer sharing, e.g. Linformer's layerwise projection).
  uses_shared: bool = False

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {}

  def __call__(
      self,
      q: jax.Array,
      k: jax.Array,
      v: jax.Array,
      *,
      mask: jax.Array | None = None,
      causal: bool = False,
      deterministic: bool = True,
  ) -> jax.Array:
    raise NotImplementedError

  def allowed_mask(self, length: int, causal: bool = False) -> np.ndarray:
    """Boolean [length, length]: which keys each query sees (exact variants).

    The default is full attention (lower-triangular when causal); sparse
    patterns override it with their connectivity sets.
    """
    full = np.ones((length, length), bool)
    return np.tril(full) if causal else full

  def init_cache(self, batch_size: int, max_len: int, dtype: Any = jnp.float32):
    raise NotImplementedError(
        f"attention {self.registry_name!r} has no incremental decoding;"
        " variants that do: " + ", ".join(decoding_variants())
    )

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    raise NotImplementedError(
        f"attention {self.registry_name!r} has no incremental decoding"
    )


def decoding_variants() -> list[str]:
  """Registered variants with `supports_decode` (for messages)."""
  from lightjax.attention import registry  # pylint: disable=g-import-not-at-top
  return [n for n, cls in registry.VARIANTS.items() if cls.supports_decode]


def check_causal(kernel: AttentionKernel, causal: bool) -> None:
  """Raises the one message a non-causal variant gives for causal=True."""
  if causal and not kernel.supports_causal:
    raise ValueError(
        f"attention {kernel.registry_name!r} cannot be causal; causal"
        " variants: " + ", ".join(causal_variants()))


def causal_variants() -> list[str]:
  from lightjax.attention import registry  # pylint: disable=g-import-not-at-top
  return [n for n, cls in registry.VARIANTS.items() if cls.supports_causal]
