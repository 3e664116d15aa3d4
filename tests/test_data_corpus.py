"""Tests for the sentence corpus (lightjax.data.corpus) and the "sentences"
task: the standard library's sentences are extracted once per session (a
fixture; about 10-25 s on a busy 2-core CPU) and cached in the session's data
dir, then every property is checked on them; user text is written to
tmp_path. Nothing is downloaded."""

import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

from lightjax import data  # noqa: E402
from lightjax.data import corpus, sentences  # noqa: E402
from lightjax.errors import DataError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT_TOKENIZER = os.path.join(REPO, "tests", "fixtures", "bert_tiny",
                              "tokenizer.json")
# Python 3.11.7's standard library (python.org / pyenv build).
PINNED = {"3.11.7": {
    "counts": {"train": 9899, "validation": 460, "test": 579},
    "sha256": {
        "train":
            "f3332adaf03145c62d22915eee0df263bb42731b5e8ffc28a5e7f53073d07e37",
        "validation":
            "28a98e024f9a998092f8e416707183164ccfa0e06d4ce1c4aca4339b64b332b5",
        "test":
            "49fc3f0ff1b9243e7dc8c6b91c5938baee3b56a19483293cc0fc8769f426a2cf",
    }}}


@pytest.fixture(scope="session")
def stdlib(data_dir):
  """(split -> sentences, manifest, seconds) of the standard library,
  extracted into the session's data dir (later loads hit its cache)."""
  start = time.perf_counter()
  splits, manifest = corpus.load_sentences(corpus.STDLIB, data_dir)
  return splits, manifest, time.perf_counter() - start


def _one_line(e: BaseException) -> str:
  message = str(e)
  assert "\n" not in message, message
  return message


# ----------------------------------------------------------- the stdlib text


def test_stdlib_counts_and_manifest(stdlib, data_dir):
  splits, manifest, seconds = stdlib
  print(f"stdlib extraction: {seconds:.1f} s, {manifest['counts']}")
  counts = {s: len(v) for s, v in splits.items()}
  assert list(splits) == ["train", "validation", "test"]
  assert counts["train"] >= 5000, counts
  assert counts["validation"] >= 256 and counts["test"] >= 256, counts
  assert manifest["counts"] == counts
  assert manifest["python_version"] == platform.python_version()
  assert manifest["rules_version"] == corpus.RULES_VERSION
  assert manifest["files_read"] > 500
  # The manifest beside the cache says the same, and a second load is the
  # cached copy of the same sentences.
  written = [f for f in os.listdir(os.path.join(data_dir, corpus.CACHE_SUBDIR))
             if f.startswith("stdlib-py") and f.endswith(".json")]
  assert len(written) == 1
  with open(os.path.join(data_dir, corpus.CACHE_SUBDIR, written[0])) as f:
    assert json.load(f) == manifest
  again, manifest_again = corpus.load_sentences(corpus.STDLIB, data_dir)
  assert again == splits and manifest_again == manifest


@pytest.mark.skipif(platform.python_version() not in PINNED,
                    reason="the corpus is pinned for Python 3.11.7 only")
def test_stdlib_corpus_pinned_for_this_python(stdlib):
  # The corpus is a function of the Python version's standard library; a
  # change here means the rules changed (bump RULES_VERSION and update these)
  # or the standard library is a patched one.
  pinned = PINNED[platform.python_version()]
  assert stdlib[1]["counts"] == pinned["counts"]
  assert stdlib[1]["sha256"] == pinned["sha256"]


def test_no_sentence_in_two_splits_or_twice_in_one(stdlib):
  splits = stdlib[0]
  for split, texts in splits.items():
    assert len(set(texts)) == len(texts), split
  train, val, test = (set(splits[s]) for s in ("train", "validation", "test"))
  assert not train & val and not train & test and not val & test


def test_rules_hold_on_every_sentence(stdlib):
  for texts in stdlib[0].values():
    for s in texts:
      assert corpus.failed_rule(s) is None, s
      words = s.split()
      assert 6 <= len(words) <= 40, s
      assert re.match(r"[A-Z]", s) and s.endswith(".") and not s.endswith(
          ".."), s
      assert s.isascii() and s == " ".join(words), s
      for token in ("()", "==", "_", "->", "`", ">>>", "/", "::"):
        assert token not in s, s
      assert sum(c.isalpha() for c in s if c != " ") >= 0.8 * len(
          s.replace(" ", "")), s


