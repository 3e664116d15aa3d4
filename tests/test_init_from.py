"""Starting runs from checkpoints (`config.init_from`) and saving them back as
Hugging Face directories (`lightjax.save_pretrained`), on the tiny BERT and
DistilBERT fixtures (with their tokenizers) and GLUE TSVs written here. A live
`transformers` check runs when torch and transformers are installed."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

pytest.importorskip("tokenizers")

from lightjax import init_from, models, save_pretrained, trainer  # noqa: E402
from lightjax import hf  # noqa: E402
from tests.helpers import REPO, heads_of, load_config, set_fields, write_glue_tsvs  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
BERT = os.path.join(FIXTURES, "bert_tiny")
DISTIL = os.path.join(FIXTURES, "distilbert_tiny")
TOL = 1e-5


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("glue")
  write_glue_tsvs(str(root / "glue"), 40)
  return root


def _sst2(root, **overrides):
  """configs/glue.py:sst2,tiny on the written TSVs; tokenizer left empty."""
  c = load_config("configs/glue.py:sst2,tiny")
  c.data_dir = str(root / "data")
  c.task.glue_dir = str(root / "glue")
  return set_fields(c, overrides)


def _params(model):
  return {"/".join(map(str, p)): np.asarray(v[...])
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _tokens(exp_dir=BERT):
  exp = np.load(os.path.join(exp_dir, "expected.npz"))
  segs = exp["segment_ids"] if "segment_ids" in exp else None
  return jnp.asarray(exp["tokens"]), None if segs is None else jnp.asarray(segs)


# --- init_from=hf:<dir> -----------------------------------------------------------


def test_glue_fine_tunes_from_the_fixture(tmp_path, glue_dir):
  """Must-show 2: sizes and tokenizer come from the checkpoint; SST-2's two
  classes replace its three-label head; the task metric is reported."""
  c = _sst2(glue_dir, init_from="hf:" + BERT)
  summary = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["test_metrics"]["accuracy"] == summary["test_accuracy"]
  assert 0.0 <= summary["test_accuracy"] <= 1.0
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["model"]["embed_dim"] == 32 and saved["model"]["mlp_dim"] == 37
  assert saved["model"]["num_heads"] == 4 and saved["task"]["tokenizer"] == BERT
  info = init_from.read_model_json(str(tmp_path / "run"))
  assert (info["vocab_size"], info["max_len"], info["num_classes"]) == (99, 64, 2)
  imported, _ = hf.from_pretrained(BERT, num_labels=2)
  assert summary["num_params"]["total"] == sum(
      v.size for v in _params(imported).values())


def test_weights_are_the_checkpoints(tmp_path, glue_dir):
  """With a zero learning rate the run's model is the checkpoint's, bit for
  bit, apart from the fresh two-class head."""
  c = _sst2(glue_dir, init_from="hf:" + BERT, num_train_steps=2,
            **{"optim.learning_rate": 0.0, "optim.weight_decay": 0.0})
  trainer.train_and_evaluate(c, str(tmp_path / "run"))
  model, _ = init_from.load_model(str(tmp_path / "run"))
  ref, _ = hf.from_pretrained(BERT)
  got, want = _params(model), _params(ref)
  assert set(got) == set(want)
  for k in want:
    if not k.startswith("head/"):
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("variant", ["linear", "performer"])
def test_imported_bert_fine_tunes_with_another_variant(tmp_path, glue_dir,
                                                        variant):
  """Must-show 3: the projections are BERT's, the token mixing the variant's."""
  c = load_config(f"configs/glue.py:sst2,{variant},tiny")
  c.data_dir, c.task.glue_dir = str(glue_dir / "data"), str(glue_dir / "glue")
  c.init_from = "hf:" + BERT
  summary = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["attention"] == variant
  assert np.isfinite(summary["test_loss"])
  model, _ = init_from.load_model(str(tmp_path / "run"))
  assert model.backbone.blocks[0].attn.query.kernel.shape == (32, 32)


def test_cli_refuses_a_size_that_contradicts_the_checkpoint(tmp_path, glue_dir):
  env = {**os.environ, "LIGHTJAX_DATA_DIR": str(glue_dir / "data")}
  base = [sys.executable, "-m", "lightjax.train",
          "--config", "configs/glue.py:sst2,tiny", "--workdir",
          str(tmp_path / "run"), f"--config.init_from=hf:{BERT}",
          f"--config.task.glue_dir={glue_dir / 'glue'}"]
  r = subprocess.run(base + ["--config.model.num_layers=3"], cwd=REPO,
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2, r.stderr
  err = r.stderr.strip().splitlines()
  assert len(err) == 1 and "contradicts" in err[0] and "num_layers" in err[0]
  assert "is 2" in err[0]
  assert not (tmp_path / "run").exists()
  # The checkpoint's own value, restated, is fine; so is a run choice.
  r = subprocess.run(base + ["--config.model.num_layers=2",
                             "--config.model.dropout_rate=0.0"],
                     cwd=REPO, env=env, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"Initialised from hf:{BERT}; fresh: head/bias, head/kernel." in r.stdout


def test_errors_name_what_to_do(tmp_path):
  c = load_config("configs/listops.py:tiny")
  c.init_from = BERT  # a Hugging Face directory without the prefix
  with pytest.raises(ValueError, match="write init_from=hf:"):
    init_from.resolve_config(c)
  c.init_from = str(tmp_path)
  with pytest.raises(ValueError, match="without model.json"):
    init_from.resolve_config(c)
  c.init_from = str(tmp_path / "nope")
  with pytest.raises(ValueError, match="neither a lightjax workdir nor hf:"):
    init_from.resolve_config(c)


# --- init_from=<lightjax workdir> ----------------------------------------------------


def test_init_from_a_lightjax_workdir(tmp_path, data_dir):
  first = load_config("configs/listops.py:tiny")
  first.data_dir = data_dir
  first.model.num_layers = 3
  trainer.train_and_evaluate(first, str(tmp_path / "a"))
  c = load_config("configs/listops.py:tiny")  # 2 layers: taken from "a"
  c.data_dir, c.init_from = data_dir, str(tmp_path / "a")
  c.optim.learning_rate, c.optim.weight_decay = 0.0, 0.0
  c.model.dropout_rate = 0.0
  trainer.train_and_evaluate(c, str(tmp_path / "b"))
  assert json.loads((tmp_path / "b" / "config.json").read_text()
                    )["model"]["num_layers"] == 3
  a, _ = init_from.load_model(str(tmp_path / "a"))
  b, _ = init_from.load_model(str(tmp_path / "b"))
  pa, pb = _params(a), _params(b)
  assert set(pa) == set(pb)
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
  # A contradicting explicit size is refused.
  c = load_config("configs/listops.py:tiny")
  c.init_from = str(tmp_path / "a")
  with pytest.raises(ValueError, match="num_layers.*contradicts"):
    init_from.resolve_config(c, explicit=["model.num_layers=2"])


# --- save back ---------------------------------------------------------------------


@pytest.mark.parametrize("fixture", [BERT, DISTIL])
def test_round_trip_is_identical(tmp_path, fixture):
  """Must-show 4 (no torch): lightjax -> HF directory -> lightjax."""
  model, config = hf.from_pretrained(fixture)
  written = hf.save_pretrained(model, config.model, str(tmp_path / "hf"),
                               pad_id=0, tokenizer=fixture,
                               base=hf.read_config(fixture))
  back, _ = hf.from_pretrained(str(tmp_path / "hf"))
  tokens, segs = _tokens(fixture)
  np.testing.assert_array_equal(
      np.asarray(model(tokens, segment_ids_BxL=segs)),
      np.asarray(back(tokens, segment_ids_BxL=segs)))
  for k, v in _params(model).items():
    np.testing.assert_array_equal(v, _params(back)[k], err_msg=k)
  original = hf.read_config(fixture)
  for key in ("vocab_size", "max_position_embeddings", "model_type",
              "id2label", "architectures"):
    assert written[key] == original[key], key
  assert sorted(os.listdir(tmp_path / "hf")) == sorted(
      ["config.json", "model.safetensors", "tokenizer.json",
       "tokenizer_config.json", "vocab.txt"])


def test_save_pretrained_cli_from_a_fine_tuned_run(tmp_path, glue_dir):
  c = _sst2(glue_dir, init_from="hf:" + BERT, num_train_steps=4)
  trainer.train_and_evaluate(c, str(tmp_path / "run"))
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.save_pretrained", "--workdir",
       str(tmp_path / "run"), "--out", str(tmp_path / "hf")],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "BertForSequenceClassification, 2 labels" in r.stdout
  run_model, _ = init_from.load_model(str(tmp_path / "run"))
  back, config = hf.from_pretrained(str(tmp_path / "hf"))
  assert config.hf.num_labels == 2 and list(config.hf.initialized) == []
  tokens, segs = _tokens()
  np.testing.assert_array_equal(
      np.asarray(run_model(tokens, segment_ids_BxL=segs)),
      np.asarray(back(tokens, segment_ids_BxL=segs)))


def test_save_refuses_what_transformers_cannot_run(tmp_path):
  model, config = hf.from_pretrained(BERT, attention="linear")
  with pytest.raises(hf.CheckpointError, match="attention 'linear'"):
    hf.save_pretrained(model, config.model, str(tmp_path / "hf"))
  assert not (tmp_path / "hf").exists()
  with pytest.raises(ValueError, match="without model.json"):
    save_pretrained.export(str(tmp_path), str(tmp_path / "out"))


# --- live, when torch + transformers are installed ------------------------------------


@pytest.mark.parametrize("fixture", [BERT, DISTIL])
def test_live_transformers_loads_the_saved_directory(tmp_path, fixture):
  """Must-show 4: AutoModelForSequenceClassification on the saved directory
  gives lightjax's logits; AutoTokenizer gives lightjax's token ids."""
  torch = pytest.importorskip("torch", reason="live check needs torch")
  transformers = pytest.importorskip("transformers",
                                     reason="live check needs transformers")
  from lightjax.data import tokenize
  model, config = hf.from_pretrained(fixture, num_labels=2, seed=3)
  hf.save_pretrained(model, config.model, str(tmp_path), pad_id=0,
                     tokenizer=fixture)
  ref = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path)).eval()
  tok_hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  tok = tokenize.load_tokenizer(str(tmp_path), True)
  pairs = [("the cat sat on the mat", "a dog ran"), ("good movie .", None),
           ("it was not very great", "bad film story")]
  for a, b in pairs:
    ids, segs = tok.encode([a], [b] if b else None, 16)
    enc = tok_hf(a, b, padding="max_length", max_length=16, truncation=True)
    assert list(ids[0]) == enc["input_ids"], (a, b)
    with torch.no_grad():
      kwargs = {"attention_mask": torch.tensor([enc["attention_mask"]])}
      if "token_type_ids" in enc and config.model.type_vocab_size:
        kwargs["token_type_ids"] = torch.tensor([enc["token_type_ids"]])
        assert list(segs[0]) == enc["token_type_ids"]
      want = ref(input_ids=torch.tensor([enc["input_ids"]]), **kwargs).logits
    got = model(jnp.asarray(ids),
                segment_ids_BxL=jnp.asarray(segs) if config.model.type_vocab_size
                else None)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=TOL)


# --- pruned models to Hugging Face ----------------------------------------------------


def _pruned_fixture(heads=(1, 3), widths=(20, 0)):
  """The BERT fixture with heads and MLP units sliced off (kept: the first
  ones), as the shrink toolkit leaves it: a physically smaller model."""
  import ml_collections
  model, config = hf.from_pretrained(BERT)
  d = config.model.head_dim
  cfg = ml_collections.ConfigDict(config.model.to_dict())
  cfg.heads_per_layer, cfg.mlp_dims_per_layer = heads, widths
  weights = {}
  for path, value in _params(model).items():
    keys = path.split("/")
    if keys[:2] == ["backbone", "blocks"]:
      i, h, w = int(keys[2]), heads[int(keys[2])], widths[int(keys[2])]
      if keys[3] == "attn" and keys[4] in ("query", "key", "value"):
        value = value[..., :h * d]
      elif keys[3:5] == ["attn", "out"] and keys[5] == "kernel":
        value = value[:h * d]
      elif keys[3:5] == ["mlp", "fc1"]:
        value = value[..., :w]
      elif keys[3:5] == ["mlp", "fc2"] and keys[5] == "kernel":
        value = value[:w]
    weights[tuple(int(k) if k.isdigit() else k for k in keys)] = value
  pruned = models.build_model(cfg, vocab_size=99, num_classes=3, max_len=64,
                              rngs=nnx.Rngs(0))
  hf.load_weights(pruned, weights)
  return pruned, cfg


def test_pruned_model_saves_zero_padded_with_identical_outputs(tmp_path):
  """Issue 10 must-show 4: per-layer head counts (and MLP widths) travel to a
  Hugging Face directory at the original size, pruned parts zero."""
  pruned, cfg = _pruned_fixture()
  hf.save_pretrained(pruned, cfg, str(tmp_path), tokenizer=BERT)
  back, config = hf.from_pretrained(str(tmp_path))
  assert (config.model.num_heads, config.model.mlp_dim) == (4, 37)
  tokens, segs = _tokens()
  np.testing.assert_allclose(np.asarray(back(tokens, segment_ids_BxL=segs)),
                             np.asarray(pruned(tokens, segment_ids_BxL=segs)),
                             atol=1e-6)
  q = _params(back)["backbone/blocks/0/attn/query/kernel"]
  assert np.all(q[:, 8:] == 0) and np.any(q[:, :8] != 0)
  torch = pytest.importorskip("torch", reason="live check needs torch")
  transformers = pytest.importorskip("transformers")
  ref = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path)).eval()
  with torch.no_grad():
    want = ref(input_ids=torch.from_numpy(np.asarray(tokens, np.int64)),
               token_type_ids=torch.from_numpy(np.asarray(segs, np.int64)),
               attention_mask=torch.from_numpy(
                   (np.asarray(tokens) != 0).astype(np.int64))).logits
  np.testing.assert_allclose(np.asarray(pruned(tokens, segment_ids_BxL=segs)),
                             want.numpy(), atol=TOL)


@pytest.mark.slow
def test_shrink_an_imported_bert_on_glue_then_save_it_back(tmp_path, glue_dir):
  """docs/shrink.md's BERT chain, small: the imported fixture fine-tuned on
  SST-2 TSVs, then `lightjax.shrink` prunes its heads unevenly and
  fine-tunes, and the shrink workdir saves back to a Hugging Face directory whose model gives the run's
  outputs (zero-padded heads)."""
  tuned = tmp_path / "sst2"  # the teacher: the fixture fine-tuned on SST-2
  trainer.train_and_evaluate(
      _sst2(glue_dir, init_from="hf:" + BERT, num_train_steps=4), str(tuned))
  work = tmp_path / "pruned"
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.shrink", "--config",
       "configs/shrink/prune_heads.py:sst2,tiny", "--workdir", str(work),
       f"--config.init_from={tuned}",
       f"--config.task.glue_dir={glue_dir / 'glue'}",
       f"--config.data_dir={glue_dir / 'data'}",
       "--config.shrink.prune_heads.heads_per_layer=(3, 1)",
       "--config.shrink.prune_heads.iterations=1",
       "--config.shrink.prune_heads.num_examples=16",
       "--config.num_train_steps=3"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((work / "summary.json").read_text())
  assert summary["method"] == "prune_heads"
  assert summary["shrink_details"]["heads_per_layer"] == [3, 1]
  assert summary["num_params"]["total"] < summary["teacher_num_params"]
  assert summary["deploy"]["forward_flops"] < (
      summary["teacher_deploy"]["forward_flops"])
  config = save_pretrained.export(str(work), str(tmp_path / "hf"))
  assert config["num_attention_heads"] == 4
  run_model, source = init_from.load_model(str(work))
  assert heads_of(source.model) == (3, 1)
  back, _ = hf.from_pretrained(str(tmp_path / "hf"))
  tokens, segs = _tokens()
  np.testing.assert_allclose(np.asarray(back(tokens, segment_ids_BxL=segs)),
                             np.asarray(run_model(tokens, segment_ids_BxL=segs)),
                             atol=1e-6)
