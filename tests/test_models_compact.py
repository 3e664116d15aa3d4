"""Compact-model options the shrinking toolkit needs: per-layer head counts and
MLP widths (physical pruning, Michel et al. 2019), head gates (importance
scoring), LayerDrop (Fan et al. 2020), ALBERT's factorised embeddings and
all-shared layers (Lan et al. 2020); defaults unchanged."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import config_lib, models, trainer
from lightjax.metrics.params import count_params
from lightjax import hf
from lightjax.models import generate, transformer
from tests.helpers import full_config, heads_of, load_config, read_jsonl

E, V, C, L, D = 16, 11, 3, 8, 8  # embed, vocab, classes, length, head_dim
NEW_FIELDS = ("layers", "layerdrop", "embed_factor_dim", "share_layers")
X = jax.random.randint(jax.random.key(0), (2, L), 1, V).at[1, 6:].set(0)


def _cfg(name="encoder_classifier", **kw):
  c = config_lib.base_config().model
  c.name = name
  c.embed_dim, c.num_heads, c.head_dim, c.mlp_dim, c.num_layers = E, 2, D, 24, 2
  c.classifier_hidden_dim = 8
  for k, v in kw.items():
    c[k] = v
  return c


def _build(cfg, seed=0, max_len=L):
  return models.build_model(cfg, vocab_size=V, num_classes=C, max_len=max_len,
                            rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def _shapes(model, kind=nnx.Param):
  return {"/".join(map(str, p)): tuple(np.shape(v))
          for p, v in nnx.to_flat_state(nnx.state(model, kind))}


def _params(model):
  """{path: writable numpy copy} of the model's parameters."""
  return {"/".join(map(str, p)): np.array(v)
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _load(model, params):
  """Writes {path: array} into `model`'s parameters (same paths and shapes)."""
  state = nnx.state(model, nnx.Param)
  flat = nnx.to_flat_state(state)
  for path, var in flat:
    key = "/".join(map(str, path))
    assert var.shape == params[key].shape, key
    var.set_value(jnp.asarray(params[key]))
  nnx.update(model, nnx.from_flat_state(flat))


# --- defaults unchanged ------------------------------------------------------


@pytest.mark.parametrize("name", ["encoder_classifier", "decoder_lm"])
def test_defaults_build_the_model_of_a_config_without_the_fields(name):
  cfg = _cfg(name)
  for k in NEW_FIELDS:
    assert cfg[k] == models.ModelConfig().to_dict()[k], k
  # Written before `layers`: per-layer sizes as parallel lists, empty.
  listed = ml_collections.ConfigDict(
      {**{k: v for k, v in cfg.to_dict().items() if k != "layers"},
       "heads_per_layer": (), "mlp_dims_per_layer": (),
       "low_rank_ranks": ()})
  assert _shapes(_build(listed), nnx.Variable) == _shapes(_build(cfg), nnx.Variable)
  old = ml_collections.ConfigDict(
      {k: v for k, v in cfg.to_dict().items() if k not in NEW_FIELDS})
  a, b = _build(cfg), _build(old)
  assert _shapes(a, nnx.Variable) == _shapes(b, nnx.Variable)
  assert not any("embed_proj" in p or "gate" in p for p in _shapes(a, nnx.Variable))
  assert count_params(a) == count_params(b)
  np.testing.assert_array_equal(a(X), b(X))
  np.testing.assert_array_equal(a(X, deterministic=False),
                                b(X, deterministic=False))


# --- per-layer head counts ---------------------------------------------------


def test_heads_per_layer_shapes_count_and_empty_layer():
  model = _build(_cfg(heads_per_layer=(2, 0)))
  full = _build(_cfg())
  a0, a1 = (b.attn for b in model.backbone.blocks)
  for proj in (a0.query, a0.key, a0.value):
    assert proj.kernel.shape == (E, 2 * D)
  for proj in (a1.query, a1.key, a1.value):
    assert proj.kernel.shape == (E, 0) and proj.bias.shape == (0,)
  assert a1.out.kernel.shape == (0, E) and a1.out.bias.shape == (E,)
  n, n_full = count_params(model), count_params(full)
  # Layer 1 lost q/k/v (kernels and biases) and out's kernel, not out's bias.
  lost = 3 * (E * 2 * D + 2 * D) + 2 * D * E
  assert n_full["total"] - n["total"] == lost
  assert n_full["attention"] - n["attention"] == lost
  assert n["per_layer"][0] == n_full["per_layer"][0]
  assert n_full["per_layer"][1] - n["per_layer"][1] == lost
  # The empty sublayer is out's bias, whatever the input.
  a1.out.bias[...] = jnp.arange(E, dtype=jnp.float32)
  h = jax.random.normal(jax.random.key(1), (2, L, E))
  np.testing.assert_array_equal(
      a1(h), jnp.broadcast_to(jnp.arange(E, dtype=jnp.float32), (2, L, E)))
  logits = model(X)
  assert logits.shape == (2, C) and bool(jnp.isfinite(logits).all())
  gd, state = nnx.split(model)
  jitted = jax.jit(lambda s, x: nnx.merge(gd, s)(x))(state, X)
  np.testing.assert_allclose(jitted, logits, atol=1e-5)


def test_empty_layer_decodes_like_the_causal_forward():
  model = _build(_cfg("decoder_lm", heads_per_layer=(0, 2),
                      mlp_dims_per_layer=(24, 0)))
  x = jax.random.randint(jax.random.key(2), (2, L), 1, V)
  full = model(x)
  assert bool(jnp.isfinite(full).all())
  cache = model.init_cache(2, L)
  for i in range(L):
    logits, cache = model.decode_step(x[:, i], cache, i)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-4)
  # generate() walks the blocks' kernels; the empty layer's is the identity.
  out = generate.generate(model, x[:, :3], 2, greedy=True)
  assert out.shape == (2, 5)
  np.testing.assert_array_equal(out[:, :3], x[:, :3])
  np.testing.assert_array_equal(out[:, 3], full[:, 2].argmax(-1))