def test_extraction_is_the_same_in_another_process(stdlib):
  # Every 25th standard-library file, extracted again in a fresh process with
  # another hash seed (set and dict orders must not leak into the result),
  # gives the same sentences as here.
  root = corpus.stdlib_root()
  rels = corpus.stdlib_files(root)[::25]
  code = (
      "import json, os, sys\n"
      "from lightjax.data import corpus\n"
      "root, rels = sys.argv[1], sys.argv[2:]\n"
      "out = {}\n"
      "for rel in rels:\n"
      "  with open(os.path.join(root, rel), encoding='utf-8') as f:\n"
      "    out[rel] = corpus.sentences_of(corpus.python_texts(f.read()))\n"
      "print(json.dumps(out))\n")
  env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": REPO}
  result = subprocess.run([sys.executable, "-c", code, root, *rels],
                          capture_output=True, text=True, env=env, check=True,
                          cwd=REPO)
  theirs = json.loads(result.stdout)
  ours = {}
  for rel in rels:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
      ours[rel] = corpus.sentences_of(corpus.python_texts(f.read()))
  assert theirs == ours
  assert sum(map(len, ours.values())) > 100
  # Each file's sentences are in its own split (or, as duplicates, in an
  # earlier one): splits are drawn by file.
  splits = {s: set(v) for s, v in stdlib[0].items()}
  order = ["train", "validation", "test"]
  for rel, texts in ours.items():
    home = corpus.split_of(rel)
    allowed = set().union(*(splits[s] for s in order[:order.index(home) + 1]))
    assert set(texts) <= allowed, rel


# ------------------------------------------------ text units and sentences


def test_python_texts_docstrings_and_comments():
  source = '''"""Module doc."""
x = "# not a comment"  # An inline comment.
# First line of a block
# and its second line.

# Another block.
class A:
  """Class doc."""
  def f(self):
    """Method doc."""
'''
  assert corpus.python_texts(source) == [
      "Module doc.", "Class doc.", "Method doc.", "An inline comment.",
      "First line of a block\nand its second line.", "Another block."]
  assert corpus.python_texts("def broken(:\n") is None


def test_paragraphs_drop_code_and_markup():
  text = """A prose line that
continues here.

    indented_code = 1
>>> doctest()
Heading
=======
- A list item starts a paragraph.
```
fenced code. Not prose at all.
```
# A Markdown heading
Last paragraph."""
  assert corpus.paragraphs(text) == [
      "A prose line that continues here.", "Heading",
      "- A list item starts a paragraph.", "Last paragraph."]


def test_split_sentences_keeps_abbreviations_and_initials():
  assert corpus.split_sentences(
      "See e.g. the manual for details. It was written in the U.S. by"
      " J. Smith. Is it done? (Yes.) Then stop.") == [
          "See e.g. the manual for details.",
          "It was written in the U.S. by J. Smith.", "Is it done?",
          "(Yes.)", "Then stop."]


@pytest.mark.parametrize("sentence,rule", [
    ("Too short to keep.", "words"),
    ("lower case start is not kept here.", "capital"),
    ("This one ends with a colon and is not kept:", "period"),
    ("Cafe\u0301 sentences are not kept in the corpus here.", "ascii"),
    ("Values 1 2 3 4 5 6 7 8 9 10 11 12 are mostly digits.", "letters"),
    ("Call the my_function helper to do the work here.", "symbols"),
    ("Call the helper with no arguments () to do it.", "code"),
    ("Use os.path to join the parts of a path here.", "code"),
    ("Use getName to read the name of the thread here.", "code"),
    ("XXX This is a hack that we should remove later.", "markers"),
    ("Copyright 2000 by the authors of this module here.", "markers"),
    ("This has (an unbalanced parenthesis in the middle.", "brackets"),
])
def test_each_rule_rejects_its_case(sentence, rule):
  assert corpus.failed_rule(sentence) == rule


