"""BERT's masked-LM head (`encoder_mlm`, `from_pretrained(path, head="mlm")`)
against the tiny `BertForMaskedLM` fixture `scripts/make_bert_fixture.py`
wrote, its tied decoder, and the save-back to a Hugging Face directory. No
torch needed; live checks run when torch and transformers are installed."""

import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import config_lib, models
from lightjax import hf
from lightjax.models.mlm import EncoderMLM

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MLM = os.path.join(FIXTURES, "bert_mlm_tiny")
BERT = os.path.join(FIXTURES, "bert_tiny")
DISTIL = os.path.join(FIXTURES, "distilbert_tiny")
TOL = 1e-5


def _expected():
  return dict(np.load(os.path.join(MLM, "expected.npz")))


def _inputs(exp):
  return jnp.asarray(exp["tokens"]), jnp.asarray(exp["segment_ids"])


def _params(model):
  return {"/".join(map(str, p)): np.asarray(v[...])
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _copy(tmp_path, tensors_edit):
  """The MLM fixture copied to tmp_path with its tensors edited."""
  from safetensors.numpy import load_file, save_file
  d = tmp_path / "ckpt"
  shutil.copytree(MLM, d)
  t = load_file(str(d / "model.safetensors"))
  tensors_edit(t)
  save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
  return str(d)


def _max_diff_real(got_BxLx_, want_BxLx_, tokens_BxL):
  """Max abs difference over the non-pad positions."""
  real_BxL = np.asarray(tokens_BxL) != 0
  return float(np.abs(np.asarray(got_BxLx_) - want_BxLx_)[real_BxL].max())


# --- import -----------------------------------------------------------------------


def test_fixture_parity_every_layer_and_mlm_logits():
  model, config = hf.from_pretrained(MLM, head="mlm")
  assert isinstance(model, EncoderMLM)
  assert config.model.name == "encoder_mlm" and config.hf.head == "mlm"
  assert list(config.hf.initialized) == []
  exp = _expected()
  tokens, segs = _inputs(exp)
  assert (exp["tokens"] == 0).any() and (exp["segment_ids"] == 1).any()
  hs = hf.hidden_states(model, tokens, segment_ids_BxL=segs)
  assert len(hs) == exp["hidden_states"].shape[0] == 3
  diffs = [_max_diff_real(h, e, tokens) for h, e in zip(hs, exp["hidden_states"])]
  assert max(diffs) < TOL, diffs
  logits_BxLxV = model(tokens, segment_ids_BxL=segs)
  assert logits_BxLxV.shape == (3, 12, 99) and logits_BxLxV.dtype == jnp.float32
  diff = _max_diff_real(logits_BxLxV, exp["logits"], tokens)
  assert diff < TOL, diff


def test_the_decoder_is_the_token_embedding():
  """Press & Wolf 2017: one V x E parameter, read by the input and the output."""
  model, _ = hf.from_pretrained(MLM, head="mlm")
  params = _params(model)
  assert [k for k, v in params.items() if v.shape == (99, 32)] == [
      "backbone/token_embed/embedding"]
  assert sorted(k for k in params if not k.startswith("backbone/")) == [
      "output_bias", "transform/bias", "transform/kernel", "transform_ln/bias",
      "transform_ln/scale"]
  exp = _expected()
  tokens, segs = _inputs(exp)
  before = np.asarray(model(tokens, segment_ids_BxL=segs))
  # The logits are the transformed hidden states against the table, + bias.
  x = model.encode(tokens, segment_ids_BxL=segs)
  h = model.transform_ln(jax.nn.gelu(model.transform(x), approximate=False))
  table = model.backbone.token_embed.embedding[...]
  manual = np.asarray(h @ table.T) + np.asarray(model.output_bias[...])
  np.testing.assert_allclose(before, manual, atol=TOL)
  # Changing the embedding changes the logits, also through the output alone.
  model.backbone.token_embed.embedding[...] = table.at[5].add(1.0)
  after = np.asarray(model.predict(x))
  changed = np.abs(after - before).max(axis=(0, 1))
  assert changed[5] > 1e-3 and np.all(np.delete(changed, 5) < 1e-6)


def test_default_head_still_the_classifier():
  """Without head="mlm" an MLM checkpoint is an encoder: cls.* ignored, the
  pooler and classifier fresh (today's behaviour)."""
  model, config = hf.from_pretrained(MLM)
  assert config.model.name == "encoder_classifier"
  assert sorted(config.hf.initialized) == [
      "head/bias", "head/kernel", "pooler/bias", "pooler/kernel"]
  exp = _expected()
  tokens, segs = _inputs(exp)
  hs = hf.hidden_states(model, tokens, segment_ids_BxL=segs)
  assert _max_diff_real(hs[-1], exp["hidden_states"][-1], tokens) < TOL


def test_stored_decoder_copies_are_checked_and_skipped(tmp_path):
  """Older checkpoints store cls.predictions.decoder.{weight,bias}; equal
  copies load, a differing one is an error naming both keys and shapes."""
  def add_copies(t):
    t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"]
    t["cls.predictions.decoder.bias"] = t["cls.predictions.bias"]
  model, config = hf.from_pretrained(_copy(tmp_path, add_copies), head="mlm")
  assert list(config.hf.initialized) == []
  ref, _ = hf.from_pretrained(MLM, head="mlm")
  for k, v in _params(ref).items():
    np.testing.assert_array_equal(_params(model)[k], v, err_msg=k)

  def bad_weight(t):
    t["cls.predictions.decoder.weight"] = (
        t["bert.embeddings.word_embeddings.weight"] + 0.5)
  with pytest.raises(hf.CheckpointError,
                     match=r"'cls.predictions.decoder.weight' \(99, 32\) is tied"
                     r" to 'bert.embeddings.word_embeddings.weight' \(99, 32\)"
                     r" \(both are backbone/token_embed/embedding\)"):
    hf.from_pretrained(_copy(tmp_path / "w", bad_weight), head="mlm")

  def bad_bias(t):
    t["cls.predictions.decoder.bias"] = np.zeros(98, np.float32)
  with pytest.raises(hf.CheckpointError,
                     match=r"'cls.predictions.decoder.bias' \(98,\) is tied to"
                     r" 'cls.predictions.bias' \(99,\).*shapes differ"):
    hf.from_pretrained(_copy(tmp_path / "b", bad_bias), head="mlm")


def test_pretraining_checkpoint_loads_its_mlm_head(tmp_path):
  """BertForPreTraining: pooler and next-sentence head ignored."""
  def add_nsp(t):
    t["bert.pooler.dense.weight"] = np.ones((32, 32), np.float32)
    t["bert.pooler.dense.bias"] = np.ones(32, np.float32)
    t["cls.seq_relationship.weight"] = np.ones((2, 32), np.float32)
    t["cls.seq_relationship.bias"] = np.ones(2, np.float32)
  model, config = hf.from_pretrained(_copy(tmp_path, add_nsp), head="mlm")
  assert list(config.hf.initialized) == []
  exp = _expected()
  tokens, segs = _inputs(exp)
  assert _max_diff_real(model(tokens, segment_ids_BxL=segs), exp["logits"],
                        tokens) < TOL


def test_missing_mlm_head_is_named():
  with pytest.raises(hf.CheckpointError,
                     match=r"no weight for output_bias \(99,\)"):
    hf.from_pretrained(BERT, head="mlm")


def test_head_choices_are_checked():
  with pytest.raises(hf.CheckpointError,
                     match=r"head 'mlm' is not supported for model_type"
                     r" 'distilbert'; its heads: classifier"):
    hf.from_pretrained(DISTIL, head="mlm")
  with pytest.raises(hf.CheckpointError, match=r"head 'nsp' is not one of"):
    hf.from_pretrained(MLM, head="nsp")
  with pytest.raises(hf.CheckpointError, match=r"num_labels choose the classifier"):
    hf.from_pretrained(MLM, head="mlm", num_labels=2)


# --- the model on its own ------------------------------------------------------------


def test_registered_and_built_from_a_config():
  """`encoder_mlm` through the registry, pre-LN defaults and ALBERT's
  factorised embedding (the tied output goes back through the projection)."""
  assert "encoder_mlm" in models.names()
  cfg = config_lib.base_config().model
  cfg.name = "encoder_mlm"
  tokens = jnp.array([[5, 6, 7, 0]])
  model = models.build_model(cfg, vocab_size=50, num_classes=2, max_len=8,
                             rngs=nnx.Rngs(0))
  assert model(tokens).shape == (1, 4, 50)
  factored = ml_collections.ConfigDict(cfg.to_dict())
  factored.embed_factor_dim = 8
  model = models.build_model(factored, vocab_size=50, num_classes=2,
                             max_len=8, rngs=nnx.Rngs(0))
  logits = model(tokens)
  x = model.encode(tokens)
  h = model.transform_ln(jax.nn.gelu(model.transform(x), approximate=True))
  h_F = h @ model.backbone.embed_proj.kernel[...].T
  manual = h_F @ model.backbone.token_embed.embedding[...].T
  np.testing.assert_allclose(np.asarray(logits), np.asarray(manual), atol=TOL)


# --- save back ---------------------------------------------------------------------


def test_round_trip_is_identical(tmp_path):
  model, config = hf.from_pretrained(MLM, head="mlm")
  written = hf.save_pretrained(model, config.model, str(tmp_path / "hf"),
                               pad_id=0, tokenizer=MLM,
                               base=hf.read_config(MLM))
  assert written["architectures"] == ["BertForMaskedLM"]
  assert written["tie_word_embeddings"] is True
  assert "id2label" not in written
  keys = set(hf.read_tensors(str(tmp_path / "hf")))
  assert keys == set(hf.read_tensors(MLM))  # what transformers itself wrote
  assert not any(k.startswith("cls.predictions.decoder") for k in keys)
  back, back_config = hf.from_pretrained(str(tmp_path / "hf"), head="mlm")
  assert list(back_config.hf.initialized) == []
  tokens, segs = _inputs(_expected())
  np.testing.assert_array_equal(
      np.asarray(model(tokens, segment_ids_BxL=segs)),
      np.asarray(back(tokens, segment_ids_BxL=segs)))
  for k, v in _params(model).items():
    np.testing.assert_array_equal(v, _params(back)[k], err_msg=k)
  assert sorted(os.listdir(tmp_path / "hf")) == sorted(
      ["config.json", "model.safetensors", "tokenizer.json",
       "tokenizer_config.json", "vocab.txt"])


def test_save_refuses_an_mlm_without_segment_embeddings(tmp_path):
  model, config = hf.from_pretrained(MLM, head="mlm")
  cfg = ml_collections.ConfigDict(config.model.to_dict())
  cfg.type_vocab_size = 0
  with pytest.raises(hf.CheckpointError, match=r"type_vocab_size=0"):
    hf.save_pretrained(model, cfg, str(tmp_path / "hf"))


# --- live, when torch + transformers are installed ------------------------------------


def test_live_auto_model_for_masked_lm_loads_the_saved_directory(tmp_path):
  torch = pytest.importorskip("torch", reason="live check needs torch")
  transformers = pytest.importorskip("transformers",
                                     reason="live check needs transformers")
  model, config = hf.from_pretrained(MLM, head="mlm")
  # Move every parameter off the fixture so the check is of the save itself.
  rng = np.random.default_rng(0)
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    var[...] = var[...] + 0.05 * rng.standard_normal(var.shape).astype(np.float32)
  hf.save_pretrained(model, config.model, str(tmp_path), pad_id=0,
                     tokenizer=MLM)
  ref, info = transformers.AutoModelForMaskedLM.from_pretrained(
      str(tmp_path), output_loading_info=True)
  ref.eval()
  assert type(ref).__name__ == "BertForMaskedLM"
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys",
                                   "mismatched_keys", "error_msgs")), info
  assert ref.cls.predictions.decoder.weight.data_ptr() == (
      ref.bert.embeddings.word_embeddings.weight.data_ptr())
  exp = _expected()
  tokens, segs = _inputs(exp)
  with torch.no_grad():
    want = ref(input_ids=torch.from_numpy(exp["tokens"].astype(np.int64)),
               token_type_ids=torch.from_numpy(exp["segment_ids"].astype(np.int64)),
               attention_mask=torch.from_numpy((exp["tokens"] != 0).astype(np.int64))
               ).logits.numpy()
  diff = _max_diff_real(model(tokens, segment_ids_BxL=segs), want, tokens)
  assert diff < TOL, diff


