"""Hugging Face BERT / DistilBERT / RoBERTa import
(`lightjax.hf.from_pretrained`) against the fixtures
`scripts/make_bert_fixture.py` wrote with transformers. No torch needed;
a live comparison runs when torch and transformers are installed."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import config_lib, models
from lightjax import hf
from tests.helpers import write_shards

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "bert_tiny")
DISTIL = os.path.join(os.path.dirname(__file__), "fixtures", "distilbert_tiny")
TOL = 1e-5


def _expected(fixture=FIXTURE):
  return dict(np.load(os.path.join(fixture, "expected.npz")))


def _copy(tmp_path, config_edit=None, tensors_edit=None):
  """The fixture copied to tmp_path, its config.json / tensors edited."""
  from safetensors.numpy import load_file, save_file
  d = tmp_path / "ckpt"
  shutil.copytree(FIXTURE, d)
  if config_edit:
    cfg = json.loads((d / "config.json").read_text())
    config_edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
  if tensors_edit:
    t = load_file(str(d / "model.safetensors"))
    tensors_edit(t)
    save_file(t, str(d / "model.safetensors"))
  return str(d)


def _compare(model, exp):
  """Max abs differences: every hidden state (all positions) and the logits."""
  tokens = jnp.asarray(exp["tokens"])
  segs = jnp.asarray(exp["segment_ids"]) if "segment_ids" in exp else None
  hs = hf.hidden_states(model, tokens, segment_ids_BxL=segs)
  assert len(hs) == exp["hidden_states"].shape[0]
  diffs = [float(np.abs(np.asarray(h) - e).max())
           for h, e in zip(hs, exp["hidden_states"])]
  logits = model(tokens, segment_ids_BxL=segs)
  return diffs, float(np.abs(np.asarray(logits) - exp["logits"]).max())


def test_fixture_parity_every_layer_and_logits():
  model, config = hf.from_pretrained(FIXTURE)
  exp = _expected()
  assert (exp["tokens"] == 0).any() and (exp["segment_ids"] == 1).any()
  diffs, logit_diff = _compare(model, exp)
  assert max(diffs) < TOL, diffs
  assert logit_diff < TOL, logit_diff
  assert list(config.hf.initialized) == []


def test_config_from_the_checkpoint():
  _, config = hf.from_pretrained(FIXTURE)
  m = config.model
  assert (m.name, m.pool, m.norm_position, m.activation) == (
      "encoder_classifier", "first", "post", "gelu")
  assert (m.embed_dim, m.num_heads, m.head_dim, m.mlp_dim, m.num_layers) == (
      32, 4, 8, 37, 2)
  assert m.layer_norm_eps == 1e-12 and m.type_vocab_size == 2
  assert m.pooler and m.classifier_hidden_dim == 0
  assert m.attention.name == "softmax"
  assert (config.hf.vocab_size, config.hf.num_labels, config.hf.max_len,
          config.hf.pad_token_id) == (99, 3, 64, 0)
  # The model section is a checked ModelConfig, and a run config takes it.
  assert models.check(config.model).to_dict() == config.model.to_dict()
  run = config_lib.base_config()
  run.model = config.model
  run.task = config_lib.ml_collections.ConfigDict({"name": "listops"})
  config_lib.validate(run)


def test_padding_does_not_change_real_positions():
  model, _ = hf.from_pretrained(FIXTURE)
  exp = _expected()
  row, segs = exp["tokens"][:1], exp["segment_ids"][:1]
  n = int((row != 0).sum())
  short = model(jnp.asarray(row[:, :n]), segment_ids_BxL=jnp.asarray(segs[:, :n]))
  np.testing.assert_allclose(np.asarray(short), exp["logits"][:1], atol=TOL)


@pytest.mark.parametrize("variant", ["linear"])
def test_runs_with_another_attention_variant(variant):
  soft, _ = hf.from_pretrained(FIXTURE)
  model, config = hf.from_pretrained(FIXTURE, attention=variant)
  assert config.model.attention.name == variant
  q0 = soft.backbone.blocks[0].attn.query.kernel[...]
  np.testing.assert_array_equal(
      np.asarray(model.backbone.blocks[0].attn.query.kernel[...]), np.asarray(q0))
  exp = _expected()
  logits = model(jnp.asarray(exp["tokens"]),
                 segment_ids_BxL=jnp.asarray(exp["segment_ids"]))
  assert logits.shape == (3, 3) and bool(jnp.isfinite(logits).all())
  # Same weights through `build` with a swapped attention config.
  weights = hf.convert_weights(hf.read_config(FIXTURE), hf.read_tensors(FIXTURE))
  _, config = hf.from_pretrained(FIXTURE)
  config.model.attention = config_lib.attention_config(variant)
  again = hf.build(config, weights)
  np.testing.assert_allclose(
      np.asarray(again(jnp.asarray(exp["tokens"]),
                       segment_ids_BxL=jnp.asarray(exp["segment_ids"]))),
      np.asarray(logits), atol=TOL)


def test_distilbert_every_layer_and_its_relu_head():
  """DistilBERT's blocks and its pre_classifier + ReLU + classifier head."""
  model, config = hf.from_pretrained(DISTIL)
  m = config.model
  assert (m.type_vocab_size, m.pooler, m.classifier_hidden_dim,
          m.classifier_activation) == (0, False, 32, "relu")
  assert list(config.hf.initialized) == []
  exp = _expected(DISTIL)
  assert (exp["tokens"] == 0).any()
  diffs, logit_diff = _compare(model, exp)
  assert max(diffs) < TOL, diffs
  assert logit_diff < TOL, logit_diff
  _, config = hf.from_pretrained(DISTIL, drop_head=True)
  assert sorted(config.hf.initialized) == [
      "head/bias", "head/kernel", "head_hidden/bias", "head_hidden/kernel"]