def test_assemble_dedupes_and_drops_leaks():
  keys = {}
  for i in range(1000):
    keys.setdefault(corpus.split_of(f"file{i}.py"), f"file{i}.py")
    if len(keys) == 3:
      break
  train, val, test = keys["train"], keys["validation"], keys["test"]
  units = [(test, ["In test and train.", "Only in test.", "In test twice.",
                   "In test twice.", "In validation and test."]),
           (val, ["In validation and test.", "In test and train."]),
           (train, ["In test and train.", "Only in train."])]
  assert corpus.assemble(units) == {
      "train": ["In test and train.", "Only in train."],
      "validation": ["In validation and test."],
      "test": ["Only in test.", "In test twice."]}


# ------------------------------------------------------------- user text


def _lines(n):
  return [f"User sentence number {i} for the corpus." for i in range(n)]


def test_user_text_file_one_sentence_per_line(tmp_path):
  lines = _lines(80)
  path = tmp_path / "my sentences.txt"
  path.write_text("\n".join(lines[:40] + ["", "  short  ", lines[3]]
                            + lines[40:]) + "\n", encoding="utf-8")
  splits, manifest = corpus.load_sentences(str(path), str(tmp_path / "d"))
  kept = lines + ["short"]  # no rules for a user's own lines
  assert sorted(sum(splits.values(), [])) == sorted(kept)
  for split, texts in splits.items():
    assert texts and all(corpus.split_of(t) == split for t in texts)
    assert texts == [t for t in [*lines[:40], "short", *lines[40:]]
                     if corpus.split_of(t) == split]  # in file order
  assert manifest["source"] == str(path) and manifest["files_read"] == 1
  cached = os.listdir(tmp_path / "d" / corpus.CACHE_SUBDIR)
  assert sorted(cached)[0].startswith("my-sentences.txt_")


def _folder_names():
  """One file name per split (found by their hashes)."""
  names = {}
  for i in range(1000):
    names.setdefault(corpus.split_of(f"sub/doc{i}.md"), f"sub/doc{i}.md")
    if len(names) == 3:
      return names
  raise AssertionError("no name for every split")


def test_user_folder_split_by_file(tmp_path):
  root = tmp_path / "texts"
  (root / "sub").mkdir(parents=True)
  names = _folder_names()
  for split, rel in names.items():
    (root / rel).write_text(
        f"# A heading of the {split} file\n\n"
        f"This is the first sentence of the {split} file. It has a second"
        " one as well.\n\n```\nThis is code in a fence. Not text.\n```\n",
        encoding="utf-8")
  (root / ".hidden.txt").write_text("Hidden files are not read at all.")
  (root / "notes.rst").write_text("Other suffixes are not read either.")
  splits, manifest = corpus.load_sentences(str(root), str(tmp_path / "d"))
  for split in names:
    assert splits[split] == [
        f"This is the first sentence of the {split} file.",
        "It has a second one as well."] if split == "train" else [
            f"This is the first sentence of the {split} file."]
  assert manifest["files_read"] == 3


def test_folder_with_too_few_files_is_one_error(tmp_path):
  (tmp_path / "one.txt").write_text(
      "A single file cannot fill all three splits here.")
  with pytest.raises(DataError) as e:
    corpus.load_sentences(str(tmp_path), str(tmp_path / "d"))
  assert str(tmp_path) in _one_line(e.value)
  assert "more files" in str(e.value)


def test_bad_sources_are_one_line_errors(tmp_path):
  with pytest.raises(DataError) as e:
    corpus.load_sentences(str(tmp_path / "nope"), str(tmp_path))
  assert "nope" in _one_line(e.value) and "task.source" in str(e.value)
  bad = tmp_path / "latin1.txt"
  bad.write_bytes("Caf\xe9 au lait is a drink.\n".encode("latin-1"))
  with pytest.raises(DataError) as e:
    corpus.load_sentences(str(bad), str(tmp_path))
  assert "latin1.txt" in _one_line(e.value) and "UTF-8" in str(e.value)
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n")
  with pytest.raises(DataError) as e:
    corpus.load_sentences(str(empty), str(tmp_path))
  assert "empty.txt" in _one_line(e.value) and "more lines" in str(e.value)


# ------------------------------------------------------------- the task


def _task_config(**kw):
  return dict(data.default_task_config("sentences"), **kw)


