"""LRA Retrieval end to end, tiny: LRA-format AAN TSVs written here, the
byte tokens and pair layout, the shared-encoder two-tower model (every
attention variant), a few training steps and the CLI's missing-data line."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lightjax import attention, data, models, trainer
from lightjax.data import lra_retrieval
from lightjax.metrics.params import count_params
from lightjax.models.retrieval import DualEncoderClassifier
from lightjax.models.transformer import Backbone
from tests.helpers import REPO, load_config, read_jsonl

SPLIT_FILES = {"train": "new_aan_pairs.train.tsv",
               "validation": "new_aan_pairs.eval.tsv",
               "test": "new_aan_pairs.test.tsv"}


def _text(rng, n):
  """A document as LRA's files hold it: a Python bytes literal, with
  backslash escapes, as raw field bytes (a UTF-8 'é' too)."""
  words = rng.choice(["the", "cite", "paper", "parser", "\\n", "caf\u00e9"], n)
  return ("b'" + " ".join(words) + "'").encode("utf-8")


def _rows(rng, n):
  return [(str(float(i % 2)).encode(), f"P{i:02d}-1".encode(),
           f"W{i:02d}-2".encode(), _text(rng, rng.integers(1, 30)),
           _text(rng, rng.integers(1, 30))) for i in range(n)]


def write_aan_tsvs(folder, sizes=(40, 12, 10), seed=0):
  """new_aan_pairs.{train,eval,test}.tsv in LRA's layout: no header,
  tab-separated, label id1 id2 text1 text2. Returns split -> rows."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  for (split, name), n in zip(SPLIT_FILES.items(), sizes):
    out[split] = _rows(rng, n)
    with open(os.path.join(folder, name), "wb") as f:
      f.write(b"".join(b"\t".join(r) + b"\n" for r in out[split]))
  return out


@pytest.fixture(scope="module")
def aan(tmp_path_factory):
  root = tmp_path_factory.mktemp("aan")
  rows = write_aan_tsvs(root / "tsv")
  return root, rows


def _task(root, **overrides):
  cfg = {"name": "lra_retrieval", "aan_dir": str(root / "tsv"),
         "max_length": 48, **overrides}
  return data.load_task(cfg, str(root / "data"))


def _tokens(text, length):
  ids = [b + 1 for b in text[:length]]
  return ids + [0] * (length - len(ids))


# --- files and tokens ----------------------------------------------------


def test_read_tsv_takes_lra_columns_as_raw_bytes(tmp_path):
  path = tmp_path / "x.tsv"
  path.write_bytes(
      b"1.0\tA1\tB1\tb'first \\n doc'\tb'caf\xc3\xa9'\r\n"
      b"0\tA2\tB2\t\tsecond\n"
      b"1\tonly\tthree\n"  # malformed: skipped, as GLUE's loader does
      b"\n"
      b"0.0\tA3\tB3\tx\ty\n")
  labels, texts1, texts2 = lra_retrieval.read_tsv(str(path))
  assert labels.tolist() == [1, 0, 0] and labels.dtype == np.int32
  assert texts1 == [b"b'first \\n doc'", b"", b"x"]
  assert texts2 == [b"b'caf\xc3\xa9'", b"second", b"y"]


def test_a_label_other_than_0_or_1_names_file_and_line(tmp_path):
  path = tmp_path / "x.tsv"
  path.write_bytes(b"1\ta\tb\tc\td\n2.0\ta\tb\tc\td\n")
  with pytest.raises(ValueError, match=r"x\.tsv:2: label b'2\.0'"):
    lra_retrieval.read_tsv(str(path))


def test_byte_tokens_shift_by_one_and_pad_with_zero():
  ids = lra_retrieval.encode_bytes([b"ab", b"\x00\xff", b"", b"toolong"], 4)
  assert ids.dtype == np.int32
  assert ids.tolist() == [[98, 99, 0, 0], [1, 256, 0, 0], [0, 0, 0, 0],
                          [117, 112, 112, 109]]
  assert ids.max() < lra_retrieval.VOCAB_SIZE == 257
  assert "".join(lra_retrieval.VOCAB[i] for i in ids[3]) == "tool"


def test_pairs_are_two_padded_documents_side_by_side(aan):
  root, rows = aan
  task = _task(root)
  assert (task.name, task.kind, task.num_classes) == ("lra_retrieval",
                                                      "classification", 2)
  assert (task.vocab_size, task.pad_id, task.max_len) == (257, 0, 96)
  assert list(task.splits) == ["train", "validation", "test"]
  for split, split_rows in rows.items():
    inputs = task.splits[split]["inputs"]
    targets = task.splits[split]["targets"]
    assert inputs.shape == (len(split_rows), 96) and inputs.dtype == np.int32
    assert targets.tolist() == [int(float(r[0])) for r in split_rows]
    for row, r in zip(inputs, split_rows):
      assert row[:48].tolist() == _tokens(r[3], 48)
      assert row[48:].tolist() == _tokens(r[4], 48)
  # Some documents are longer than 48 bytes: truncated, not wrapped.
  assert any(len(r[3]) > 48 for r in rows["train"])


