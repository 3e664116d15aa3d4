"""Attention variants behind one registry, plus their parameter-free kernels.

Every variant is an `nnx.Module` registered under a name. The model never
branches on variant names: it asks this registry for a class and builds it with
the variant's own options (`config.model.attention.<name>`), so adding a variant
is one file plus one `@register` line.

The module interface (see `base.AttentionKernel`):

  kernel = cls(num_heads=H, head_dim=D, max_len=L, rngs=rngs, **options)
  out_BxLxHxD = kernel(q_BxLxHxD, k_BxLxHxD, v_BxLxHxD,
                       mask_BxL=None, causal=False, deterministic=True)

and, for variants that support incremental (autoregressive) decoding,

  cache = kernel.init_cache(batch_size, max_len, dtype)
  out_Bx1xHxD, cache = kernel.decode_step(q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD,
                                          cache, index)

`mask_BxL` is a boolean key-padding mask (True = real token). The layout is the
one of `jax.nn.dot_product_attention`: [batch, length, heads, head_dim].
"""

from lightjax.attention.registry import (
    build,
    check_options,
    default_options,
    get,
    names,
    register,
)
from lightjax.attention.base import AttentionKernel

# Importing the variant modules registers them.
from lightjax.attention import softmax as _softmax  # noqa: F401
from lightjax.attention.softmax import softmax_attention
from lightjax.attention import linear as _linear  # noqa: F401
from lightjax.attention import performer as _performer  # noqa: F401
from lightjax.attention import linformer as _linformer  # noqa: F401
from lightjax.attention.linear import linear_attention
from lightjax.attention.performer import performer_attention
from lightjax.attention.linformer import linformer_attention
from lightjax.attention import sparse as _sparse  # noqa: F401
from lightjax.attention.sparse import (
    bigbird_attention,
    fixed_attention,
    local_attention,
    longformer_attention,
    strided_attention,
)

__all__ = [
    "AttentionKernel",
    "bigbird_attention",
    "build",
    "check_options",
    "default_options",
    "fixed_attention",
    "get",
    "linear_attention",
    "linformer_attention",
    "local_attention",
    "longformer_attention",
    "names",
    "performer_attention",
    "register",
    "softmax_attention",
    "strided_attention",
]