def test_num_labels_other_than_the_checkpoint_drops_its_head():
  model, config = hf.from_pretrained(FIXTURE, num_labels=2)
  assert config.hf.num_labels == 2
  assert sorted(config.hf.initialized) == ["head/bias", "head/kernel"]
  exp = _expected()
  assert model(jnp.asarray(exp["tokens"])).shape == (3, 2)
  ref, _ = hf.from_pretrained(FIXTURE)
  np.testing.assert_array_equal(np.asarray(model.pooler.kernel[...]),
                                np.asarray(ref.pooler.kernel[...]))


# --- checkpoint variants ---------------------------------------------------------


def test_pretraining_checkpoint_names_and_missing_head(tmp_path):
  """Old gamma/beta names, cls.* pretraining heads, no classifier: head is fresh."""
  def edit(t):
    for k in [k for k in t if k.endswith("LayerNorm.weight")]:
      t[k[:-len("weight")] + "gamma"] = t.pop(k)
    for k in [k for k in t if k.endswith("LayerNorm.bias")]:
      t[k[:-len("bias")] + "beta"] = t.pop(k)
    del t["classifier.weight"], t["classifier.bias"]
    t["cls.predictions.bias"] = np.zeros(99, np.float32)
  d = _copy(tmp_path, tensors_edit=edit)
  model, config = hf.from_pretrained(d)
  assert sorted(config.hf.initialized) == ["head/bias", "head/kernel"]
  exp = _expected()
  hs = hf.hidden_states(model, jnp.asarray(exp["tokens"]),
                        segment_ids_BxL=jnp.asarray(exp["segment_ids"]))
  assert float(np.abs(np.asarray(hs[-1]) - exp["hidden_states"][-1]).max()) < TOL


def test_unknown_model_type_lists_supported(tmp_path):
  d = _copy(tmp_path, config_edit=lambda c: c.update(model_type="gpt2"))
  with pytest.raises(hf.CheckpointError,
                     match=r"'gpt2'.*supported: bert, distilbert"):
    hf.from_pretrained(d)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
  d = _copy(tmp_path, config_edit=lambda c: c.update(intermediate_size=40))
  with pytest.raises(hf.CheckpointError,
                     match=r"backbone/blocks/0/mlp/fc1/bias: checkpoint tensor"
                     r" 'bert.encoder.layer.0.intermediate.dense.bias' as \(37,\),"
                     r" lightjax model \(40,\)"):
    hf.from_pretrained(d)


def test_unmapped_tensor_is_named(tmp_path):
  d = _copy(tmp_path, tensors_edit=lambda t: t.update(
      {"bert.encoder.layer.0.extra.weight": np.zeros((2, 2), np.float32)}))
  with pytest.raises(hf.CheckpointError,
                     match=r"'bert.encoder.layer.0.extra.weight' \(2, 2\)"):
    hf.from_pretrained(d)


def test_missing_tensor_is_named(tmp_path):
  d = _copy(tmp_path, tensors_edit=lambda t: t.pop(
      "bert.encoder.layer.1.output.dense.weight"))
  with pytest.raises(hf.CheckpointError,
                     match=r"no weight for backbone/blocks/1/mlp/fc2/kernel \(37, 32\)"):
    hf.from_pretrained(d)


def test_pickle_only_checkpoint_says_how_to_convert(tmp_path):
  d = tmp_path / "pt"
  d.mkdir()
  shutil.copy(os.path.join(FIXTURE, "config.json"), d)
  (d / "pytorch_model.bin").write_bytes(b"not read")
  with pytest.raises(hf.CheckpointError,
                     match=r"pytorch_model.bin.*safe_serialization=True"):
    hf.from_pretrained(str(d))


