"""GLUE (Wang et al. 2019), read from the official TSV files.

Eight tasks, each registered as its own task (`task.name=glue_sst2`, ...):

  name        folder  inputs                        labels
  glue_cola   CoLA    one sentence (no header)      0/1 acceptable
  glue_sst2   SST-2   one sentence                  0/1 positive
  glue_mrpc   MRPC    sentence pair                 0/1 paraphrase
  glue_qqp    QQP     question pair                 0/1 duplicate
  glue_stsb   STS-B   sentence pair                 float similarity 0..5
  glue_mnli   MNLI    premise, hypothesis           contradiction/entailment/
                                                    neutral = 0/1/2
  glue_qnli   QNLI    question, sentence            entailment/not = 0/1
  glue_rte    RTE     sentence pair                 entailment/not = 0/1

The files are those of the GLUE benchmark's distribution (gluebenchmark.com;
`download_glue_data.py` writes `<dir>/<folder>/{train,dev,test}.tsv`, MNLI
`dev_matched.tsv` and `dev_mismatched.tsv`): tab-separated, no quoting (the
texts contain `"`), one header row except CoLA's train/dev (4 columns:
source, label, original mark, sentence). Columns are found by header name;
rows with too few columns (QQP's train file has a few broken lines) are
skipped with a warning. Label strings map to ids as in Hugging Face's
`glue` processors, so a fine-tuned checkpoint's label order is kept.

Splits. GLUE's test labels are hidden (scored only by the benchmark's
server), so the labelled data are train and dev, and dev is where papers
report their numbers. Here:

  * "test" is dev.tsv (MNLI: dev_matched.tsv; dev_mismatched.tsv is the
    extra split "test_mismatched"), so `test` is the number papers report;
  * "validation", the split the trainer selects checkpoints on, is a fixed,
    seeded `validation_fraction` of train.tsv held out (and removed from
    "train"), so picking the best checkpoint does not look at the numbers
    reported. `validation_fraction=0` instead makes "validation" dev as well:
    the usual fine-tuning practice (BERT's dev results), optimistic by the
    selection, but it keeps all of train for the small tasks (RTE 2.5k,
    MRPC 3.7k examples).

The hold-out is `np.random.default_rng(seed).permutation` of train's rows:
the first `max(1, round(fraction * N))` rows of it, kept in file order.

Arrays. Each split holds "inputs" int32[N, max_length] (token ids, padded
with the tokenizer's pad id), "segment_ids" int32[N, max_length] (0 for
`[CLS] a [SEP]` and padding, 1 for `b [SEP]`) and "targets" (int32[N]
labels; float32[N] scores for STS-B, a regression task: `kind="regression"`,
`num_classes=1`). Encoding is `lightjax.data.tokenize`: BERT-style pairs,
longest-first truncation to `max_length`.

Cache: `<data_dir>/glue_cache/<name>_L<max_length>_<hash>.npz`, the hash
covering the config, the tokenizer file's bytes and every TSV's size and
modification time, so a changed file or tokenizer is re-encoded, not reused.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
from typing import Any

from absl import logging
import numpy as np

from lightjax.data import cache, tokenize
from lightjax.data.arrays import check_hold_out, holdout_rows
from lightjax.data.base import DataError, TaskData, register, resolve_task_config

# Bump when the arrays produced for a given config change.
ENCODING_VERSION = 1

GLUE_SUBDIR = "glue"
CACHE_SUBDIR = "glue_cache"
WHERE_TO_GET = (
    "get GLUE from https://gluebenchmark.com/tasks (the"
    " download_glue_data.py script writes these folders) or from the"
    " `nyu-mll/glue` dataset on the Hugging Face hub, written out as the"
    " original TSV files")


@dataclasses.dataclass(frozen=True)
class GlueSpec:
  """Where one GLUE task's fields are in its TSV files.

  Attributes:
    name: registered task name.
    folder: the task's folder in the GLUE distribution.
    text_a / text_b: column names (int indices for headerless files) of the
      first and second text; text_b None for single-sentence tasks.
    label: the label column.
    labels: label strings in id order; () for regression (float scores).
    header: whether train/dev have a header row.
    eval_files: split -> file name of the labelled evaluation splits.
  """

  name: str
  folder: str
  text_a: str | int
  text_b: str | int | None
  label: str | int
  labels: tuple[str, ...]
  header: bool = True
  eval_files: tuple[tuple[str, str], ...] = (("test", "dev.tsv"),)

  @property
  def regression(self) -> bool:
    return not self.labels

  @property
  def num_classes(self) -> int:
    return 1 if self.regression else len(self.labels)


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")

SPECS = {
    s.name: s for s in (
        GlueSpec("glue_cola", "CoLA", 3, None, 1, _BINARY, header=False),
        GlueSpec("glue_sst2", "SST-2", "sentence", None, "label", _BINARY),
        GlueSpec("glue_mrpc", "MRPC", "#1 String", "#2 String", "Quality",
                 _BINARY),
        GlueSpec("glue_qqp", "QQP", "question1", "question2", "is_duplicate",
                 _BINARY),
        GlueSpec("glue_stsb", "STS-B", "sentence1", "sentence2", "score", ()),
        GlueSpec("glue_mnli", "MNLI", "sentence1", "sentence2", "gold_label",
                 ("contradiction", "entailment", "neutral"),
                 eval_files=(("test", "dev_matched.tsv"),
                             ("test_mismatched", "dev_mismatched.tsv"))),
        GlueSpec("glue_qnli", "QNLI", "question", "sentence", "label",
                 _ENTAILMENT),
        GlueSpec("glue_rte", "RTE", "sentence1", "sentence2", "label",
                 _ENTAILMENT),
    )
}
NAMES = tuple(SPECS)


def default_config_for(name: str) -> dict[str, Any]:
  """Task config fields of GLUE task `name`."""
  return dict(
      name=name,
      # Folder holding the task folders (CoLA/, SST-2/, ...); "" means
      # `<data_dir>/glue`.
      glue_dir="",
      # vocab.txt, tokenizer.json, or a checkpoint directory with either.
      tokenizer="",
      # Tokens per example including [CLS]/[SEP] (BERT fine-tuned at 128).
      max_length=128,
      # For vocab.txt (uncased checkpoints); tokenizer.json decides itself.
      lowercase=True,
      # Part of train.tsv held out as "validation"; 0: validation = dev.
      validation_fraction=0.1,
      # Seed of the hold-out.
      seed=0,
  )


# ----------------------------------------------------------------- TSV files


class GlueFileError(DataError, FileNotFoundError):
  """A GLUE file is missing (the message says where to get GLUE)."""


def task_dir(spec: GlueSpec, glue_dir: str) -> str:
  return os.path.join(glue_dir, spec.folder)


def _files(spec: GlueSpec, glue_dir: str) -> dict[str, str]:
  """split -> path of every labelled file the task reads."""
  folder = task_dir(spec, glue_dir)
  paths = {"train": os.path.join(folder, "train.tsv")}
  for split, name in spec.eval_files:
    paths[split] = os.path.join(folder, name)
  return paths


def check_files(spec: GlueSpec, glue_dir: str) -> dict[str, str]:
  """The task's files; one error naming all missing ones if any is."""
  paths = _files(spec, glue_dir)
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    raise GlueFileError(
        f"GLUE task {spec.name!r}: missing {', '.join(missing)} (looked in"
        f" {task_dir(spec, glue_dir)!r}; set task.glue_dir, default"
        f" <data_dir>/{GLUE_SUBDIR}); {WHERE_TO_GET}")
  return paths


