"""Autoregressive generation with the decoder LM's incremental decode step.

Each layer's attention kernel carries its own decode state: a KV cache for
softmax (each token attends over the cache: O(cache length) work) or the running sums
S_t = sum phi(k) v^T, z_t = sum phi(k) for linear attention (Katharopoulos et
al. 2020, eq. 18-20: O(1) per token, the "Transformers are RNNs" view). The
whole loop is one `jax.lax.scan`, so generation compiles once per shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


@functools.partial(jax.jit, static_argnames=("graphdef", "total_len", "greedy"))
def _generate(graphdef, state, prompt_BxP, rng, temperature, *, total_len,
              greedy):
  model = nnx.merge(graphdef, state)
  b, p = prompt_BxP.shape
  cache = model.init_cache(b, total_len)
  prompt_BxT = jnp.pad(prompt_BxP, ((0, 0), (0, total_len - p)))

  def step(carry, t):
    token_B, cache, rng = carry
    logits_BxV, cache = model.decode_step(token_B, cache, t)
    rng, sub = jax.random.split(rng)
    if greedy:
      sampled_B = logits_BxV.argmax(-1)
    else:
      sampled_B = jax.random.categorical(sub, logits_BxV / temperature)
    # Inside the prompt the next token is given; after it, it is generated.
    nxt = jnp.where(t + 1 < p, prompt_BxT[:, jnp.minimum(t + 1, total_len - 1)],
                    sampled_B.astype(prompt_BxP.dtype))
    return (nxt, cache, rng), nxt

  _, out_TxB = jax.lax.scan(step, (prompt_BxP[:, 0], cache, rng),
                            jnp.arange(total_len - 1))
  return jnp.concatenate([prompt_BxP[:, :1], out_TxB.T], axis=1)


def generate(model, prompt_BxP: jax.Array, num_new_tokens: int, *,
             rng: jax.Array | None = None, temperature: float = 1.0,
             greedy: bool = False) -> jax.Array:
  """Returns [B, P + num_new_tokens]: the prompt followed by generated tokens.

  Args:
    model: a `DecoderLM` whose attention supports incremental decoding
      (softmax, linear); others raise NotImplementedError naming those that do.
    prompt_BxP: int tokens, at least one per sequence.
    num_new_tokens: tokens to generate after the prompt.
    rng: PRNG key for sampling (ignored when greedy).
    temperature: softmax temperature for sampling.
    greedy: take the argmax instead of sampling.
  """
  total = prompt_BxP.shape[1] + num_new_tokens
  if total > model.max_len:
    raise ValueError(f"prompt + new tokens = {total} exceeds the model's"
                     f" max_len {model.max_len}")
  for block in model.backbone.blocks:
    kernel = block.attn.kernel
    if not kernel.supports_decode:
      kernel.init_cache(1, 1)  # raises, naming the variants that can decode
  graphdef, state = nnx.split(model)
  rng = jax.random.key(0) if rng is None else rng
  return _generate(graphdef, state, prompt_BxP, rng, jnp.float32(temperature),
                   total_len=total, greedy=greedy)