def _slice_heads(params, layer, keep):
  """Physical head pruning: q/k/v columns and out rows of heads `keep`."""
  cols = np.concatenate([np.arange(h * D, (h + 1) * D) for h in keep])
  pre = f"backbone/blocks/{layer}/attn/"
  out = dict(params)
  for proj in ("query", "key", "value"):
    out[pre + proj + "/kernel"] = params[pre + proj + "/kernel"][:, cols]
    out[pre + proj + "/bias"] = params[pre + proj + "/bias"][cols]
  out[pre + "out/kernel"] = params[pre + "out/kernel"][cols]
  return out


def _gate(model, layer, gates):
  model.backbone.blocks[layer].attn.head_gate = transformer.HeadGate(
      jnp.asarray(gates, jnp.float32))


def test_sliced_heads_equal_the_full_model_with_those_heads_gated_off():
  """The identity physical pruning relies on: removing heads 1 and 3 of layer
  0 (their q/k/v columns and out rows) = gating them to 0."""
  full = _build(_cfg(num_heads=4, heads_per_layer=(4, 4)))
  small = _build(_cfg(num_heads=4, heads_per_layer=(2, 4)), seed=5)
  _load(small, _slice_heads(_params(full), 0, keep=(0, 2)))
  _gate(full, 0, [1.0, 0.0, 1.0, 0.0])
  np.testing.assert_allclose(small(X), full(X), atol=1e-5)
  assert count_params(full)["total"] - count_params(small)["total"] == (
      3 * (E * 2 * D + 2 * D) + 2 * D * E)


def _slice_mlp(params, layer, keep):
  """Structured FFN pruning: fc1 columns and fc2 rows of units `keep`."""
  keep = np.asarray(keep, int)
  pre = f"backbone/blocks/{layer}/mlp/"
  out = dict(params)
  out[pre + "fc1/kernel"] = params[pre + "fc1/kernel"][:, keep]
  out[pre + "fc1/bias"] = params[pre + "fc1/bias"][keep]
  out[pre + "fc2/kernel"] = params[pre + "fc2/kernel"][keep]
  return out


def test_sliced_mlp_units_equal_zeroed_fc2_rows_down_to_width_zero():
  full = _build(_cfg())
  small = _build(_cfg(mlp_dims_per_layer=(10, 0)), seed=5)
  keep0 = np.arange(0, 24, 2)[:10]
  params = _slice_mlp(_slice_mlp(_params(full), 0, keep0), 1, [])
  _load(small, params)
  # gelu(0) = 0 would need zeroed fc1 biases too; zeroing fc2 rows is exact.
  masked = _params(full)
  drop0 = np.setdiff1d(np.arange(24), keep0)
  masked["backbone/blocks/0/mlp/fc2/kernel"][drop0] = 0.0
  masked["backbone/blocks/1/mlp/fc2/kernel"][:] = 0.0
  _load(full, masked)
  np.testing.assert_allclose(small(X), full(X), atol=1e-5)
  assert small.backbone.blocks[1].mlp.fc1.kernel.shape == (E, 0)
  n = count_params(small)
  assert n["mlp"] == (E * 10 + 10 + 10 * E + E) + (0 + E)


