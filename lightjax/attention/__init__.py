"""Attention variants behind one registry, plus their parameter-free kernels.

Every variant is an `nnx.Module` registered under a name. The model never
branches on variant names: it asks this registry for a class and builds it with
the variant's own options (`config.model.attention.<name>`), so adding a variant
is one file plus one `@register` line (and its import below).

One signature for every kernel, function and module alike (`base.py`):

  out = <name>_attention(q, k, v, *, mask=None, causal=False, <options>)
  out = kernel(q, k, v, *, mask=None, causal=False, deterministic=True)

and, for variants that support incremental (autoregressive) decoding,

  cache = kernel.init_cache(batch_size, max_len, dtype)
  out_Bx1xHxD, cache = kernel.decode_step(q_Bx1xHxD, k_Bx1xHxD, v_Bx1xHxD,
                                          cache, index)

q, k, v: [batch, length, heads, head_dim]; `mask`: boolean [batch, length]
key padding (True = real token). `dense.dense_attention` is the O(L^2) ground
truth the contract suite checks every variant against.
"""

from lightjax.attention.registry import (
    VARIANTS,
    build,
    check_options,
    default_options,
    get,
    names,
    register,
)
from lightjax.attention.base import AttentionKernel, param_axes

# Importing the variant modules registers them.
from lightjax.attention.dense import dense_attention
from lightjax.attention.softmax import softmax_attention
from lightjax.attention.identity import identity_attention
from lightjax.attention.linear import linear_attention
from lightjax.attention.performer import performer_attention
from lightjax.attention.linformer import linformer_attention
from lightjax.attention.sparse import (
    bigbird_attention,
    fixed_attention,
    local_attention,
    longformer_attention,
    strided_attention,
)

__all__ = [
    "AttentionKernel",
    "VARIANTS",
    "bigbird_attention",
    "build",
    "check_options",
    "default_options",
    "dense_attention",
    "fixed_attention",
    "get",
    "identity_attention",
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