def test_sharded_checkpoint(tmp_path):
  d = tmp_path / "sharded"
  weight_map = write_shards(FIXTURE, d, ("model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors"))
  (d / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": weight_map}))
  model, _ = hf.from_pretrained(str(d))
  _, logit_diff = _compare(model, _expected())
  assert logit_diff < TOL


def test_missing_directory_is_clear():
  with pytest.raises(hf.CheckpointError, match="not a checkpoint directory"):
    hf.from_pretrained("./no/such/dir")


# --- live, when torch + transformers are installed ---------------------------------


def test_live_against_transformers(tmp_path):
  torch = pytest.importorskip("torch", reason="live comparison needs torch")
  transformers = pytest.importorskip(
      "transformers", reason="live comparison needs transformers")
  from scripts_make_bert_fixture import BERT_CONFIG, SEGMENTS, TOKENS
  torch.manual_seed(7)
  cfg = dict(BERT_CONFIG, num_hidden_layers=3, type_vocab_size=3)
  ref = transformers.BertForSequenceClassification(
      transformers.BertConfig(**cfg)).eval()
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.05 * torch.randn(p.shape))
  ref.save_pretrained(str(tmp_path), safe_serialization=True)
  segs = np.minimum(SEGMENTS * 2, 2)
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(TOKENS),
              token_type_ids=torch.from_numpy(segs),
              attention_mask=torch.from_numpy((TOKENS != 0).astype(np.int64)),
              output_hidden_states=True)
  exp = {"tokens": TOKENS.astype(np.int32), "segment_ids": segs.astype(np.int32),
         "hidden_states": np.stack([h.numpy() for h in out.hidden_states]),
         "logits": out.logits.numpy()}
  model, _ = hf.from_pretrained(str(tmp_path))
  diffs, logit_diff = _compare(model, exp)
  assert max(diffs) < TOL and logit_diff < TOL, (diffs, logit_diff)


def test_live_distilbert_against_transformers(tmp_path):
  torch = pytest.importorskip("torch", reason="live comparison needs torch")
  transformers = pytest.importorskip(
      "transformers", reason="live comparison needs transformers")
  from scripts_make_bert_fixture import DISTILBERT_CONFIG, TOKENS
  torch.manual_seed(8)
  ref = transformers.DistilBertModel(
      transformers.DistilBertConfig(**dict(DISTILBERT_CONFIG, n_layers=3))).eval()
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.05 * torch.randn(p.shape))
  ref.save_pretrained(str(tmp_path), safe_serialization=True)
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(TOKENS),
              attention_mask=torch.from_numpy((TOKENS != 0).astype(np.int64)),
              output_hidden_states=True)
  model, config = hf.from_pretrained(str(tmp_path))
  assert "head/kernel" in config.hf.initialized
  hs = hf.hidden_states(model, jnp.asarray(TOKENS.astype(np.int32)))
  diffs = [float(np.abs(np.asarray(h) - e.numpy()).max())
           for h, e in zip(hs, out.hidden_states)]
  assert len(diffs) == 4 and max(diffs) < TOL, diffs


# --- RoBERTa ------------------------------------------------------------------------


ROBERTA = os.path.join(os.path.dirname(__file__), "fixtures", "roberta_tiny")


def _roberta_diffs(model, exp, pad_id=1):
  """Max abs differences at the non-pad positions (RoBERTa's pads read a
  position row lightjax drops) of every hidden state, and of the logits."""
  tokens = jnp.asarray(exp["tokens"])
  real_BxL = exp["tokens"] != pad_id
  hs = hf.hidden_states(model, tokens, pad_id=pad_id)
  assert len(hs) == exp["hidden_states"].shape[0]
  diffs = [float(np.abs(np.asarray(h) - e)[real_BxL].max())
           for h, e in zip(hs, exp["hidden_states"])]
  logits = model(tokens, pad_id=pad_id)
  return diffs, float(np.abs(np.asarray(logits) - exp["logits"]).max())


def test_roberta_every_layer_and_its_tanh_head():
  """RoBERTa (Liu et al. 2019): positions from pad + 1, dense + tanh head."""
  model, config = hf.from_pretrained(ROBERTA)
  m = config.model
  assert (m.type_vocab_size, m.pooler, m.classifier_hidden_dim,
          m.classifier_activation, m.layer_norm_eps) == (1, False, 32, "tanh",
                                                         1e-5)
  assert (config.hf.pad_token_id, config.hf.max_len) == (1, 64)
  assert model.backbone.pos_embed.table.shape == (64, 32)
  assert list(config.hf.initialized) == []
  exp = _expected(ROBERTA)
  assert (exp["tokens"] == 1).any()
  diffs, logit_diff = _roberta_diffs(model, exp)
  assert max(diffs) < TOL, diffs
  assert logit_diff < TOL, logit_diff
  _, config = hf.from_pretrained(ROBERTA, drop_head=True)
  assert sorted(config.hf.initialized) == [
      "head/bias", "head/kernel", "head_hidden/bias", "head_hidden/kernel"]


