"""The interface every attention variant implements."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
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
  supports_decode: bool = False
  # True if the constructor takes `shared`: a dict the model hands to every
  # layer's kernel, so a kernel can reuse another layer's nnx.Variable objects
  # (cross-layer sharing, e.g. Linformer's layerwise projection).
  uses_shared: bool = False

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {}

  def __call__(
      self,
      q_BxLxHxD: jax.Array,
      k_BxLxHxD: jax.Array,
      v_BxLxHxD: jax.Array,
      *,
      mask_BxL: jax.Array | None = None,
      causal: bool = False,
      deterministic: bool = True,
  ) -> jax.Array:
    raise NotImplementedError

  def init_cache(self, batch_size: int, max_len: int, dtype: Any = jnp.float32):
    raise NotImplementedError(
        f"attention {self.registry_name!r} has no incremental decoding; "
        "variants that do: softmax (KV cache), linear (recurrent state)"
    )

  def decode_step(self, q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD, cache, index):
    raise NotImplementedError(
        f"attention {self.registry_name!r} has no incremental decoding"
    )
