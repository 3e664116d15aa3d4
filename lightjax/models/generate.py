"""Autoregressive generation with the decoder LM's incremental decode step.

Each layer's attention kernel carries its own decode state
(`AttentionKernel.init_cache` / `decode_step`): a KV cache for softmax and
the far-reaching sparse patterns (strided, fixed, bigbird: each token
attends over the cache, O(cache length) work), a fixed-size ring buffer of
the last keys for sliding windows (local, longformer: constant memory), or
running sums S_t = sum phi(k) v^T, z_t = sum phi(k) for linear attention
(Katharopoulos et al. 2020, sec. 3.4: O(1) per token, the "Transformers are
RNNs" view) and Performer (the same prefix sums over FAVOR+ features,
Choromanski et al. 2021 sec. 2.4). The whole loop is one `jax.lax.scan`, so
generation compiles once per shape, never per token.

Sampling: greedy (argmax), or temperature sampling from softmax(logits / T)
restricted to the k most likely tokens when top_k > 0 ("top-k sampling",
Fan et al. 2018, sec. 5.4).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
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


def top_k_logits(logits_BxV, top_k: int):
  """Logits outside each row's k largest set to -inf (k <= 0: unchanged).

  Ties with the k-th largest value are kept."""
  if top_k <= 0 or top_k >= logits_BxV.shape[-1]:
    return logits_BxV
  kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
  return jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)


@functools.partial(jax.jit, static_argnames=("graphdef", "total_len",
                                             "sample_greedy", "top_k"))
def _generate(graphdef, state, prompt_BxP, rng, temperature, *, total_len,
              sample_greedy, top_k=0):
  model = nnx.merge(graphdef, state)
  b, p = prompt_BxP.shape
  prompt_BxT = jnp.pad(prompt_BxP, ((0, 0), (0, total_len - p)))

  def choose(logits_BxV, t, rng):
    rng, sub = jax.random.split(rng)
    if sample_greedy:
      sampled_B = logits_BxV.argmax(-1)
    else:
      sampled_B = jax.random.categorical(
          sub, top_k_logits(logits_BxV / temperature, top_k))
    # Inside the prompt the next token is given; after it, it is generated.
    given_B = prompt_BxT[:, jnp.minimum(t + 1, total_len - 1)]
    return jnp.where(t + 1 < p, given_B, sampled_B.astype(given_B.dtype)), rng

  out_BxT, _ = decode_scan(model, model.init_cache(b, total_len),
                           prompt_BxP[:, 0], 0, total_len - 1, choose, rng)
  return jnp.concatenate([prompt_BxP[:, :1], out_BxT], axis=1)


def _check(model, prompt_BxP, num_new_tokens: int) -> int:
  """Total length; one-line ValueErrors for what cannot be generated."""
  if prompt_BxP.ndim != 2 or prompt_BxP.shape[1] == 0:
    raise ValueError("the prompt is empty: give at least one token")
  if num_new_tokens < 0:
    raise ValueError(f"num_new_tokens must be >= 0, got {num_new_tokens}")
  p = prompt_BxP.shape[1]
  if p > model.max_len:
    raise ValueError(f"the prompt has {p} tokens, more than the model's"
                     f" max_len {model.max_len}")
  total = p + num_new_tokens
  if total > model.max_len:
    raise ValueError(f"prompt + new tokens = {p} + {num_new_tokens} = {total}"
                     f" exceeds the model's max_len {model.max_len}; ask for"
                     f" at most {model.max_len - p} new tokens")
  check_decodable(model)
  return total


def check_decodable(model) -> None:
  """NotImplementedError, naming the variants that can decode, unless every
  layer's attention has an incremental decode step."""
  for block in model.backbone.blocks:
    kernel = block.attn.kernel
    if not kernel.supports_decode:
      kernel.init_cache(1, 1)  # raises, naming the variants that can decode


def _compiled(model, prompt_BxP, num_new_tokens, temperature, greedy, top_k):
  total = _check(model, prompt_BxP, num_new_tokens)
  if not greedy and not temperature > 0:
    raise ValueError(f"temperature must be > 0 to sample, got {temperature}"
                     " (greedy decoding is temperature 0)")
  graphdef, state = nnx.split(model)
  args = (state, jnp.asarray(prompt_BxP), jax.random.key(0),
          jnp.float32(temperature))
  exe = _generate.lower(graphdef, *args, total_len=total, sample_greedy=greedy,
                        top_k=int(top_k)).compile()
  return exe, state


def generate(model, prompt_BxP: jax.Array, num_new_tokens: int, *,
             rng: jax.Array | None = None, temperature: float = 1.0,
             greedy: bool = False, top_k: int = 0) -> jax.Array:
  """Returns [B, P + num_new_tokens]: the prompt followed by generated tokens.

  Args:
    model: a `DecoderLM` whose attention supports incremental decoding
      (`supports_decode`); others raise NotImplementedError naming those
      that do.
    prompt_BxP: int tokens, at least one per sequence.
    num_new_tokens: tokens to generate after the prompt.
    rng: PRNG key for sampling (ignored when greedy).
    temperature: softmax temperature for sampling.
    greedy: take the argmax instead of sampling.
    top_k: sample among the k most likely tokens only (0 = all).
  Raises:
    ValueError: (one line) an empty prompt, or prompt + new tokens longer
      than the model's max_len.
  """
  exe, state = _compiled(model, prompt_BxP, num_new_tokens, temperature,
                         greedy, top_k)
  rng = jax.random.key(0) if rng is None else rng
  return exe(state, jnp.asarray(prompt_BxP), rng, jnp.float32(temperature))


def sample(model, prompt_P, num_new_tokens: int, *, temperature: float = 0.0,
           top_k: int = 0, seed: int = 0) -> tuple[np.ndarray, float]:
  """One prompt's continuation and the decoding speed (what
  `python -m lightjax.sample` prints).

  Args:
    model: a `DecoderLM` (see `generate`).
    prompt_P: int tokens of one prompt.
    num_new_tokens: tokens to generate.
    temperature: 0 = greedy (argmax); > 0 samples softmax(logits / T).
    top_k: with sampling, only the k most likely tokens (0 = all).
    seed: the sampling PRNG seed.
  Returns:
    (the num_new_tokens generated tokens, tokens per second), the time
    taken by the compiled scan alone (compilation excluded; prompt tokens
    are decoded by the same scan, so they count in the time, not the
    tokens).
  """
  prompt_1xP = np.asarray(prompt_P, np.int32).reshape(1, -1)
  greedy = temperature == 0
  exe, state = _compiled(model, prompt_1xP, num_new_tokens, temperature,
                         greedy, top_k)
  start = time.perf_counter()
  out_1xT = exe(state, jnp.asarray(prompt_1xP), jax.random.key(seed),
                jnp.float32(temperature if not greedy else 1.0))
  out_1xT = np.asarray(jax.block_until_ready(out_1xT))
  seconds = time.perf_counter() - start
  return out_1xT[0, prompt_1xP.shape[1]:], num_new_tokens / max(seconds, 1e-9)
