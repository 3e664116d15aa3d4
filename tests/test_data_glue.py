"""Tests for the GLUE tasks: TSV layouts, BERT-style pair encoding, splits,
cache and the missing-file message. Tiny GLUE-format files and a tiny
WordPiece vocab are written to tmp_path; nothing is downloaded."""

import os

import ml_collections
import numpy as np
import pytest

pytest.importorskip("tokenizers")

from lightjax import data  # noqa: E402
from lightjax.data import arrays, glue  # noqa: E402
from lightjax.data import tokenize  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat",
         "a", "dog", "ran", "is", "good", "bad", "movie", "what", "?", "."]
ID = {t: i for i, t in enumerate(VOCAB)}
CLS, SEP, PAD = ID["[CLS]"], ID["[SEP]"], ID["[PAD]"]

# The real column layouts (headers as in the GLUE distribution), a few rows.
FILES = {
    "CoLA": {  # Headerless: source, label, original mark, sentence.
        "train.tsv": [
            ["gj04", "1", "", "The cat sat."],
            ["gj04", "0", "*", "Cat the sat."],
            ["gj04", "1", "", "The dog ran."],
            ["gj04", "0", "*", "Ran dog the."],
        ],
        "dev.tsv": [["gj04", "1", "", "A dog sat."],
                    ["gj04", "0", "*", "Sat a."]],
    },
    "SST-2": {
        "train.tsv": [["sentence", "label"], ["a good movie", "1"],
                      ["a bad movie", "0"], ["the movie is good", "1"],
                      ["bad", "0"]],
        "dev.tsv": [["sentence", "label"], ["good movie", "1"],
                    ["bad movie .", "0"]],
    },
    "MRPC": {
        "train.tsv": [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                      ["1", "11", "12", "The cat sat.", "A cat sat."],
                      ["0", "13", "14", "The dog ran.", "The cat sat."],
                      ["1", "15", "16", "A dog ran.", "The dog ran."],
                      ["0", "17", "18", "Good.", "Bad."]],
        "dev.tsv": [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                    ["1", "21", "22", "The dog sat.", "A dog sat."]],
    },
    "QQP": {
        "train.tsv": [["id", "qid1", "qid2", "question1", "question2",
                       "is_duplicate"],
                      ["0", "1", "2", "what is a cat ?", "what is the cat ?",
                       "1"],
                      ["1", "3", "4", "what is good ?", "what is bad ?", "0"],
                      ["2", "5", "6", "a broken row"],  # Skipped, as in QQP.
                      ["3", "7", "8", "what ran ?", "what sat ?", "0"],
                      ["4", "9", "10", "the dog ?", "a dog ?", "1"]],
        "dev.tsv": [["id", "qid1", "qid2", "question1", "question2",
                     "is_duplicate"],
                    ["5", "11", "12", "what is a dog ?", "a dog is what ?",
                     "1"]],
    },
    "STS-B": {
        "train.tsv": [["index", "genre", "filename", "year", "old_index",
                       "source1", "source2", "sentence1", "sentence2",
                       "score"],
                      ["0", "main-captions", "MSRvid", "2012test", "0001",
                       "none", "none", "A cat sat.", "The cat sat.", "5.000"],
                      ["1", "main-captions", "MSRvid", "2012test", "0002",
                       "none", "none", "A dog ran.", "A cat sat.", "0.500"],
                      ["2", "main-news", "MSRvid", "2012test", "0003",
                       "none", "none", "Good.", "Bad.", "1.250"]],
        "dev.tsv": [["index", "genre", "filename", "year", "old_index",
                     "source1", "source2", "sentence1", "sentence2", "score"],
                    ["0", "main-captions", "MSRvid", "2012test", "0000",
                     "none", "none", "The dog ran.", "A dog ran.", "4.750"]],
    },
    "QNLI": {
        "train.tsv": [["index", "question", "sentence", "label"],
                      ["0", "what sat ?", "The cat sat.", "entailment"],
                      ["1", "what ran ?", "The cat sat.", "not_entailment"],
                      ["2", "what is good ?", "A movie.", "not_entailment"]],
        "dev.tsv": [["index", "question", "sentence", "label"],
                    ["0", "what ran ?", "A dog ran.", "entailment"]],
    },
    "RTE": {
        "train.tsv": [["index", "sentence1", "sentence2", "label"],
                      ["0", "The cat sat.", "A cat sat.", "entailment"],
                      ["1", "The cat sat.", "The dog ran.", "not_entailment"],
                      ["2", "A good movie.", "A movie.", "entailment"]],
        "dev.tsv": [["index", "sentence1", "sentence2", "label"],
                    ["0", "The dog ran.", "The dog sat.", "not_entailment"]],
    },
}
_MNLI_HEADER = ["index", "promptID", "pairID", "genre",
                "sentence1_binary_parse", "sentence2_binary_parse",
                "sentence1_parse", "sentence2_parse", "sentence1",
                "sentence2", "label1", "gold_label"]