def read_tsv(spec: GlueSpec, path: str
             ) -> tuple[list[str], list[str] | None, list[str]]:
  """(texts_a, texts_b or None, label strings) of one labelled GLUE file."""
  csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
  # utf-8-sig: a leading byte-order mark (MRPC's source files carry one) is
  # not part of the first column's name.
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  except UnicodeDecodeError as e:
    raise DataError(f"GLUE file {path} is not UTF-8 text (byte"
                    f" {e.start}: {e.reason})") from None
  except (OSError, csv.Error) as e:
    raise DataError(f"GLUE file {path} cannot be read: {e}") from None
  columns = [spec.text_a, spec.label] + (
      [spec.text_b] if spec.text_b is not None else [])
  if spec.header:
    if not rows:
      raise DataError(f"GLUE file {path} is empty (no header)")
    header, rows = rows[0], rows[1:]
    missing = [c for c in columns if c not in header]
    if missing:
      raise DataError(
          f"GLUE task {spec.name!r}: {path} has no column(s) {missing};"
          f" header: {header}")
    index = {c: header.index(c) for c in columns}
  else:
    index = {c: c for c in columns}
  width = max(index.values()) + 1
  kept = [r for r in rows if len(r) >= width]
  if len(kept) < len(rows):
    logging.warning("GLUE %s: skipped %d malformed row(s) of %s", spec.name,
                    len(rows) - len(kept), path)
  a = [r[index[spec.text_a]] for r in kept]
  b = [r[index[spec.text_b]] for r in kept] if spec.text_b is not None else None
  labels = [r[index[spec.label]] for r in kept]
  if not kept:
    raise DataError(f"GLUE task {spec.name!r}: {path} holds no examples")
  return a, b, labels


def parse_labels(spec: GlueSpec, labels: list[str], path: str) -> np.ndarray:
  """Label strings -> int32 ids, or float32 scores for regression."""
  if spec.regression:
    try:
      return np.asarray([float(x) for x in labels], np.float32)
    except ValueError as e:
      raise DataError(f"GLUE {spec.name}: bad score in {path}: {e}") from None
  ids = {label: i for i, label in enumerate(spec.labels)}
  bad = sorted({x for x in labels if x not in ids})
  if bad:
    raise DataError(
        f"GLUE {spec.name}: unknown label(s) {bad[:5]} in {path}; expected"
        f" {list(spec.labels)}")
  return np.asarray([ids[x] for x in labels], np.int32)


