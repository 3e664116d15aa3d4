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


def param_axes(*names: str | None) -> dict[str, Any]:
  """Metadata naming a parameter's dimensions by role (logical axes).

  `nnx.Param(value, **param_axes("embed", "mlp"))`, or a Flax layer's
  `kernel_metadata=param_axes(...)`. The names are the vocabulary of
  `lightjax.sharding.LOGICAL_AXES` (None: a dimension never split); the
  trainer maps them to its mesh through `config.sharding_rules`, so a
  module says what its dimensions are and the run decides where they live
  (Flax's logical partitioning, as MaxText and T5X use it). Stored as
  Flax's `out_sharding` metadata, which `nnx.Optimizer` copies to the
  parameter's optimizer state; not applied when the parameter is created
  (`eager_sharding=False`), so building a model needs no mesh.
  """
  return {"out_sharding": tuple(names), "eager_sharding": False}


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

  # Allowed values of an option, e.g. {"implementation": ("auto", "xla")},
  # and options that must be integers >= 1: checked, with unknown keys, by
  # `attention.check_options` before anything is built (config validation,
  # bench planning, `attention.build`).
  option_choices: dict[str, tuple] = {}
  positive_options: tuple[str, ...] = ()

  @classmethod
  def default_options(cls) -> dict[str, Any]:
    return {}

  @classmethod
  def validate_options(cls, options: dict[str, Any]) -> None:
    """Raises ValueError (one line, valid values listed) for a bad value."""
    for key, choices in cls.option_choices.items():
      if key in options and options[key] not in choices:
        raise ValueError(
            f"unknown {cls.registry_name} {key} {options[key]!r}; valid:"
            f" {', '.join(str(c) for c in choices)}")
    for key in cls.positive_options:
      value = options.get(key)
      if value is not None and (isinstance(value, bool)
                                or not isinstance(value, int) or value < 1):
        raise ValueError(f"attention {cls.registry_name!r} option {key} must"
                         f" be an integer >= 1, got {value!r}")

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

  def dense_equivalent(self, q, k, v, *, mask=None, causal=False):
    """An O(L S) statement of what an inexact variant computes, or None.

    The contract suite compares the kernel with it in float32 (e.g. linear
    attention's normalised kernel matrix, formed explicitly). Exact variants
    need none: `allowed_mask` and the dense softmax define them.
    """
    del q, k, v, mask, causal
    return None

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