def _mnli_row(i, a, b, label):
  return [str(i), "1", f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)",
          "(ROOT y)", a, b, label, label]


FILES["MNLI"] = {
    "train.tsv": [_MNLI_HEADER,
                  _mnli_row(0, "The cat sat.", "A cat sat.", "entailment"),
                  _mnli_row(1, "The cat sat.", "The dog ran.", "neutral"),
                  _mnli_row(2, "Good movie.", "Bad movie.", "contradiction"),
                  _mnli_row(3, "A dog ran.", "A dog sat.", "contradiction")],
    "dev_matched.tsv": [_MNLI_HEADER,
                        _mnli_row(4, "The dog.", "A dog.", "entailment")],
    "dev_mismatched.tsv": [_MNLI_HEADER,
                           _mnli_row(5, "Cat.", "Dog.", "contradiction"),
                           _mnli_row(6, "Cat sat.", "Cat.", "neutral")],
}
# Unlabelled test files, as distributed (never read).
for _folder in FILES:
  FILES[_folder]["test.tsv"] = [["index", "sentence"], ["0", "the cat"]]

EXPECTED = {  # task -> (folder, train labels in file order, test labels)
    "glue_cola": ("CoLA", [1, 0, 1, 0], [1, 0]),
    "glue_sst2": ("SST-2", [1, 0, 1, 0], [1, 0]),
    "glue_mrpc": ("MRPC", [1, 0, 1, 0], [1]),
    "glue_qqp": ("QQP", [1, 0, 0, 1], [1]),
    "glue_stsb": ("STS-B", [5.0, 0.5, 1.25], [4.75]),
    "glue_mnli": ("MNLI", [1, 2, 0, 0], [1]),
    "glue_qnli": ("QNLI", [0, 1, 1], [0]),
    "glue_rte": ("RTE", [0, 1, 0], [1]),
}
PAIR_TASKS = {"glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli", "glue_qnli",
              "glue_rte"}


