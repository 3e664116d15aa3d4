"""BERT-style model options (Devlin et al. 2019): post-LN, exact GELU, segment
embeddings, pool="first", the pooler, LayerNorm epsilon; defaults unchanged."""

import hashlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from lightjax import config_lib, models, objectives, steps
from lightjax.metrics.params import count_params
from lightjax.models import transformer
from tests.helpers import full_config

E, V, C, L = 16, 11, 3, 8
NEW_FIELDS = ("norm_position", "activation", "layer_norm_eps",
              "type_vocab_size", "pooler")


def _cfg(name="encoder_classifier", pool="cls", attention="softmax", **kw):
  c = config_lib.base_config().model
  c.name, c.pool = name, pool
  c.embed_dim, c.num_heads, c.head_dim, c.mlp_dim, c.num_layers = E, 2, 8, 24, 2
  c.classifier_hidden_dim = 8
  c.attention = config_lib.attention_config(attention)
  for k, v in kw.items():
    c[k] = v
  return c


def _bert_cfg(attention="softmax", **kw):
  """The BERT options together (BertForSequenceClassification's layout)."""
  base = dict(pool="first", norm_position="post", activation="gelu",
              layer_norm_eps=1e-12, type_vocab_size=2, pooler=True,
              classifier_hidden_dim=0)
  base.update(kw)
  return _cfg(attention=attention, **base)


def _build(cfg, max_len=L, seed=0):
  return models.build_model(cfg, vocab_size=V, num_classes=C, max_len=max_len,
                            rngs=nnx.Rngs(seed))


def _paths(model):
  return sorted("/".join(map(str, p))
                for p, _ in nnx.to_flat_state(nnx.state(model)))


X = jnp.array([[1, 2, 3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 10, 1, 2, 0]])

# Computed with the model as it was before the BERT options existed (same
# config, vocab 11, 3 classes, max_len 8, nnx.Rngs(0)): parameter count, a
# hash of the sorted state paths, and the outputs on X.
_BEFORE = {
    ("encoder_classifier", "cls"): (
        4451, "92de110e618bc3f2",
        [[-0.209614, 0.265873, -0.007212], [-0.061166, 0.407813, 0.023004]]),
    ("encoder_classifier", "mean"): (
        4419, "d31970364551e2f8",
        [[0.264829, 0.079074, -0.906115], [0.142305, 0.162166, -1.014284]]),
    ("decoder_lm", "cls"): (
        4256, "442b7b00015fb116",
        [[[0.003227, -0.086049, -0.002545, 0.013517],
          [-0.028252, -0.125353, -0.04402, 0.026625],
          [-0.047427, -0.176411, -0.045006, 0.082692]],
         [[0.042526, 0.098637, -0.065248, -0.085843],
          [0.025828, -0.106834, -0.13267, 0.013569],
          [0.032708, 0.0039, -0.120978, -0.017478]]]),
}


# --- defaults unchanged ------------------------------------------------------


@pytest.mark.parametrize("name,pool", sorted(_BEFORE))
def test_defaults_match_the_model_before_the_options(name, pool):
  count, paths_hash, out = _BEFORE[(name, pool)]
  model = _build(_cfg(name=name, pool=pool))
  assert count_params(model)["total"] == count
  digest = hashlib.sha256("\n".join(_paths(model)).encode()).hexdigest()[:16]
  assert digest == paths_hash
  got = model(X)
  if name == "decoder_lm":
    got = got[:, :3, :4]
  np.testing.assert_allclose(got, np.asarray(out), atol=2e-6)


def test_config_without_the_new_fields_builds_the_same_model():
  cfg = _cfg()
  old = ml_collections.ConfigDict(
      {k: v for k, v in cfg.to_dict().items() if k not in NEW_FIELDS})
  for k in NEW_FIELDS:
    assert cfg[k] == models.ModelConfig().to_dict()[k]
  a, b = _build(cfg), _build(old)
  assert _paths(a) == _paths(b)
  assert "type_embed" not in str(_paths(a)) and "pooler" not in str(_paths(a))
  np.testing.assert_array_equal(a(X), b(X))


# --- post-LN ------------------------------------------------------------------


def test_post_ln_block_equals_hand_written_bert_layer():
  cfg = _cfg(norm_position="post", layer_norm_eps=1e-12, activation="gelu")
  blk = transformer.Block(cfg, L, rngs=nnx.Rngs(0), dtype=jnp.float32)
  # Non-trivial LayerNorm parameters, so a swapped ln1/ln2 would show.
  for i, ln in enumerate((blk.ln1, blk.ln2)):
    ln.scale[...] = 1.0 + 0.1 * jax.random.normal(jax.random.key(i), (E,))
    ln.bias[...] = 0.1 * jax.random.normal(jax.random.key(10 + i), (E,))
  x = jax.random.normal(jax.random.key(3), (2, L, E))
  mask = X != 0

  def ln(p, h):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return ((h - mu) / jnp.sqrt(var + 1e-12) * p.scale[...][None, None]
            + p.bias[...][None, None])

  def lin(p, h):
    return h @ p.kernel[...] + p.bias[...][None, None]

  a = blk.attn
  q, k, v = (lin(p, x).reshape(2, L, 2, 8) for p in (a.query, a.key, a.value))
  s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(8.0)
  s = jnp.where(mask[:, None, None, :], s, -1e30)
  attn = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, -1), v)
  h = ln(blk.ln1, x + lin(a.out, attn.reshape(2, L, 16)))
  ff = lin(blk.mlp.fc2, jax.nn.gelu(
      lin(blk.mlp.fc1, h), approximate=False))
  want = ln(blk.ln2, h + ff)
  got = blk(x, mask_BxL=mask)
  # Padded query rows are computed too; compare the real ones.
  np.testing.assert_allclose(np.asarray(got)[np.asarray(mask)],
                             np.asarray(want)[np.asarray(mask)], atol=1e-5)