def stsb_dev(glue_dir: str
             ) -> tuple[list[str], list[str], np.ndarray] | None:
  """(first sentences, second sentences, float32 gold scores 0..5) of
  `<glue_dir>/STS-B/dev.tsv`, or None when the file is absent: the pairs
  on which sentence-embedding models report STS-B Spearman
  (`lightjax.metrics.embedding.sts_spearman`)."""
  spec = SPECS["glue_stsb"]
  path = os.path.join(task_dir(spec, glue_dir), "dev.tsv")
  if not os.path.isfile(path):
    return None
  a, b, scores = read_tsv(spec, path)
  return a, b, parse_labels(spec, scores, path)


# ----------------------------------------------------------------- building


def _glue_dir(config: dict[str, Any], data_dir: str) -> str:
  return config["glue_dir"] or os.path.join(data_dir, GLUE_SUBDIR)


def _check_config(config: dict[str, Any]) -> None:
  name = config["name"]
  if int(config["max_length"]) != config["max_length"] or (
      config["max_length"] < 4):
    raise ValueError(
        f"{name} max_length must be an integer >= 4, got"
        f" {config['max_length']!r}")
  check_hold_out(name, config)


def cache_path(config: dict[str, Any], data_dir: str, paths: dict[str, str],
               tokenizer_file: str) -> str:
  """`<data_dir>/glue_cache/<name>_L<max_length>_<hash>.npz`."""
  stats = {
      split: [os.path.abspath(p), os.path.getsize(p),
              os.stat(p).st_mtime_ns]
      for split, p in sorted(paths.items())
  }
  key = {
      "version": ENCODING_VERSION,
      "config": {k: config[k] for k in sorted(config)
                 if k not in ("glue_dir", "tokenizer")},
      "files": stats,
      "tokenizer": tokenize.file_digest(tokenizer_file),
  }
  return cache.npz_path(data_dir, CACHE_SUBDIR,
                        f"{config['name']}_L{int(config['max_length'])}", key,
                        digits=12)


def encode_splits(spec: GlueSpec, config: dict[str, Any],
                  paths: dict[str, str], tok: tokenize.PairTokenizer
                  ) -> dict[str, dict[str, np.ndarray]]:
  """Reads and encodes every split (see the module docstring)."""
  max_length = int(config["max_length"])
  raw = {}
  for split, path in paths.items():
    a, b, labels = read_tsv(spec, path)
    raw[split] = (a, b, parse_labels(spec, labels, path))
  splits = {}
  for split, (a, b, targets) in raw.items():
    ids, segments = tok.encode(a, b, max_length)
    splits[split] = {"inputs": ids, "segment_ids": segments,
                     "targets": targets}
  train = splits["train"]
  fraction = float(config["validation_fraction"])
  if fraction > 0:
    held = holdout_rows(len(train["targets"]), fraction, int(config["seed"]))
    splits["validation"] = {k: v[held] for k, v in train.items()}
    splits["train"] = {k: v[~held] for k, v in train.items()}
  else:
    splits["validation"] = dict(splits["test"])
  order = ["train", "validation", "test"] + [
      s for s in splits if s not in ("train", "validation", "test")]
  return {s: splits[s] for s in order}


_FIELDS = ("inputs", "segment_ids", "targets")


def load_splits(spec: GlueSpec, config: dict[str, Any], data_dir: str,
                tok: tokenize.PairTokenizer
                ) -> dict[str, dict[str, np.ndarray]]:
  """The encoded splits, from the cache or freshly encoded (then cached)."""
  paths = check_files(spec, _glue_dir(config, data_dir))
  return cache.cached(
      cache_path(config, data_dir, paths, tok.path),
      lambda: encode_splits(spec, config, paths, tok),
      splits=("train", "validation") + tuple(s for s, _ in spec.eval_files),
      fields=_FIELDS, what=spec.name, sep="/", redo="re-encoding",
      made=lambda splits: f"Encoded {spec.name} ({cache.rows(splits)})")


def build_task(name: str, task_config: Any, data_dir: str) -> TaskData:
  """Builds GLUE task `name` (one of NAMES)."""
  spec = SPECS[name]
  config = resolve_task_config(task_config, name=name)
  _check_config(config)
  # Files first: a missing GLUE download is the likelier mistake, and its
  # message says where to get it.
  check_files(spec, _glue_dir(config, data_dir))
  tok = tokenize.load_tokenizer(config["tokenizer"], config["lowercase"])
  splits = load_splits(spec, config, data_dir, tok)
  return TaskData(
      name=name,
      kind="regression" if spec.regression else "classification",
      vocab_size=tok.vocab_size,
      num_classes=spec.num_classes,
      max_len=int(config["max_length"]),
      splits=splits,
      vocab=tok.vocab,
      pad_id=tok.pad_id,
  )


def _register(name: str) -> None:
  def build(task_config: Any, data_dir: str) -> TaskData:
    return build_task(name, task_config, data_dir)

  build.__name__ = f"build_{name}"
  build.__doc__ = f"Builds GLUE task {name!r} (see lightjax.data.glue)."
  register(name, default_config=lambda: default_config_for(name),
           check_config=_check_config)(build)


for _name in NAMES:
  _register(_name)