# --- head gates ----------------------------------------------------------------


def test_head_gates_ones_unchanged_zero_removes_out_rows_and_gradients():
  model = _build(_cfg(num_heads=3, heads_per_layer=(3, 2)))
  before = model(X)
  n_before = count_params(model)["total"]
  for i, h in enumerate((3, 2)):
    _gate(model, i, np.ones(h))
  np.testing.assert_allclose(model(X), before, atol=1e-6)
  assert count_params(model)["total"] == n_before  # gates are not parameters

  def loss(m, x):
    return jnp.sum(m(x) ** 2)

  grads = nnx.grad(loss, argnums=nnx.DiffState(0, transformer.HeadGate))(
      model, X)
  g = {p: np.asarray(v) for p, v in nnx.to_flat_state(grads)}
  g0 = g[("backbone", "blocks", 0, "attn", "head_gate")]
  g1 = g[("backbone", "blocks", 1, "attn", "head_gate")]
  assert g0.shape == (3,) and g1.shape == (2,) and len(g) == 2
  assert np.isfinite(g0).all() and np.abs(g0).sum() > 0
  # Importance |dL/dxi_h| = |<dL/d(head h's out contribution), ...>|: a
  # finite difference on the gate agrees.
  eps = 1e-2
  _gate(model, 0, [1.0, 1.0 + eps, 1.0])
  fd = (float(loss(model, X)) - float(jnp.sum(before ** 2))) / eps
  np.testing.assert_allclose(fd, g0[1], rtol=0.05, atol=1e-4)

  # Gate 0 on head 1 = head 1's rows of out's kernel zeroed.
  _gate(model, 0, [1.0, 0.0, 1.0])
  gated = model(X)
  model.backbone.blocks[0].attn.head_gate = None
  out = model.backbone.blocks[0].attn.out
  out.kernel[...] = out.kernel[...].at[D:2 * D].set(0.0)
  np.testing.assert_allclose(model(X), gated, atol=1e-6)


def test_head_gates_apply_in_decoding():
  model = _build(_cfg("decoder_lm"))
  _gate(model, 1, [0.3, 0.0])
  x = jax.random.randint(jax.random.key(3), (2, L), 1, V)
  full = model(x)
  cache = model.init_cache(2, L)
  for i in range(L):
    logits, cache = model.decode_step(x[:, i], cache, i)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-4)


# --- LayerDrop -------------------------------------------------------------------


def test_layerdrop_zero_is_no_layerdrop_and_deterministic_ignores_it():
  base, zero = _build(_cfg()), _build(_cfg(layerdrop=0.0))
  np.testing.assert_array_equal(zero(X, deterministic=False),
                                base(X, deterministic=False))
  half = _build(_cfg(layerdrop=0.5))
  assert _params(half).keys() == _params(base).keys()
  for k, v in _params(base).items():  # same seed, same weights
    np.testing.assert_array_equal(_params(half)[k], v)
  for _ in range(3):
    np.testing.assert_array_equal(half(X), base(X))


def test_layerdrop_one_in_training_skips_every_block():
  model = _build(_cfg("decoder_lm", layerdrop=1.0, dropout_rate=0.0))
  bb = model.backbone
  want = bb.token_logits(bb.final_norm(bb.embed_norm(bb.embed(X))))
  np.testing.assert_allclose(model(X, deterministic=False), want, atol=1e-6)
  assert not np.allclose(model(X), want, atol=1e-3)


def test_layerdrop_under_jit_runs_a_random_subset_of_blocks_via_cond():
  cfg = _cfg("decoder_lm", layerdrop=0.5, dropout_rate=0.0, num_layers=2)
  model = _build(cfg)
  bb = model.backbone
  x0 = bb.embed_norm(bb.embed(X))
  mask = X != 0
  subsets = {}
  for keep in ((0, 0), (0, 1), (1, 0), (1, 1)):
    h = x0
    for k, blk in zip(keep, bb.blocks):
      if k:
        h = blk(h, mask_BxL=mask, causal=True)
    subsets[keep] = np.asarray(bb.token_logits(bb.final_norm(h)))

  @nnx.jit
  def train_forward(m, x):
    return m(x, deterministic=False)

  gd, state = nnx.split(model)
  jaxpr = jax.make_jaxpr(
      lambda s: nnx.merge(gd, s)(X, deterministic=False))(state)
  assert str(jaxpr).count("cond[") >= 2  # one skip per block, not a select
  seen = set()
  for _ in range(16):
    out = np.asarray(train_forward(model, X))
    match = [k for k, v in subsets.items() if np.allclose(out, v, atol=1e-5)]
    assert len(match) == 1, "output is not any subset of the blocks"
    seen.add(match[0])
  assert len(seen) >= 3  # p = 0.5: 16 draws show several of the 4 subsets