def test_post_ln_has_embedding_ln_and_no_final_ln():
  pre = _build(_cfg())
  post = _build(_cfg(norm_position="post"))
  assert pre.backbone.embed_ln is None and pre.backbone.ln_final is not None
  assert post.backbone.embed_ln is not None and post.backbone.ln_final is None
  # Same number of LayerNorm parameters: one moved from the end to the start.
  assert count_params(pre)["total"] == count_params(post)["total"]
  out = post(X)
  assert out.shape == (2, C) and bool(jnp.isfinite(out).all())
  assert not np.allclose(out, pre(X))


def test_layer_norm_eps_reaches_every_layer_norm():
  model = _build(_bert_cfg())
  lns = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.LayerNorm)]
  assert len(lns) == 1 + 2 * 2  # embed_ln + ln1/ln2 per block
  assert all(m.epsilon == 1e-12 for m in lns)
  default = _build(_cfg())
  assert all(m.epsilon == 1e-6 for _, m in nnx.iter_graph(default)
             if isinstance(m, nnx.LayerNorm))


# --- GELU ---------------------------------------------------------------------


def test_exact_gelu_is_erf_gelu_and_differs_from_tanh_gelu():
  x = jnp.linspace(-4.0, 4.0, 101)
  exact = transformer.ACTIVATIONS.get("gelu")(x)
  tanh = transformer.ACTIVATIONS.get("gelu_tanh")(x)
  np.testing.assert_allclose(exact, jax.nn.gelu(x, approximate=False), atol=0)
  np.testing.assert_allclose(
      exact, x * 0.5 * (1 + jax.scipy.special.erf(x / np.sqrt(2))), atol=1e-6)
  np.testing.assert_allclose(tanh, jax.nn.gelu(x), atol=0)
  assert float(jnp.abs(exact - tanh).max()) > 1e-4
  mlp = _build(_cfg(activation="gelu")).backbone.blocks[0].mlp
  h = jax.random.normal(jax.random.key(0), (2, 4, E))
  want = mlp.fc2(jax.nn.gelu(mlp.fc1(h), approximate=False))
  np.testing.assert_allclose(mlp(h), want, atol=1e-6)
  # Same weights (same seed), only the activation differs.
  assert not np.allclose(_build(_cfg(activation="gelu"))(X), _build(_cfg())(X))


# --- segment embeddings -------------------------------------------------------


def test_segment_embeddings_change_outputs_and_zero_ids_equal_none():
  model = _build(_bert_cfg())
  assert model.backbone.type_embed.embedding.shape == (2, E)
  seg = jnp.array([[0, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 0]])
  none = model(X)
  np.testing.assert_array_equal(model(X, segment_ids_BxL=jnp.zeros_like(X)),
                                none)
  assert not np.allclose(model(X, segment_ids_BxL=seg), none)


def test_segment_ids_ignored_without_segment_embeddings():
  model = _build(_cfg())
  assert model.backbone.type_embed is None
  np.testing.assert_array_equal(model(X, segment_ids_BxL=jnp.ones_like(X)),
                                model(X))


def test_segment_embeddings_count_as_embedding_params():
  n0 = count_params(_build(_cfg()))
  n2 = count_params(_build(_cfg(type_vocab_size=2)))
  assert n2["embedding"] - n0["embedding"] == 2 * E
  assert n2["total"] - n0["total"] == 2 * E


# --- pooling and pooler -------------------------------------------------------


def test_pool_first_reads_input_position_zero():
  model = _build(_cfg(pool="first"))
  assert not hasattr(model, "cls")
  # No prepended vector: the position table is max_len long, not max_len + 1.
  assert model.backbone.pos_embed.table.shape == (L, E)
  hidden = {}
  orig = model.backbone.run_blocks

  def spy(x, **kw):
    hidden["x"] = orig(x, **kw)
    return hidden["x"]

  model.backbone.run_blocks = spy
  logits = model(X)
  model.backbone.run_blocks = orig
  want = model.head(jax.nn.gelu(model.head_hidden(hidden["x"][:, 0])))
  np.testing.assert_allclose(logits, want, atol=1e-6)


