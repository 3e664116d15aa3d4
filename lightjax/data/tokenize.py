"""Subword tokenizers for text tasks, through Hugging Face's `tokenizers`.

A task names its tokenizer by path, and a pretrained checkpoint's own files
work as they are:

  * `tokenizer.json` (the serialised fast tokenizer `save_pretrained` writes)
    is loaded with `tokenizers.Tokenizer.from_file`: its own normaliser,
    pre-tokeniser and post-processor (BERT's `[CLS] a [SEP] b [SEP]`
    template, RoBERTa's `<s> a </s></s> b </s>`) are used unchanged, so ids
    match the checkpoint's. Lower-casing is the file's decision there.
  * `vocab.txt` (a WordPiece vocabulary, one token per line, id = line
    number, as BERT and DistilBERT ship it) is loaded as
    `tokenizers.BertWordPieceTokenizer`, the fast version of BERT's tokenizer
    (Devlin et al. 2019, sec. 3 "Input/Output Representations"): BERT
    normalisation (`lowercase` for uncased checkpoints, accents stripped
    with it), WordPiece, and the `[CLS] a [SEP] b [SEP]` template.
  * a directory: its `tokenizer.json` if present, else its `vocab.txt`.

Pairs are encoded as one sequence with segment (token type) ids 0 for the
first part (with its special tokens) and 1 for the second, truncated to
`max_length` tokens including the special tokens by the "longest first" rule
(drop a token from the longer part until the pair fits, as BERT's
`_truncate_seq_pair`), and padded to `max_length` with the tokenizer's pad id.

`tokenizers` is imported only when a tokenizer is loaded, so importing
`lightjax.data` does not need it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Sequence

import numpy as np

from lightjax.data.base import MissingPackage

TOKENIZER_JSON = "tokenizer.json"
VOCAB_TXT = "vocab.txt"

# Pad tokens looked up, in order, when the tokenizer file sets no padding.
_PAD_TOKENS = ("[PAD]", "<pad>")
# Sentences encoded per `encode_batch` call: bounds the Python lists held at
# once (QQP has ~400k pairs).
_CHUNK = 8192


def _import_tokenizers():
  try:
    import tokenizers  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise MissingPackage(
        "text tasks need the `tokenizers` package: pip install -r"
        " requirements.txt (or pip install tokenizers)") from None
  return tokenizers


def resolve_tokenizer_file(path: str) -> str:
  """The tokenizer file `path` names: itself, or a directory's
  `tokenizer.json` (preferred) or `vocab.txt`."""
  if not path:
    raise ValueError(
        "no tokenizer given: set the task's `tokenizer` to a vocab.txt, a"
        " tokenizer.json or a checkpoint directory holding one")
  if os.path.isdir(path):
    for name in (TOKENIZER_JSON, VOCAB_TXT):
      candidate = os.path.join(path, name)
      if os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(
        f"no {TOKENIZER_JSON} or {VOCAB_TXT} in tokenizer directory {path!r}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"tokenizer file {path!r} does not exist")
  return path


def file_digest(path: str) -> str:
  """sha256 of a file's bytes (tokenizer files are at most a few MB)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


@dataclasses.dataclass
class PairTokenizer:
  """A loaded tokenizer that encodes single sentences or sentence pairs.

  Attributes:
    path: the tokenizer file it was loaded from.
    tokenizer: the `tokenizers` object (Tokenizer or BertWordPieceTokenizer).
    pad_id / pad_token: what padding is filled with.
    vocab: id -> token string (ids the file does not use are "").
  """

  path: str
  tokenizer: Any
  pad_id: int
  pad_token: str
  vocab: tuple[str, ...]

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def encode(
      self,
      texts_a: Sequence[str],
      texts_b: Sequence[str] | None,
      max_length: int,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Encodes sentences (or pairs when `texts_b` is given).

    Returns:
      (ids int32[N, max_length], segment_ids int32[N, max_length]); padding
      has id `pad_id` and segment 0.
    """
    min_length = self.tokenizer.num_special_tokens_to_add(texts_b is not None)
    if max_length <= min_length:
      raise ValueError(
          f"max_length={max_length} leaves no room for text beside the"
          f" {min_length} special tokens")
    if texts_b is not None and len(texts_b) != len(texts_a):
      raise ValueError(f"{len(texts_a)} first and {len(texts_b)} second texts")
    self.tokenizer.enable_truncation(max_length, strategy="longest_first")
    # Padding is filled here (the arrays start as pad / segment 0): cheaper
    # than padding every encoding in the tokenizer and copying it.
    self.tokenizer.no_padding()
    n = len(texts_a)
    ids = np.full((n, max_length), self.pad_id, np.int32)
    segments = np.zeros((n, max_length), np.int32)
    for start in range(0, n, _CHUNK):
      a = list(texts_a[start:start + _CHUNK])
      batch = a if texts_b is None else list(
          zip(a, texts_b[start:start + _CHUNK]))
      for row, e in enumerate(self.tokenizer.encode_batch(batch), start):
        ids[row, :len(e.ids)] = e.ids
        segments[row, :len(e.type_ids)] = e.type_ids
    return ids, segments


def load_tokenizer(path: str, lowercase: bool = True) -> PairTokenizer:
  """Loads the tokenizer at `path` (see the module docstring).

  Args:
    path: a `tokenizer.json`, a `vocab.txt` or a directory with either.
    lowercase: for `vocab.txt` only (uncased vs cased BERT); a
      `tokenizer.json` carries its own normaliser.
  """
  tokenizers = _import_tokenizers()
  path = resolve_tokenizer_file(path)
  if not path.endswith(".json"):  # A WordPiece vocab (vocab.txt).
    tok = tokenizers.BertWordPieceTokenizer(path, lowercase=bool(lowercase))
  else:
    tok = tokenizers.Tokenizer.from_file(path)
    if tok.post_processor is None:
      raise ValueError(
          f"tokenizer {path!r} has no post-processor, so it adds no"
          " [CLS]/[SEP]-style special tokens; use the checkpoint's own"
          " tokenizer.json or its vocab.txt")
  token_to_id = tok.get_vocab(with_added_tokens=True)
  size = max(tok.get_vocab_size(with_added_tokens=True),
             max(token_to_id.values(), default=-1) + 1)
  vocab = [""] * size
  for token, i in token_to_id.items():
    vocab[i] = token
  padding = tok.padding
  if padding and padding.get("pad_token") in token_to_id:
    pad_token = padding["pad_token"]
  else:
    pad_token = next((t for t in _PAD_TOKENS if t in token_to_id), None)
    if pad_token is None:
      raise ValueError(
          f"tokenizer {path!r} sets no padding and has none of the pad tokens"
          f" {_PAD_TOKENS}")
  return PairTokenizer(path=path, tokenizer=tok, pad_id=token_to_id[pad_token],
                       pad_token=pad_token, vocab=tuple(vocab))