# --- factorised embeddings -------------------------------------------------------


def test_factorised_embeddings_count_and_tied_decoder_logits():
  f = 4
  plain = _build(_cfg("decoder_lm"))
  fact = _build(_cfg("decoder_lm", embed_factor_dim=f))
  bb = fact.backbone
  assert bb.token_embed.embedding.shape == (V, f)
  assert bb.embed_proj.kernel.shape == (f, E) and bb.embed_proj.bias is None
  n0, n1 = count_params(plain), count_params(fact)
  pos = L * E
  assert n0["embedding"] == V * E + pos
  assert n1["embedding"] == V * f + f * E + pos
  assert n0["total"] - n1["total"] == V * E - (V * f + f * E)
  x = jax.random.randint(jax.random.key(4), (2, L), 1, V)
  logits = fact(x)
  assert logits.shape == (2, L, V) and bool(jnp.isfinite(logits).all())
  # Tied output through the projection: (h @ W_proj^T) @ table^T.
  h = bb.run_blocks(bb.embed(x), mask_BxL=x != 0, causal=True,
                    deterministic=True)
  want = (h @ bb.embed_proj.kernel[...].T) @ bb.token_embed.embedding[...].T
  np.testing.assert_allclose(logits, want, atol=1e-5)
  cache = fact.init_cache(2, L)
  for i in range(L):
    step, cache = fact.decode_step(x[:, i], cache, i)
    np.testing.assert_allclose(step, logits[:, i], atol=1e-4)


def test_factorised_embeddings_in_the_classifier():
  model = _build(_cfg(embed_factor_dim=4, pool="first"))
  out = model(X)
  assert out.shape == (2, C) and bool(jnp.isfinite(out).all())
  n = count_params(model)
  assert n["embedding"] == V * 4 + 4 * E + L * E


# --- shared layers ---------------------------------------------------------------


def test_shared_layers_count_once_and_equal_repeated_copies():
  shared = _build(_cfg(num_layers=3, share_layers=True))
  one = _build(_cfg(num_layers=1))
  blocks = list(shared.backbone.blocks)
  assert len(blocks) == 3 and all(b is blocks[0] for b in blocks)
  ns, n1 = count_params(shared), count_params(one)
  assert ns["per_layer"] == n1["per_layer"]  # one block, counted once
  assert ns["total"] == n1["total"]
  assert all(p.startswith("backbone/blocks/0/") or "blocks" not in p
             for p in _params(shared))
  gd, state = nnx.split(shared)
  merged = nnx.merge(gd, state)
  assert all(b is merged.backbone.blocks[0] for b in merged.backbone.blocks)

  # Same as an unshared 3-layer model whose blocks are copies of the one.
  copies = _build(_cfg(num_layers=3), seed=7)
  p = _params(shared)
  params = {k: v for k, v in p.items() if "blocks" not in k}
  for i in range(3):
    params.update({k.replace("blocks/0/", f"blocks/{i}/"): v
                   for k, v in p.items() if "blocks/0/" in k})
  _load(copies, params)
  np.testing.assert_allclose(shared(X), copies(X), atol=1e-5)

  # The shared block's gradient is the sum over its three uses.
  def loss(m):
    return jnp.sum(m(X) ** 2)

  gs = _params_of(nnx.grad(loss)(shared))
  gc = _params_of(nnx.grad(loss)(copies))
  key = "backbone/blocks/{}/mlp/fc1/kernel"
  np.testing.assert_allclose(
      gs[key.format(0)], sum(gc[key.format(i)] for i in range(3)),
      rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gs["head/kernel"], gc["head/kernel"], atol=1e-6)


def _params_of(state):
  return {"/".join(map(str, p)): np.asarray(v)
          for p, v in nnx.to_flat_state(state)}