def test_pooler_params_and_tanh():
  without = _build(_cfg(pool="first", classifier_hidden_dim=0))
  with_ = _build(_cfg(pool="first", classifier_hidden_dim=0, pooler=True))
  assert without.pooler is None
  assert with_.pooler.kernel.shape == (E, E)
  n0, n1 = count_params(without), count_params(with_)
  assert n1["total"] - n0["total"] == E * E + E
  assert n1["other"] - n0["other"] == E * E + E  # pooler counts with the head
  hidden = {}
  orig = with_.backbone.run_blocks
  with_.backbone.run_blocks = lambda x, **kw: hidden.setdefault("x", orig(x, **kw))
  logits = with_(X)
  with_.backbone.run_blocks = orig
  want = with_.head(jnp.tanh(with_.pooler(hidden["x"][:, 0])))
  np.testing.assert_allclose(logits, want, atol=1e-6)


def test_bert_param_names_for_a_weight_mapping():
  paths = set(_paths(_build(_bert_cfg())))
  for p in ("backbone/token_embed/embedding", "backbone/pos_embed/table",
            "backbone/type_embed/embedding", "backbone/embed_ln/scale",
            "backbone/embed_ln/bias", "backbone/blocks/0/attn/query/kernel",
            "backbone/blocks/1/attn/out/bias", "backbone/blocks/0/ln1/scale",
            "backbone/blocks/0/ln2/bias", "backbone/blocks/0/mlp/fc1/kernel",
            "backbone/blocks/0/mlp/fc2/bias", "pooler/kernel", "head/kernel"):
    assert p in paths, p
  assert not any(p.startswith(("backbone/ln_final", "cls", "head_hidden"))
                 for p in paths)


# --- padding, attention variants, training ------------------------------------


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_bert_options_padding_invariance(attention):
  model = _build(_bert_cfg(attention=attention), max_len=16)
  x = jax.random.randint(jax.random.key(0), (3, 8), 1, V)
  seg = jnp.broadcast_to((jnp.arange(8) >= 4).astype(jnp.int32), (3, 8))
  logits = model(x, segment_ids_BxL=seg)
  assert logits.shape == (3, C)
  padded, seg_p = jnp.pad(x, ((0, 0), (0, 8))), jnp.pad(seg, ((0, 0), (0, 8)))
  np.testing.assert_allclose(model(padded, segment_ids_BxL=seg_p), logits,
                             atol=1e-5)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_bert_config_trains_one_step_with_any_attention(attention):
  cfg = _bert_cfg(attention=attention)
  model = models.build_model(cfg, vocab_size=V, num_classes=C, max_len=L,
                             rngs=nnx.Rngs(params=0, dropout=1))
  opt = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.Param)
  gd_model, model_state = nnx.split(model)
  gd_opt, opt_state = nnx.split(opt)
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
  batch = {"inputs": X, "targets": jnp.array([0, 2]),
           "weights": jnp.ones((2,), jnp.float32)}
  state = {"model": model_state, "opt": opt_state}
  step = jax.jit(lambda s, b, a: steps.train_step(
      {"model": gd_model, "opt": gd_opt}, objectives.get("classification"),
      s, b, a))
  state, acc = step(state, batch, steps.zero_metrics())
  assert int(acc["first_bad_step"]) == -1
  assert np.isfinite(float(acc["loss_sum"]))
  after = nnx.state(nnx.merge(gd_model, state["model"]), nnx.Param)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
  assert all(jax.tree.leaves(moved))


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_post_ln_decoder_is_causal_and_decodes(attention):
  cfg = _cfg(name="decoder_lm", attention=attention, norm_position="post",
             activation="gelu", type_vocab_size=2)
  model = _build(cfg, max_len=10)
  x = jax.random.randint(jax.random.key(0), (2, 10), 1, V)
  full = model(x)
  x2 = x.at[:, 6].set((x[:, 6] % (V - 1)) + 1)
  np.testing.assert_allclose(model(x2)[:, :6], full[:, :6], atol=1e-5)
  cache = model.init_cache(2, 10)
  for i in range(10):
    logits, cache = model.decode_step(x[:, i], cache, i)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-4)


# --- validation -----------------------------------------------------------------


def test_bert_options_pass_validation():
  config_lib.validate(full_config(
      norm_position="post", activation="gelu", layer_norm_eps=1e-12,
      type_vocab_size=2, pool="first", pooler=True))


@pytest.mark.parametrize("key,value,match", [
    ("norm_position", "middle", "unknown norm position 'middle'; valid: post, pre"),
    ("activation", "swish", "unknown activation 'swish'; valid: gelu, gelu_tanh, relu, tanh"),
    ("pool", "sum", "unknown pool 'sum'; valid: cls, first, max, mean"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be positive"),
    ("type_vocab_size", -1, "type_vocab_size must be >= 0"),
])
def test_bad_option_values_fail_validation_in_one_line(key, value, match):
  with pytest.raises(ValueError) as e:
    config_lib.validate(full_config(**{key: value}))
  assert match in str(e.value) and "\n" not in str(e.value)


def test_bad_option_values_fail_at_build_too():
  with pytest.raises(ValueError, match="valid: post, pre"):
    _build(_cfg(norm_position="middle"))
  with pytest.raises(ValueError, match="valid: gelu, gelu_tanh"):
    _build(_cfg(activation="swish"))