def test_task_is_registered_and_checks_its_config():
  assert "sentences" in data.names()
  assert set(data.default_task_config("sentences")) == {
      "name", "source", "tokenizer", "max_length", "num_train", "num_eval",
      "seed"}
  data.check_task_config({"name": "sentences"})
  for key, value in (("max_length", 2), ("num_train", -1), ("seed", 1.5),
                     ("source", "")):
    with pytest.raises(ValueError, match=key):
      data.check_task_config({"name": "sentences", key: value})


def test_missing_tokenizer_is_one_clear_error(tmp_path):
  # Refused before any text is read (a stdlib extraction takes seconds).
  with pytest.raises(DataError) as e:
    data.load_task(_task_config(), str(tmp_path))
  assert "task.tokenizer" in _one_line(e.value)
  assert "tokenizer.json" in str(e.value)
  with pytest.raises(DataError) as e:
    data.load_task(_task_config(tokenizer=str(tmp_path / "nope.json")),
                   str(tmp_path))
  assert "nope.json" in _one_line(e.value)
  assert not os.path.exists(tmp_path / corpus.CACHE_SUBDIR)


def _expected_ids(tokenizer_path, texts, max_length, pad_id):
  tok = tokenizers.Tokenizer.from_file(tokenizer_path)
  tok.enable_truncation(max_length)
  ids = np.full((len(texts), max_length), pad_id, np.int32)
  for row, e in enumerate(tok.encode_batch(texts)):
    ids[row, :len(e.ids)] = e.ids
  return ids


def test_task_loads_stdlib_and_pads(stdlib, data_dir):
  config = _task_config(tokenizer=BERT_TOKENIZER, max_length=12,
                        num_train=64, num_eval=16)
  task = data.load_task(config, data_dir)
  assert (task.name, task.kind, task.num_classes, task.max_len) == (
      "sentences", "embedding", 0, 12)
  assert task.pad_id == 0 and task.vocab[0] == "[PAD]"
  texts = sentences.texts(config, data_dir)
  for split, n in (("train", 64), ("validation", 16), ("test", 16)):
    arrays = task.splits[split]
    assert len(texts[split]) == n
    # A seeded subset, kept in corpus order.
    full = stdlib[0][split]
    positions = [full.index(t) for t in texts[split]]
    assert positions == sorted(positions)
    np.testing.assert_array_equal(arrays["inputs"], _expected_ids(
        BERT_TOKENIZER, texts[split], 12, task.pad_id))
    assert arrays["segment_ids"].shape == (n, 12)
    assert not arrays["segment_ids"].any()
    assert arrays["targets"].dtype == np.int32 and not arrays["targets"].any()
  # Long sentences are cut to max_length with [SEP] last; short ones padded.
  inputs = task.splits["train"]["inputs"]
  assert (inputs[:, 0] == 2).all()
  assert (inputs != task.pad_id).sum(axis=1).max() == 12


def _pad_one_tokenizer(path):
  """A tokenizer.json whose pad id is 1, RoBERTa's (written here)."""
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "user": 4,
           "sentence": 5, "number": 6, ".": 7}
  tok = tokenizers.Tokenizer(
      tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.post_processor = tokenizers.processors.TemplateProcessing(
      single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
  tok.save(str(path))
  return str(path)


def test_task_on_a_user_file_pads_with_the_tokenizers_pad_id(tmp_path):
  text = tmp_path / "s.txt"
  text.write_text("\n".join(_lines(60)) + "\n", encoding="utf-8")
  tokenizer = _pad_one_tokenizer(tmp_path / "tokenizer.json")
  config = _task_config(source=str(text), tokenizer=str(tmp_path),
                        max_length=16)
  task = data.load_task(config, str(tmp_path / "d"))
  assert task.pad_id == 1 and task.vocab_size == 8
  texts = sentences.texts(config, str(tmp_path / "d"))
  assert sum(len(v) for v in texts.values()) == 60
  for split, arrays in task.splits.items():
    np.testing.assert_array_equal(
        arrays["inputs"], _expected_ids(tokenizer, texts[split], 16, 1))
    # <s> <unk>(User) sentence number <unk> <unk> <unk> <unk> . </s>, pads.
    assert (arrays["inputs"][:, 10:] == 1).all()
    assert (arrays["inputs"][:, 9] == 2).all()