def test_live_bert_for_pretraining(tmp_path):
  """A BertForPreTraining checkpoint (MLM + NSP heads, pooler) read with
  head="mlm" gives transformers' prediction_logits."""
  torch = pytest.importorskip("torch", reason="live check needs torch")
  transformers = pytest.importorskip("transformers",
                                     reason="live check needs transformers")
  torch.manual_seed(3)
  cfg = transformers.BertConfig.from_pretrained(MLM)
  ref = transformers.BertForPreTraining(cfg).eval()
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.05 * torch.randn(p.shape))
  ref.save_pretrained(str(tmp_path), safe_serialization=True)
  exp = _expected()
  with torch.no_grad():
    want = ref(input_ids=torch.from_numpy(exp["tokens"].astype(np.int64)),
               token_type_ids=torch.from_numpy(exp["segment_ids"].astype(np.int64)),
               attention_mask=torch.from_numpy((exp["tokens"] != 0).astype(np.int64))
               ).prediction_logits.numpy()
  model, config = hf.from_pretrained(str(tmp_path), head="mlm")
  assert list(config.hf.initialized) == []
  tokens, segs = _inputs(exp)
  diff = _max_diff_real(model(tokens, segment_ids_BxL=segs), want, tokens)
  assert diff < TOL, diff
