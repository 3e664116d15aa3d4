"""The task "sentences": unlabeled sentences, tokenized, for embedding models.

  task = lightjax.data.load_task({"name": "sentences",
                                  "tokenizer": "/path/to/all-MiniLM-L6-v2"})

WHY: distilling a sentence-embedding student (Reimers & Gurevych 2020:
the student's embedding regresses the frozen teacher's) and measuring its
fidelity need many real sentences and no labels. `lightjax.data.corpus`
supplies them (the Python standard library's docstrings and comments by
default, or the user's text); this task encodes them with the teacher's own
tokenizer so student and teacher read the same ids.

Kind "embedding": there are no labels; "targets" are zeros (int32[N]) so the
shared batching pipeline, which expects them, works unchanged. Each split
holds "inputs" int32[N, max_length] (the tokenizer's special tokens, e.g.
`[CLS] s [SEP]`, truncated to `max_length`, padded with the tokenizer's pad
id) and "segment_ids" int32[N, max_length] (the tokenizer's type ids: all 0
for single sentences, as BERT's; 0 on padding), as the GLUE tasks do.

Subsets. `num_train` > 0 keeps that many train sentences and `num_eval` > 0
that many of validation and of test each: a seeded random subset
(`arrays.subset_rows`), kept in corpus order; 0 keeps every sentence.
`texts(config, data_dir)` returns the sentences of exactly these rows, for a
teacher run outside lightjax (e.g. sentence-transformers) on the same
sentences.

Only the sentences are cached (`lightjax.data.corpus`); tokenizing ten
thousand short sentences with a fast tokenizer takes well under a second.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lightjax.data import corpus, glue, tokenize
from lightjax.data.arrays import subset_rows
from lightjax.data.base import (SPLITS, DataError, TaskData, check_count,
                                register, resolve_task_config)

NAME = corpus.NAME
KIND = "embedding"


def default_config() -> dict[str, Any]:
  return dict(
      name=NAME,
      # "stdlib" (Python's own docstrings and comments), a text file (one
      # sentence per line) or a folder of .txt/.md files.
      source=corpus.STDLIB,
      # tokenizer.json, or a Hugging Face / sentence-transformers directory
      # holding one (the teacher's); required.
      tokenizer="",
      # Tokens per sentence including the special tokens (longer ones are
      # truncated).
      max_length=128,
      # Train sentences kept (0: all).
      num_train=0,
      # Validation and test sentences kept, each (0: all).
      num_eval=0,
      # Seed of those subsets.
      seed=0,
  )


def _check_config(config: dict[str, Any]) -> None:
  """Values in range (no file read: `config_lib.validate` runs it)."""
  check_count(NAME, config, "max_length", 4)
  for key in ("num_train", "num_eval", "seed"):
    check_count(NAME, config, key, 0)
  if not isinstance(config["source"], str) or not config["source"]:
    raise ValueError(f"{NAME} source must be 'stdlib' or a path, got"
                     f" {config['source']!r}")


def load_tokenizer(path: str) -> tokenize.PairTokenizer:
  """The task's tokenizer; a missing one is one DataError line saying what
  to set."""
  if not path:
    raise DataError(
        f"task {NAME}: no tokenizer given: set task.tokenizer to a"
        " tokenizer.json or a Hugging Face / sentence-transformers directory"
        " holding one (the teacher's, e.g. all-MiniLM-L6-v2's)")
  try:
    return tokenize.load_tokenizer(path)
  except (FileNotFoundError, ValueError) as e:
    raise DataError(f"task {NAME}: {e}; set task.tokenizer to a"
                    " tokenizer.json or a directory holding one") from None


def texts(task_config: Any, data_dir: str) -> dict[str, list[str]]:
  """split -> the sentences of the task's rows, in row order (module
  docstring: subsets)."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  everything, _ = corpus.load_sentences(str(config["source"]), data_dir)
  keep = {"train": int(config["num_train"]),
          "validation": int(config["num_eval"]),
          "test": int(config["num_eval"])}
  return {split: [everything[split][i] for i in subset_rows(
      len(everything[split]), keep[split], int(config["seed"]), index)]
          for index, split in enumerate(SPLITS)}


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Encodes the task's sentences (module docstring)."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  tok = load_tokenizer(str(config["tokenizer"]))
  max_length = int(config["max_length"])
  splits = {}
  for split, rows in texts(config, data_dir).items():
    ids, segments = tok.encode(rows, None, max_length)
    splits[split] = {"inputs": ids, "segment_ids": segments,
                     "targets": np.zeros(len(rows), np.int32)}
  return TaskData(name=NAME, kind=KIND, vocab_size=tok.vocab_size,
                  num_classes=0, max_len=max_length, splits=splits,
                  vocab=tok.vocab, pad_id=tok.pad_id)


def stsb_pairs(task_config: Any, data_dir: str
               ) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray] | None:
  """GLUE STS-B's dev pairs encoded as the task encodes its sentences:
  ({"stsb_a": split, "stsb_b": split}, gold scores 0..5), or None when
  `<data_dir>/glue/STS-B/dev.tsv` is absent (`glue.stsb_dev`). The splits
  have the task's fields, so any model of the task embeds them
  (`evaluate.predict`)."""
  pairs = glue.stsb_dev(os.path.join(data_dir, glue.GLUE_SUBDIR))
  if pairs is None:
    return None
  config = resolve_task_config(task_config, name=NAME)
  tok = load_tokenizer(str(config["tokenizer"]))
  splits = {}
  for name, rows in (("stsb_a", pairs[0]), ("stsb_b", pairs[1])):
    ids, segments = tok.encode(rows, None, int(config["max_length"]))
    splits[name] = {"inputs": ids, "segment_ids": segments,
                    "targets": np.zeros(len(rows), np.int32)}
  return splits, pairs[2]
