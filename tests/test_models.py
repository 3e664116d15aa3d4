"""Model shapes, padding invariance, causality and KV-cache decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import config_lib, models
from lightjax.metrics.params import count_params


def _cfg(name="encoder_classifier", pool="cls", pos="learned", attention="softmax",
         dtype="float32"):
  c = config_lib.base_config().model
  c.name, c.pool, c.pos_embedding, c.dtype = name, pool, pos, dtype
  c.embed_dim, c.num_heads, c.head_dim, c.mlp_dim, c.num_layers = 32, 2, 8, 48, 2
  c.classifier_hidden_dim = 16
  c.attention = config_lib.attention_config(attention)
  return c


def _build(cfg, max_len=24, vocab=17, classes=5):
  return models.build_model(cfg, vocab_size=vocab, num_classes=classes,
                            max_len=max_len, rngs=nnx.Rngs(0))


def _tokens(b=3, l=24, vocab=17, seed=0):
  return jax.random.randint(jax.random.key(seed), (b, l), 1, vocab)


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_classifier_shapes_and_padding_invariance(pool, pos):
  model = _build(_cfg(pool=pool, pos=pos))
  x = _tokens(l=16)
  logits = model(x)
  assert logits.shape == (3, 5) and logits.dtype == jnp.float32
  padded = jnp.pad(x, ((0, 0), (0, 8)))  # 8 pad (id 0) tokens appended
  np.testing.assert_allclose(model(padded), logits, atol=1e-5)


def test_padding_changes_nothing_but_real_tokens_do():
  model = _build(_cfg(pool="mean"))
  x = _tokens(l=16)
  x2 = x.at[:, 3].set((x[:, 3] % 16) + 1)
  assert not np.allclose(model(x), model(x2))


def test_head_dim_is_independent_of_embed_dim():
  cfg = _cfg()
  cfg.head_dim = 24  # 2 heads x 24 != 32
  model = _build(cfg)
  assert model(_tokens()).shape == (3, 5)
  assert model.backbone.blocks[0].attn.query.kernel.shape == (32, 48)


def test_dropout_active_only_in_training():
  model = _build(_cfg())
  x = _tokens()
  np.testing.assert_array_equal(model(x), model(x))
  assert not np.allclose(model(x, deterministic=False), model(x, deterministic=False))


def test_bf16_compute_keeps_float32_params():
  model = _build(_cfg(dtype="bfloat16"))
  out = model(_tokens())
  assert out.dtype == jnp.float32 and bool(jnp.isfinite(out).all())
  params = nnx.state(model, nnx.Param)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def test_decoder_is_causal():
  model = _build(_cfg(name="decoder_lm"))
  x = _tokens(l=12)
  logits = model(x)
  assert logits.shape == (3, 12, 17)
  x2 = x.at[:, 7].set((x[:, 7] % 16) + 1)
  np.testing.assert_allclose(model(x2)[:, :7], logits[:, :7], atol=1e-5)
  assert not np.allclose(model(x2)[:, 7:], logits[:, 7:])


def test_kv_cache_decoding_matches_parallel_forward():
  model = _build(_cfg(name="decoder_lm"))
  x = _tokens(l=10)
  full = model(x)
  cache = model.init_cache(3, 10)
  step = nnx.jit(lambda m, t, c, i: m.decode_step(t, c, i))
  for i in range(10):
    logits, cache = step(model, x[:, i], cache, i)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-4)


def test_param_groups_add_up():
  model = _build(_cfg())
  n = count_params(model)
  assert n["total"] == sum(n[k] for k in ("embedding", "attention", "mlp", "other"))
  assert len(n["per_layer"]) == 2 and n["per_layer"][0] == n["per_layer"][1]
  # q, k, v: 32 -> 16 (+bias), out: 16 -> 32 (+bias), per layer.
  assert n["attention"] == 2 * (3 * (32 * 16 + 16) + 16 * 32 + 32)
  # token table 17x32 + learned positions (24 + CLS)x32 + CLS vector.
  assert n["embedding"] == 17 * 32 + 25 * 32 + 32


def test_unknown_names_list_valid_choices():
  with pytest.raises(ValueError, match="valid.*decoder_lm"):
    _build(_cfg(name="nope"))
  cfg = _cfg()
  cfg.pool = "sum"
  with pytest.raises(ValueError, match="cls, first, max, mean"):
    _build(cfg)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_greedy_generation_equals_repeated_full_forward(attention):
  from lightjax.models.generate import generate
  model = _build(_cfg(name="decoder_lm", attention=attention), max_len=16)
  prompt = _tokens(b=2, l=4)
  out = generate(model, prompt, 6, greedy=True)
  assert out.shape == (2, 10)
  np.testing.assert_array_equal(out[:, :4], prompt)
  # Recompute: re-run the whole prefix for every new token. The model is
  # causal, so the prefix sits in a fixed [2, 10] buffer (one compile);
  # what follows position t never reaches its logits.
  forward = nnx.jit(lambda m, x: m(x))
  seq = jnp.zeros((2, 10), prompt.dtype).at[:, :4].set(prompt)
  for t in range(4, 10):
    nxt = forward(model, seq)[:, t - 1].argmax(-1)
    seq = seq.at[:, t].set(nxt.astype(seq.dtype))
  np.testing.assert_array_equal(out, seq)


def test_generation_needs_a_decodable_attention():
  from lightjax.models.generate import generate
  model = _build(_cfg(name="decoder_lm", attention="linformer"), max_len=16)
  with pytest.raises(NotImplementedError, match="softmax"):
    generate(model, _tokens(b=1, l=2), 3, greedy=True)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_bf16_decoder_generates(attention):
  """The decode state takes the compute dtype (a float32 KV cache under bf16
  queries used to fail in the fused softmax kernel)."""
  from lightjax.models.generate import generate
  model = _build(_cfg(name="decoder_lm", attention=attention,
                      dtype="bfloat16"), max_len=12)
  out = generate(model, _tokens(b=2, l=3), 5, greedy=True)
  assert out.shape == (2, 8)
  assert bool(jnp.all((out >= 0) & (out < 17)))
