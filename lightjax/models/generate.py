"""Autoregressive generation with the decoder LM's incremental decode step.

Each layer's attention kernel carries its own decode state: a KV cache for
softmax (each token attends over the cache: O(cache length) work) or the running sums
S_t = sum phi(k) v^T, z_t = sum phi(k) for linear attention (Katharopoulos et
al. 2020, sec. 3.4: O(1) per token, the "Transformers are RNNs" view). The
whole loop is one `jax.lax.scan`, so generation compiles once per shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


def choose_argmax(logits_BxV, t, carry):
  """The `choose` rule of greedy decoding: argmax, no state."""
  del t
  return logits_BxV.argmax(-1), carry


def decode_scan(model, cache, tokens_B, start, num_steps: int, choose=choose_argmax,
                choose_state=None):
  """`num_steps` decode steps at positions start, start + 1, ... in one scan.

  The one decode loop of the package: generation (below) and the decode
  benchmark both run it, so the benchmarked loop is the one users call.

  Args:
    model: a model with `decode_step(tokens_B, cache, index)`.
    cache: its decode state (`model.init_cache`).
    tokens_B: the token at position `start`.
    start: position of the first step (int or traced int).
    num_steps: static number of steps.
    choose: choose(logits_BxV, t, state) -> (next tokens_B, state): the
      token fed at position t + 1 (greedy argmax by default).
    choose_state: carried state of `choose` (e.g. an RNG key).
  Returns:
    (tokens [B, num_steps] chosen at positions start + 1 ..., final cache).
  """

  def step(carry, t):
    tokens_B, cache, state = carry
    logits_BxV, cache = model.decode_step(tokens_B, cache, t)
    nxt_B, state = choose(logits_BxV, t, state)
    nxt_B = nxt_B.astype(tokens_B.dtype)
    return (nxt_B, cache, state), nxt_B

  (_, cache, _), out_TxB = jax.lax.scan(
      step, (tokens_B, cache, choose_state), start + jnp.arange(num_steps))
  return out_TxB.T, cache


@functools.partial(jax.jit, static_argnames=("graphdef", "total_len", "sample_greedy"))
def _generate(graphdef, state, prompt_BxP, rng, temperature, *, total_len,
              sample_greedy):
  model = nnx.merge(graphdef, state)
  b, p = prompt_BxP.shape
  prompt_BxT = jnp.pad(prompt_BxP, ((0, 0), (0, total_len - p)))

  def choose(logits_BxV, t, rng):
    rng, sub = jax.random.split(rng)
    if sample_greedy:
      sampled_B = logits_BxV.argmax(-1)
    else:
      sampled_B = jax.random.categorical(sub, logits_BxV / temperature)
    # Inside the prompt the next token is given; after it, it is generated.
    given_B = prompt_BxT[:, jnp.minimum(t + 1, total_len - 1)]
    return jnp.where(t + 1 < p, given_B, sampled_B.astype(given_B.dtype)), rng

  out_BxT, _ = decode_scan(model, model.init_cache(b, total_len),
                           prompt_BxP[:, 0], 0, total_len - 1, choose, rng)
  return jnp.concatenate([prompt_BxP[:, :1], out_BxT], axis=1)


def generate(model, prompt_BxP: jax.Array, num_new_tokens: int, *,
             rng: jax.Array | None = None, temperature: float = 1.0,
             greedy: bool = False) -> jax.Array:
  """Returns [B, P + num_new_tokens]: the prompt followed by generated tokens.

  Args:
    model: a `DecoderLM` whose attention supports incremental decoding
      (softmax, linear, none); others raise NotImplementedError naming those
      that do.
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
                   total_len=total, sample_greedy=greedy)