@pytest.fixture()
def glue_dir(tmp_path):
  root = tmp_path / "glue"
  for folder, tables in FILES.items():
    os.makedirs(root / folder)
    for name, rows in tables.items():
      (root / folder / name).write_text(
          "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
  return tmp_path


def config(name, tmp, **kw):
  c = dict(data.default_task_config(name), tokenizer=str(tmp / "vocab.txt"),
           validation_fraction=0.0)
  c.update(kw)
  return c


def test_every_glue_task_is_registered():
  assert set(EXPECTED) == set(glue.NAMES)
  for name in EXPECTED:
    assert name in data.names()
    assert set(data.default_task_config(name)) == {
        "name", "glue_dir", "tokenizer", "max_length", "lowercase",
        "validation_fraction", "seed"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_every_task(glue_dir, name):
  folder, train_labels, test_labels = EXPECTED[name]
  task = data.load_task(config(name, glue_dir, max_length=16), str(glue_dir))
  assert task.name == name and task.max_len == 16
  assert task.vocab == tuple(VOCAB) and task.vocab_size == len(VOCAB)
  assert task.pad_id == PAD
  expected_splits = ["train", "validation", "test"]
  if name == "glue_mnli":
    expected_splits.append("test_mismatched")
  assert list(task.splits) == expected_splits
  for split in task.splits.values():
    n = len(split["targets"])
    assert split["inputs"].shape == split["segment_ids"].shape == (n, 16)
    assert split["inputs"].dtype == split["segment_ids"].dtype == np.int32
    assert (split["inputs"][:, 0] == CLS).all()
  if name == "glue_stsb":
    assert task.kind == "regression" and task.num_classes == 1
    assert task.splits["train"]["targets"].dtype == np.float32
    np.testing.assert_allclose(task.splits["train"]["targets"], train_labels)
  else:
    assert task.kind == "classification"
    assert task.num_classes == (3 if name == "glue_mnli" else 2)
    assert task.splits["train"]["targets"].dtype == np.int32
    assert task.splits["train"]["targets"].tolist() == train_labels
  np.testing.assert_allclose(task.splits["test"]["targets"], test_labels)
  # validation_fraction=0: validation is dev too.
  np.testing.assert_array_equal(task.splits["validation"]["inputs"],
                                task.splits["test"]["inputs"])
  if name == "glue_mnli":
    assert task.splits["test_mismatched"]["targets"].tolist() == [0, 2]
  # Segment ids: 0 up to and including the first [SEP]; for pairs 1 after it
  # through the second [SEP]; 0 on padding.
  for ids, seg in zip(task.splits["train"]["inputs"],
                      task.splits["train"]["segment_ids"]):
    seps = np.flatnonzero(ids == SEP)
    real = int((ids != PAD).sum())
    assert (ids[real:] == PAD).all() and (seg[real:] == 0).all()
    assert (seg[:seps[0] + 1] == 0).all()
    if name in PAIR_TASKS:
      assert len(seps) == 2 and seps[1] == real - 1
      assert (seg[seps[0] + 1:real] == 1).all()
    else:
      assert len(seps) == 1 and seps[0] == real - 1
      assert (seg == 0).all()


def test_pair_encoding_is_bert_style(glue_dir):
  task = data.load_task(config("glue_rte", glue_dir, max_length=12),
                        str(glue_dir))
  # "The cat sat." / "A cat sat." lowercased by the uncased vocab.
  want = [CLS, ID["the"], ID["cat"], ID["sat"], ID["."], SEP,
          ID["a"], ID["cat"], ID["sat"], ID["."], SEP, PAD]
  assert task.splits["train"]["inputs"][0].tolist() == want
  assert task.splits["train"]["segment_ids"][0].tolist() == (
      [0] * 6 + [1] * 5 + [0])


def test_truncation_is_longest_first(glue_dir):
  tok = tokenize.load_tokenizer(str(glue_dir / "vocab.txt"))
  ids, seg = tok.encode(["the cat sat the dog ran"], ["a dog"], 8)
  # 8 - 3 special tokens = 5 text tokens: the longer part loses tokens first.
  assert ids[0].tolist() == [CLS, ID["the"], ID["cat"], ID["sat"], SEP,
                             ID["a"], ID["dog"], SEP]
  assert seg[0].tolist() == [0] * 5 + [1] * 3
  ids, _ = tok.encode(["the cat sat the dog ran"], None, 4)
  assert ids[0].tolist() == [CLS, ID["the"], ID["cat"], SEP]
  with pytest.raises(ValueError, match="special tokens"):
    tok.encode(["a"], ["b"], 3)


def test_lowercase_false_keeps_case(glue_dir):
  tok = tokenize.load_tokenizer(str(glue_dir / "vocab.txt"), lowercase=False)
  ids, _ = tok.encode(["The cat"], None, 5)
  assert ids[0].tolist() == [CLS, ID["[UNK]"], ID["cat"], SEP, PAD]


def test_tokenizer_json_and_directory(glue_dir):
  """A checkpoint's tokenizer.json (or its directory) gives the same ids."""
  tokenizers = pytest.importorskip("tokenizers")
  bert = tokenizers.BertWordPieceTokenizer(str(glue_dir / "vocab.txt"),
                                           lowercase=True)
  checkpoint = glue_dir / "checkpoint"
  os.makedirs(checkpoint)
  bert.save(str(checkpoint / "tokenizer.json"))
  assert tokenize.resolve_tokenizer_file(str(checkpoint)).endswith(
      "tokenizer.json")
  by_vocab = data.load_task(config("glue_mrpc", glue_dir, max_length=10),
                            str(glue_dir))
  by_json = data.load_task(
      config("glue_mrpc", glue_dir, max_length=10,
             tokenizer=str(checkpoint)), str(glue_dir))
  for split in by_vocab.splits:
    for k in ("inputs", "segment_ids"):
      np.testing.assert_array_equal(by_vocab.splits[split][k],
                                    by_json.splits[split][k])


def test_validation_is_a_seeded_holdout_of_train(glue_dir):
  full = data.load_task(config("glue_sst2", glue_dir), str(glue_dir))
  task = data.load_task(config("glue_sst2", glue_dir,
                               validation_fraction=0.5, seed=3),
                        str(glue_dir))
  held = arrays.holdout_rows(4, 0.5, 3)
  assert held.sum() == 2
  train = full.splits["train"]
  for k in ("inputs", "segment_ids", "targets"):
    np.testing.assert_array_equal(task.splits["validation"][k], train[k][held])
    np.testing.assert_array_equal(task.splits["train"][k], train[k][~held])
    np.testing.assert_array_equal(task.splits["test"][k],
                                  full.splits["test"][k])
  again = data.load_task(ml_collections.ConfigDict(config(
      "glue_sst2", glue_dir, validation_fraction=0.5, seed=3)), str(glue_dir))
  np.testing.assert_array_equal(again.splits["validation"]["inputs"],
                                task.splits["validation"]["inputs"])
  # Any fraction > 0 holds out at least one row.
  assert arrays.holdout_rows(4, 0.01, 0).sum() == 1
  assert arrays.holdout_rows(4, 0.0, 0).sum() == 0


def test_cache_is_written_once_and_keyed_by_config(glue_dir):
  cache = glue_dir / glue.CACHE_SUBDIR
  data.load_task(config("glue_rte", glue_dir, max_length=12), str(glue_dir))
  (first,) = os.listdir(cache)
  mtime = os.stat(cache / first).st_mtime_ns
  data.load_task(config("glue_rte", glue_dir, max_length=12), str(glue_dir))
  assert os.listdir(cache) == [first]
  assert os.stat(cache / first).st_mtime_ns == mtime  # Reused, not rewritten.
  data.load_task(config("glue_rte", glue_dir, max_length=14), str(glue_dir))
  data.load_task(config("glue_rte", glue_dir, max_length=12, lowercase=False),
                 str(glue_dir))
  assert len(os.listdir(cache)) == 3
  assert not [f for f in os.listdir(cache) if f.startswith(".tmp")]


def test_changed_file_is_re_encoded(glue_dir):
  task = data.load_task(config("glue_sst2", glue_dir), str(glue_dir))
  path = glue_dir / "glue" / "SST-2" / "dev.tsv"
  path.write_text("sentence\tlabel\ngood\t1\nbad\t0\nthe cat\t1\n")
  os.utime(path, ns=(1, 1))
  again = data.load_task(config("glue_sst2", glue_dir), str(glue_dir))
  assert len(task.splits["test"]["targets"]) == 2
  assert again.splits["test"]["targets"].tolist() == [1, 0, 1]


def test_missing_files_message(tmp_path, glue_dir):
  with pytest.raises(FileNotFoundError) as e:
    data.load_task(config("glue_cola", glue_dir), str(tmp_path / "nowhere"))
  message = str(e.value)
  assert "glue_cola" in message
  assert str(tmp_path / "nowhere" / "glue" / "CoLA") in message
  assert "gluebenchmark.com" in message and "nyu-mll/glue" in message
  os.remove(glue_dir / "glue" / "MNLI" / "dev_mismatched.tsv")
  with pytest.raises(FileNotFoundError, match="dev_mismatched.tsv"):
    data.load_task(config("glue_mnli", glue_dir), str(glue_dir))


def test_glue_dir_field_and_bad_values(glue_dir, tmp_path_factory):
  elsewhere = str(tmp_path_factory.mktemp("cache"))
  task = data.load_task(
      config("glue_rte", glue_dir, glue_dir=str(glue_dir / "glue")), elsewhere)
  assert len(task.splits["train"]["targets"]) == 3
  assert os.listdir(os.path.join(elsewhere, glue.CACHE_SUBDIR))
  with pytest.raises(ValueError, match="unknown option"):
    data.load_task(dict(config("glue_rte", glue_dir), max_len=3),
                   str(glue_dir))
  with pytest.raises(ValueError, match="validation_fraction"):
    data.load_task(config("glue_rte", glue_dir, validation_fraction=1.0),
                   str(glue_dir))
  with pytest.raises(FileNotFoundError, match="tokenizer"):
    data.load_task(config("glue_rte", glue_dir,
                          tokenizer=str(glue_dir / "none.txt")),
                   str(glue_dir))


def test_unknown_label_is_an_error(glue_dir):
  path = glue_dir / "glue" / "RTE" / "dev.tsv"
  path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
  with pytest.raises(ValueError, match="maybe"):
    data.load_task(config("glue_rte", glue_dir), str(glue_dir))


def test_quotes_are_text_not_quoting(glue_dir):
  path = glue_dir / "glue" / "SST-2" / "dev.tsv"
  path.write_text('sentence\tlabel\n"the cat\t1\ngood "movie" .\t0\n')
  task = data.load_task(config("glue_sst2", glue_dir), str(glue_dir))
  assert task.splits["test"]["targets"].tolist() == [1, 0]


def test_byte_order_mark_is_ignored(glue_dir):
  path = glue_dir / "glue" / "MRPC" / "dev.tsv"
  text = path.read_text(encoding="utf-8")
  path.write_text("\ufeff" + text, encoding="utf-8")
  task = data.load_task(config("glue_mrpc", glue_dir), str(glue_dir))
  assert task.splits["test"]["targets"].tolist() == [1]