def test_shared_layers_hidden_states_and_decoding_run_every_layer():
  model = _build(_cfg(num_layers=3, share_layers=True, pool="first"))
  states = hf.hidden_states(model, X)
  assert len(states) == 4
  assert not np.allclose(states[1], states[2])
  dec = _build(_cfg("decoder_lm", num_layers=3, share_layers=True))
  x = jax.random.randint(jax.random.key(5), (2, L), 1, V)
  full = dec(x)
  cache = dec.init_cache(2, L)
  assert len(cache) == 3
  for i in range(L):
    logits, cache = dec.decode_step(x[:, i], cache, i)
    np.testing.assert_allclose(logits, full[:, i], atol=1e-4)


def test_shared_layers_train_and_resume(tmp_path, data_dir):
  """ALBERT-style model through the real loop: train, then resume further."""
  def config(steps):
    c = load_config("configs/listops.py:tiny")
    c.data_dir = data_dir
    c.num_train_steps, c.log_every = steps, 2
    c.eval_every = c.checkpoint_every = 4
    c.model.num_layers = 3
    c.model.share_layers = True
    c.model.embed_factor_dim = 8
    c.model.layerdrop = 0.2
    return c

  first = trainer.train_and_evaluate(config(4), str(tmp_path))
  one_block = first["num_params"]["per_layer"]
  assert len(one_block) == 1
  again = trainer.train_and_evaluate(config(8), str(tmp_path))
  recs = read_jsonl(tmp_path / "metrics.jsonl")
  train = [r["step"] for r in recs if r["split"] == "train"]
  assert train == [2, 4, 6, 8]  # resumed at 4, not restarted
  assert all(np.isfinite(r["loss"]) for r in recs if "loss" in r)
  assert again["num_params"] == first["num_params"]


def test_empty_layers_checkpoint_resume_and_reload(tmp_path, data_dir):
  """A layer pruned to 0 heads and another to 0 MLP units trains, resumes
  and reloads (orbax refuses zero-size arrays; checkpointing leaves them
  out and puts them back)."""
  from lightjax import init_from  # pylint: disable=import-outside-toplevel
  def config(steps):
    c = load_config("configs/listops.py:tiny")
    c.data_dir = data_dir
    c.num_train_steps, c.log_every = steps, 2
    c.eval_every = c.checkpoint_every = 4
    c.model.heads_per_layer = (0, 2)
    c.model.mlp_dims_per_layer = (64, 0)
    return c

  trainer.train_and_evaluate(config(4), str(tmp_path))
  trainer.train_and_evaluate(config(8), str(tmp_path))
  train = [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")
           if r["split"] == "train"]
  assert train == [2, 4, 6, 8]  # resumed at 4, not restarted
  model, source = init_from.load_model(str(tmp_path))
  assert heads_of(source.model) == (0, 2)
  assert model.backbone.blocks[0].attn.query.kernel[...].shape == (32, 0)


# --- validation --------------------------------------------------------------------


def test_compact_options_pass_validation():
  config_lib.validate(full_config(
      heads_per_layer=(4, 0), mlp_dims_per_layer=(0, 256), layerdrop=0.2,
      embed_factor_dim=32))
  config_lib.validate(full_config(share_layers=True, heads_per_layer=(2, 2)))


@pytest.mark.parametrize("kw,match", [
    (dict(heads_per_layer=(4, 4, 4)),
     "config.model.heads_per_layer has 3 entries, num_layers is 2"),
    (dict(mlp_dims_per_layer=(8,)),
     "config.model.mlp_dims_per_layer has 1 entries, num_layers is 2"),
    (dict(heads_per_layer=(4, -1)), "heads_per_layer entries must be integers >= 0"),
    (dict(layerdrop=1.0), "layerdrop must be in [0, 1)"),
    (dict(layerdrop=-0.1), "layerdrop must be in [0, 1)"),
    (dict(embed_factor_dim=-2), "embed_factor_dim must be an integer >= 0"),
    (dict(share_layers=True, heads_per_layer=(4, 2)),
     "share_layers uses one block in every layer"),
])
def test_bad_compact_options_fail_validation_in_one_line(kw, match):
  with pytest.raises(ValueError) as e:
    config_lib.validate(full_config(**kw))
  assert match in str(e.value) and "\n" not in str(e.value)


def test_bad_per_layer_sizes_fail_at_build_too():
  with pytest.raises(ValueError, match="has 3 entries, num_layers is 2"):
    _build(_cfg(heads_per_layer=(2, 2, 2)))
