"""Writes tests/fixtures/minilm_expected.npz: all-MiniLM-L6-v2's sentence
embeddings of 256 fixed English sentences, as the reference implementations
compute them, for the import-parity test (`tests/test_sentence.py`).

Needs torch and transformers (and, when installed, sentence-transformers),
outside lightjax's environment; run once:

    python3 -m pip install --target /tmp/peers torch transformers==5.24.0 sentence-transformers==6.0.1
    scripts/get_minilm.sh ~/.cache/lightjax/minilm
    PYTHONPATH=/tmp/peers:. python3 scripts/make_minilm_expected.py ~/.cache/lightjax/minilm

(the committed file: Python 3.11.7, torch 2.14.1, transformers 5.24.0,
sentence-transformers 6.0.1, which agreed to 1.7e-7; it stores both.)

The sentences are taken deterministically from the docstrings of a fixed
list of Python standard-library modules (`ast` over the files, in sorted
order: cleaned docstrings split into paragraphs, code and doctest lines
dropped, paragraphs split into sentences, 4 to 60 words of ASCII prose
each), deduplicated, and 256 are drawn with a seeded `random.Random`. Their
lengths vary from a few tokens to over a hundred, so a batch holds plenty
of padding. The Python version they came from is stored with them (another
version's docstrings may differ; the test reads the stored sentences, never
the standard library).

The reference embedding is transformers' `AutoModel` (float32, eval) on the
`AutoTokenizer`'s ids, padded to the longest sentence of each batch of 32,
then mean pooling over the attention mask and L2 normalisation: what the
directory's modules.json (Transformer -> Pooling(mean) -> Normalize) says
(Reimers & Gurevych 2019). With sentence-transformers installed its
`SentenceTransformer(dir).encode` is computed too and must agree to 1e-5.
The lightjax tokenizer (`lightjax.hf.sentence_transformers.tokenize`) must
give the same ids as transformers' tokenizer.

Saved: sentences, token_ids (int16 [256, L], 0 = [PAD], right-padded to the
longest), embeddings (float32 [256, 384]), python_version, and the versions
of the libraries that made them.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import sys
import sysconfig

import numpy as np

# The modules whose docstrings give the sentences (paths under stdlib).
MODULES = ("argparse.py", "calendar.py", "collections/__init__.py", "csv.py",
           "dataclasses.py", "datetime.py", "difflib.py", "fractions.py",
           "functools.py", "heapq.py", "inspect.py", "json/__init__.py",
           "logging/__init__.py", "random.py", "shutil.py", "statistics.py",
           "string.py", "subprocess.py", "tarfile.py", "textwrap.py",
           "threading.py", "typing.py", "zipfile/__init__.py", "zipfile.py")
NUM_SENTENCES = 256
SEED = 0
BATCH = 32
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "tests", "fixtures", "minilm_expected.npz")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PROSE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'\"()\-/%.!?]+[.!?]$")


def _docstrings(path: str):
  """Every docstring of a module file (module, classes, functions), in the
  order `ast.walk` visits them."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                         ast.AsyncFunctionDef)):
      text = ast.get_docstring(node, clean=True)
      if text:
        yield text


def _sentences(docstring: str):
  """Prose sentences of a docstring: paragraphs without code (indented
  lines, doctests, `::` blocks), joined into one line, split at sentence
  ends; 4 to 60 words of plain ASCII prose."""
  for paragraph in re.split(r"\n\s*\n", docstring):
    lines = paragraph.splitlines()
    if any(l.startswith((" ", "\t", ">>>", "...")) for l in lines):
      continue
    if "::" in paragraph or "`" in paragraph:
      continue
    text = " ".join(l.strip() for l in lines)
    for sentence in _SENTENCE_END.split(text):
      sentence = sentence.strip()
      if (sentence.isascii() and _PROSE.match(sentence)
          and 4 <= len(sentence.split()) <= 60):
        yield sentence


def stdlib_sentences() -> list[str]:
  """The deduplicated candidate sentences of `MODULES`, in file order."""
  root = sysconfig.get_paths()["stdlib"]
  seen, out = set(), []
  for name in sorted(MODULES):
    path = os.path.join(root, name)
    if not os.path.isfile(path):
      continue  # e.g. zipfile.py became a package in Python 3.12
    for doc in _docstrings(path):
      for sentence in _sentences(doc):
        if sentence not in seen:
          seen.add(sentence)
          out.append(sentence)
  return out


def _reference(directory: str, sentences: list[str]):
  """(token ids [N, L] padded to the longest, embeddings [N, E]) from
  transformers: mean pooling over the mask, then L2 normalisation."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
  model = transformers.AutoModel.from_pretrained(directory).eval()
  longest = max(len(tokenizer(s)["input_ids"]) for s in sentences)
  ids = tokenizer(sentences, padding="max_length", truncation=True,
                  max_length=longest, return_tensors="np")["input_ids"]
  out = []
  with torch.no_grad():
    for start in range(0, len(sentences), BATCH):
      batch = tokenizer(sentences[start:start + BATCH], padding=True,
                        truncation=True, max_length=256, return_tensors="pt")
      hidden = model(**batch).last_hidden_state
      mask = batch["attention_mask"][..., None].to(hidden.dtype)
      pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
      out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
  return ids, np.concatenate(out).astype(np.float32)


def _check_against_sentence_transformers(directory, sentences, want):
  try:
    import sentence_transformers  # pylint: disable=import-outside-toplevel
  except ImportError:
    print("sentence-transformers not installed: transformers only")
    return None
  got = sentence_transformers.SentenceTransformer(
      directory, device="cpu").encode(sentences, batch_size=BATCH)
  diff = float(np.abs(got - want).max())
  print(f"sentence-transformers vs transformers: max abs {diff:.3g}")
  assert diff <= 1e-5, diff
  return sentence_transformers.__version__


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("model_dir", help="scripts/get_minilm.sh's directory")
  parser.add_argument("--out", default=OUT)
  args = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from lightjax.hf import sentence_transformers as st_files  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)
  candidates = stdlib_sentences()
  sentences = random.Random(SEED).sample(candidates, NUM_SENTENCES)
  print(f"{len(candidates)} candidate sentences, {NUM_SENTENCES} drawn")
  ids, embeddings = _reference(args.model_dir, sentences)
  ours, pad_id = st_files.tokenize(args.model_dir, sentences)
  assert pad_id == 0 and ours.shape == ids.shape, (ours.shape, ids.shape)
  assert (ours == ids).all(), "lightjax's tokenizer differs from transformers'"
  st_version = _check_against_sentence_transformers(args.model_dir, sentences,
                                                    embeddings)
  lengths = (ids != 0).sum(1)
  print(f"tokens per sentence: min {lengths.min()}, median"
        f" {int(np.median(lengths))}, max {lengths.max()}")
  np.savez_compressed(
      args.out, sentences=np.array(sentences), token_ids=ids.astype(np.int16),
      embeddings=embeddings,
      python_version=np.array(sys.version.split()[0]),
      made_with=np.array(f"torch {torch.__version__}, transformers"
                         f" {transformers.__version__}, sentence-transformers"
                         f" {st_version or 'not installed'}"))
  print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
  main()