def test_roberta_round_trip_is_identical(tmp_path):
  from safetensors.numpy import load_file
  model, config = hf.from_pretrained(ROBERTA)
  written = hf.save_pretrained(model, config.model, str(tmp_path / "hf"),
                               base=hf.read_config(ROBERTA))
  original = hf.read_config(ROBERTA)
  for key in ("vocab_size", "max_position_embeddings", "model_type",
              "pad_token_id", "type_vocab_size", "architectures", "id2label"):
    assert written[key] == original[key], key
  saved = load_file(str(tmp_path / "hf" / "model.safetensors"))
  assert set(saved) == set(load_file(os.path.join(ROBERTA, "model.safetensors")))
  table = saved["roberta.embeddings.position_embeddings.weight"]
  assert table.shape == (66, 32) and not table[:2].any()
  back, _ = hf.from_pretrained(str(tmp_path / "hf"))
  tokens = jnp.asarray(_expected(ROBERTA)["tokens"])
  np.testing.assert_array_equal(np.asarray(model(tokens, pad_id=1)),
                                np.asarray(back(tokens, pad_id=1)))
  flat = lambda m: {p: np.asarray(v[...]) for p, v in
                    nnx.to_flat_state(nnx.state(m, nnx.Param))}
  for k, v in flat(model).items():
    np.testing.assert_array_equal(v, flat(back)[k], err_msg=str(k))


def test_roberta_position_table_too_short(tmp_path):
  d = tmp_path / "r"
  shutil.copytree(ROBERTA, d)
  from safetensors.numpy import load_file, save_file
  t = load_file(str(d / "model.safetensors"))
  t["roberta.embeddings.position_embeddings.weight"] = np.zeros((2, 32), np.float32)
  save_file(t, str(d / "model.safetensors"))
  with pytest.raises(hf.CheckpointError,
                     match=r"'roberta.embeddings.position_embeddings.weight'"
                     r" \(2, 32\) needs more than the 2 leading rows"):
    hf.from_pretrained(str(d))


def test_live_roberta_against_transformers(tmp_path):
  """A fresh RobertaForSequenceClassification read by lightjax, then saved
  back and read by AutoModelForSequenceClassification: same logits."""
  torch = pytest.importorskip("torch", reason="live comparison needs torch")
  transformers = pytest.importorskip(
      "transformers", reason="live comparison needs transformers")
  from scripts_make_bert_fixture import ROBERTA_CONFIG, ROBERTA_TOKENS
  torch.manual_seed(9)
  ref = transformers.RobertaForSequenceClassification(
      transformers.RobertaConfig(**dict(ROBERTA_CONFIG, num_hidden_layers=3))
  ).eval()
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.05 * torch.randn(p.shape))
  ref.save_pretrained(str(tmp_path / "ref"), safe_serialization=True)
  mask = torch.from_numpy((ROBERTA_TOKENS != 1).astype(np.int64))
  with torch.no_grad():
    out = ref(input_ids=torch.from_numpy(ROBERTA_TOKENS), attention_mask=mask,
              output_hidden_states=True)
  exp = {"tokens": ROBERTA_TOKENS.astype(np.int32),
         "hidden_states": np.stack([h.numpy() for h in out.hidden_states]),
         "logits": out.logits.numpy()}
  model, config = hf.from_pretrained(str(tmp_path / "ref"))
  diffs, logit_diff = _roberta_diffs(model, exp)
  assert max(diffs) < TOL and logit_diff < TOL, (diffs, logit_diff)
  hf.save_pretrained(model, config.model, str(tmp_path / "back"),
                     pad_id=config.hf.pad_token_id)
  again, info = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path / "back"), output_loading_info=True)
  assert type(again).__name__ == "RobertaForSequenceClassification"
  assert not any(info[k] for k in ("missing_keys", "unexpected_keys",
                                   "mismatched_keys", "error_msgs")), info
  with torch.no_grad():
    want = again.eval()(input_ids=torch.from_numpy(ROBERTA_TOKENS),
                        attention_mask=mask).logits.numpy()
  np.testing.assert_allclose(want, exp["logits"], atol=TOL)


@pytest.fixture(autouse=True)
def _fixture_script_importable(monkeypatch):
  """`scripts/make_bert_fixture.py` importable as `scripts_make_bert_fixture`."""
  import importlib.util
  import sys
  path = os.path.join(os.path.dirname(__file__), "..", "scripts",
                      "make_bert_fixture.py")
  spec = importlib.util.spec_from_file_location("scripts_make_bert_fixture", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  monkeypatch.setitem(sys.modules, "scripts_make_bert_fixture", mod)