def test_seeded_subsets_keep_file_order(aan):
  root, rows = aan
  a = _task(root, num_train=7, num_test=4, seed=3)
  b = _task(root, num_train=7, num_test=4, seed=3)
  assert len(a.splits["train"]["targets"]) == 7
  assert len(a.splits["validation"]["targets"]) == len(rows["validation"])
  np.testing.assert_array_equal(a.splits["train"]["inputs"],
                                b.splits["train"]["inputs"])
  full = _task(root).splits["train"]["inputs"]
  index = [next(i for i, f in enumerate(full) if (f == r).all())
           for r in a.splits["train"]["inputs"]]
  assert index == sorted(index)
  with pytest.raises(ValueError, match="num_train=41 but .* has 40 rows"):
    _task(root, num_train=41)


def test_missing_files_say_where_to_get_them(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    data.load_task({"name": "lra_retrieval"}, str(tmp_path))
  msg = str(e.value)
  folder = os.path.join(str(tmp_path), "lra_release", "tsv_data")
  for name in SPLIT_FILES.values():
    assert os.path.join(folder, name) in msg
  assert "task.aan_dir" in msg
  assert "https://storage.googleapis.com/long-range-arena/lra_release.gz" in msg


# --- model ---------------------------------------------------------------


def _model(attention_name="softmax", pool="cls", doc_len=24, **model):
  c = load_config(f"configs/lra_retrieval.py:{attention_name},tiny")
  c.model.pool = pool
  for k, v in model.items():
    c.model[k] = v
  return models.build_model(c.model, vocab_size=257, num_classes=2,
                            max_len=2 * doc_len, rngs=nnx.Rngs(0)), c


def _pairs(doc_len=24, batch=3, seed=0):
  """[B, 2L] rows of two byte documents of different lengths, padded."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, 257, (batch, 2 * doc_len)).astype(np.int32)
  for i in range(batch):
    tokens[i, rng.integers(1, doc_len):doc_len] = 0
    tokens[i, doc_len + rng.integers(1, doc_len):] = 0
  return jnp.asarray(tokens)


# Jitted: eager NNX calls of even a tiny model take seconds each on CPU.
_encode_pair = nnx.jit(lambda model, tokens: model.encode_pair(tokens))
_encode = nnx.jit(lambda model, tokens: model.encode(tokens))
_logits = nnx.jit(lambda model, tokens: model(tokens))


def _swap(tokens_Bx2L):
  half = tokens_Bx2L.shape[1] // 2
  return jnp.concatenate([tokens_Bx2L[:, half:], tokens_Bx2L[:, :half]], 1)


@pytest.mark.parametrize("pool", ["cls", "mean", "first"])
def test_swapping_documents_swaps_u_and_v(pool):
  model, _ = _model(pool=pool)
  tokens = _pairs()
  u, v = _encode_pair(model, tokens)
  u_swapped, v_swapped = _encode_pair(model, _swap(tokens))
  np.testing.assert_allclose(u_swapped, v, atol=1e-6)
  np.testing.assert_allclose(v_swapped, u, atol=1e-6)
  assert u.shape == (3, 32) and not np.allclose(u, v)
  # One tower alone gives the same vectors: nothing crosses the pair.
  np.testing.assert_allclose(_encode(model, tokens[:, :24]), u, atol=1e-6)
  logits = _logits(model, tokens)
  np.testing.assert_allclose(logits, model.classify(u, v), atol=1e-6)
  assert logits.shape == (3, 2) and logits.dtype == jnp.float32


def test_a_document_is_encoded_without_seeing_its_partner():
  model, _ = _model()
  tokens = _pairs()
  other = tokens.at[:, 24:].set(_pairs(seed=1)[:, 24:])
  u, v = _encode_pair(model, tokens)
  u_other, v_other = _encode_pair(model, other)
  np.testing.assert_allclose(u_other, u, atol=1e-6)
  assert not np.allclose(v_other, v)


def test_towers_share_one_backbone():
  model, c = _model()
  assert isinstance(model, DualEncoderClassifier)
  params = nnx.state(model, nnx.Param)
  assert set(params.keys()) == {"backbone", "cls", "head_hidden",
                                "head_hidden2", "head"}
  # Exactly one encoder's parameters: those of a Backbone built alone
  # (length 24 + the CLS position), plus the CLS vector and the head.
  alone = Backbone(c.model, vocab_size=257, max_len=25, rngs=nnx.Rngs(0),
                   dtype=jnp.float32)
  e, h = c.model.embed_dim, c.model.classifier_hidden_dim
  head = (4 * e * h + h) + (h * (h // 2) + h // 2) + (h // 2 * 2 + 2)
  assert count_params(model)["total"] == (
      count_params(alone)["total"] + e + head)
  # Changing that one encoder changes both towers.
  tokens = _pairs()
  u, v = _encode_pair(model, tokens)
  kernel = model.backbone.blocks[0].mlp.fc1.kernel
  kernel[...] = kernel[...] * 1.5
  u2, v2 = _encode_pair(model, tokens)
  assert not np.allclose(u2, u) and not np.allclose(v2, v)


def test_head_sizes_follow_lra_and_a_linear_head_works():
  model, c = _model()
  assert model.head_hidden.kernel.shape == (4 * 32, 32)
  assert model.head_hidden2.kernel.shape == (32, 16)
  assert model.head.kernel.shape == (16, 2)
  linear, _ = _model(classifier_hidden_dim=0)
  assert linear.head_hidden is None and linear.head.kernel.shape == (128, 2)
  assert _logits(linear, _pairs()).shape == (3, 2)
  with pytest.raises(ValueError, match="classifier_hidden_dim"):
    _model(classifier_hidden_dim=1)
  with pytest.raises(ValueError, match="must be even"):
    models.build_model(c.model, vocab_size=257, num_classes=2, max_len=47,
                       rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", attention.names())
def test_every_attention_variant_runs_in_the_towers(name):
  model, _ = _model(name, doc_len=20)
  tokens = _pairs(doc_len=20)
  u, v = _encode_pair(model, tokens)
  u_swapped, v_swapped = _encode_pair(model, _swap(tokens))
  np.testing.assert_allclose(u_swapped, v, atol=1e-5)
  np.testing.assert_allclose(v_swapped, u, atol=1e-5)
  logits = _logits(model, tokens)
  assert logits.shape == (3, 2) and bool(jnp.isfinite(logits).all())


# --- training ------------------------------------------------------------


def test_tiny_preset_trains_and_reports_params_and_flops(tmp_path, aan):
  root, _ = aan
  c = load_config("configs/lra_retrieval.py:tiny")
  assert c.model.name == "dual_encoder_classifier"
  c.data_dir = str(root / "data")
  c.task.aan_dir = str(root / "tsv")
  summary = trainer.train_and_evaluate(c, str(tmp_path))
  assert summary["task"] == "lra_retrieval"
  assert 0 <= summary["test_accuracy"] <= 1
  assert np.isfinite(summary["test_loss"])
  p = summary["num_params"]
  assert p["total"] == sum(p[k] for k in ("embedding", "attention", "mlp",
                                          "other"))
  assert len(p["per_layer"]) == c.model.num_layers and p["attention"] > 0
  cost = summary["cost"]
  assert cost["train_flops_per_example"] > cost["forward_flops_per_example"] > 0
  recs = read_jsonl(tmp_path / "metrics.jsonl")
  assert {r["split"] for r in recs} >= {"train", "validation", "test"}
  test = [r for r in recs if r["split"] == "test"]
  assert test[0]["examples"] == 10


def test_cli_missing_data_is_one_line_exit_2(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/lra_retrieval.py:tiny", "--workdir", str(tmp_path / "run"),
       f"--config.data_dir={empty}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, r.stderr[-2000:]
  assert len(lines) == 1, r.stderr
  assert lines[0].startswith("lightjax.train: ")
  assert os.path.join(str(empty), "lra_release", "tsv_data",
                      "new_aan_pairs.train.tsv") in lines[0]


@pytest.mark.parametrize("arg", ["", "linear", "lra", "performer,lra", "tiny"])
def test_presets_validate(arg):
  from lightjax import config_lib  # pylint: disable=g-import-not-at-top
  c = load_config("configs/lra_retrieval.py" + (f":{arg}" if arg else ""))
  config_lib.validate(c)
  assert c.model.name == "dual_encoder_classifier"
  assert c.model.attention.name == (arg.split(",")[0] if arg in (
      "linear", "performer,lra") else "softmax")
  if "lra" in arg:  # lra_benchmarks/matching/configs/base_match_config.py
    assert c.task.max_length == 4000 and c.task.num_train == 0
    assert (c.batch_size, c.num_train_steps) == (32, 5000)
    assert (c.optim.learning_rate, c.optim.schedule, c.optim.warmup_steps,
            c.optim.weight_decay) == (0.05, "rsqrt", 8000, 0.1)
    m = c.model
    assert (m.embed_dim, m.num_heads, m.num_heads * m.head_dim, m.mlp_dim,
            m.num_layers, m.classifier_hidden_dim) == (128, 4, 128, 512, 4, 512)
