"""Unlabeled English sentences that every machine has: the Python standard
library's docstrings and comments, or any text the user gives.

WHY: distilling a sentence-embedding student needs real sentences but no
labels (Reimers & Gurevych 2020 match the teacher's embeddings), and a
corpus that ships with Python needs no download, no hub and no licence
beyond Python's own, so every run and test can use it offline.

Source "stdlib". Every `*.py` file under `sysconfig.get_paths()["stdlib"]`,
in sorted relative-path order, skipping the folders named in `SKIP_DIRS`
(tests, IDLE, site-packages, caches), the build's platform-specific files
(`SKIP_PREFIXES`: `config-3.11-<platform>/`, `_sysconfigdata_<platform>.py`,
whose names differ between machines) and files that are not UTF-8 or do not
parse. Texts: the docstrings of modules, classes and functions
(`ast.get_docstring`, cleaned) and the comments (`tokenize` COMMENT tokens;
consecutive whole-line comments form one text, an inline comment its own).
The sentences depend on the Python version (its standard library's text):
the manifest records `platform.python_version()`, and with the same version
(and an unpatched standard library) the result is identical on every
machine. Python 3.11.7 gives 9,899 train, 460 validation and 579 test
sentences from 672 files (tests/test_data_corpus.py pins these counts and
each split's sha256).

Paragraphs. A text's lines are cut into paragraphs at blank lines and at
lines that are not prose: indented lines (code examples, option tables),
doctest lines (`>>>`, `...`), RST underlines, Markdown headings and fenced
code blocks; these are dropped. A list item (`- `, `* `, `1. `) starts a new
paragraph. A paragraph's lines are joined with single spaces.

Sentences. A paragraph is cut after `.`, `!` or `?` (and any closing quote
or bracket) followed by whitespace and a capital letter, except after an
abbreviation (`ABBREVIATIONS`) or initials ("U.S.", "J."). A sentence is
kept only if it passes every rule in `RULES` (`failed_rule` names the first
it fails):

  words     6 to 40 whitespace-separated words
  capital   starts with a capital letter A-Z
  period    ends with a letter, digit, closing bracket or quote, then '.'
            (no '?', '!', ':' or '...')
  ascii     printable ASCII only
  letters   at least 80% of its non-space characters are letters
  symbols   none of the characters _ = < > [ ] { } ` \\ | @ # $ % ^ ~ * /
            (identifiers, operators, markup, paths, format strings)
  code      no "()", "::", "->", "..", dotted names ("os.path") or
            camelCase words ("getName")
  markers   no XXX, TODO or FIXME (notes to developers), no Copyright,
            (c) or SPDX (licence headers)
  brackets  parentheses balanced, double quotes paired

Sentences are then de-duplicated exactly (the first occurrence is kept).

Splits, by source file, so no file's sentences straddle two splits: the
sha256 of the file's path relative to the root ("json/decoder.py", '/'
separated, UTF-8), read as one big-endian integer, mod 20 is 0 for "test",
1 for "validation", else "train" (about 5% / 5% / 90% of the files). A
sentence that also occurs in train is dropped from validation and test, and
one of test that occurs in validation from test, so no sentence is in two
splits.

Other sources. `source` may name a text file or a folder instead:
  * a file: one sentence per line (stripped, empty lines skipped, no rules
    applied: the user chose them), split by the sha256 of the line mod 20;
  * a folder: its `.txt` and `.md` files (recursively, hidden ones skipped,
    sorted), cut into sentences and filtered as above, split by file as
    above. Too few files can leave a split empty; that is an error.

Cache. `<data_dir>/corpus_cache/<name>_<digest>.npz` holds each split's
sentences as UTF-8 bytes and end offsets, beside a `.json` manifest (source,
Python version, rules version, files read and skipped, counts and the sha256
of each split's sentences). The digest covers the rules version and the
source: for "stdlib" the Python version and its path, for a user's text
every file's path, size and modification time.

The task "sentences" (`lightjax.data.sentences`) encodes them with a
pretrained tokenizer.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import platform
import re
import sysconfig
import tokenize as py_tokenize
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from lightjax import files
from lightjax.data import cache
from lightjax.data.base import SPLITS, DataError

NAME = "sentences"  # the task's name, in error messages
STDLIB = "stdlib"
CACHE_SUBDIR = "corpus_cache"
# Bump when the sentences produced for a given source change.
RULES_VERSION = 1

SKIP_DIRS = frozenset({"test", "tests", "idle_test", "idlelib",
                       "site-packages", "dist-packages", "__pycache__"})
SKIP_PREFIXES = ("config-", "_sysconfigdata")  # per-platform build files
TEXT_SUFFIXES = (".txt", ".md")
BUCKETS = 20  # sha256 mod BUCKETS: 0 -> test, 1 -> validation, else train
ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "etc.", "vs.", "cf.", "mr.", "mrs.", "ms.", "dr.", "st.",
    "no.", "al.", "approx.", "resp.", "fig.", "sec.", "ch.", "vol.", "pp."})

Units = Iterable[tuple[str, list[str]]]  # (split key, sentences) per file


# ------------------------------------------------------------------ the rules

_SYMBOLS = frozenset("_=<>[]{}`\\|@#$%^~*/")
_CODE = re.compile(r"\(\)|::|->|\.\.|[A-Za-z0-9]\.[A-Za-z]{2,}"
                   r"|\b[a-z]+[A-Z]")
_MARKERS = re.compile(r"\b(?:XXX|TODO|FIXME|Copyright|SPDX)\b|\(c\)")
_ENDING = re.compile(r"[A-Za-z0-9)\"']\.$")


def _letters(s: str) -> bool:
  chars = s.replace(" ", "")
  return sum(c.isalpha() for c in chars) >= 0.8 * len(chars)


RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("words", lambda s: 6 <= len(s.split()) <= 40),
    ("capital", lambda s: "A" <= s[:1] <= "Z"),
    ("period", lambda s: bool(_ENDING.search(s)) and not s.endswith("..")),
    ("ascii", lambda s: s.isascii() and s.isprintable()),
    ("letters", _letters),
    ("symbols", lambda s: not _SYMBOLS.intersection(s)),
    ("code", lambda s: not _CODE.search(s)),
    ("markers", lambda s: not _MARKERS.search(s)),
    ("brackets", lambda s: s.count("(") == s.count(")")
     and s.count('"') % 2 == 0),
)


def failed_rule(sentence: str) -> str | None:
  """The name of the first rule of `RULES` `sentence` fails, or None."""
  for name, check in RULES:
    if not check(sentence):
      return name
  return None


# ------------------------------------------------- paragraphs and sentences

_BULLET = re.compile(r"(?:[-*+]|#\.|\d+[.)])\s")
_UNDERLINE = re.compile(r"([-=~^*#+])\1{2,}\s*")
_BOUNDARY = re.compile(r"[.!?][)\"'\]]*\s+(?=[(\"']*[A-Z])")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)+")


def paragraphs(text: str) -> list[str]:
  """The prose paragraphs of a docstring, comment or text file (module
  docstring: blank lines and non-prose lines cut; lines joined by spaces)."""
  found, current, fenced = [], [], False

  def close():
    if current:
      found.append(" ".join(current))
      current.clear()

  for line in text.splitlines():
    stripped = line.strip()
    if stripped.startswith("```"):
      fenced = not fenced
      close()
      continue
    if (fenced or not stripped or line[0].isspace()
        or stripped.startswith((">>>", "...", "#"))
        or _UNDERLINE.fullmatch(stripped)):
      close()
      continue
    if _BULLET.match(stripped):
      close()
    current.append(stripped)
  close()
  return found


def split_sentences(paragraph: str) -> list[str]:
  """`paragraph` cut into sentences (module docstring), whitespace
  collapsed; unfiltered."""
  text = " ".join(paragraph.split())
  pieces, start = [], 0
  for m in _BOUNDARY.finditer(text):
    end = m.end() - len(m.group()) + len(m.group().rstrip())
    last = text[start:end].rsplit(" ", 1)[-1]
    if last.lower() in ABBREVIATIONS or _INITIALS.fullmatch(last):
      continue
    pieces.append(text[start:end])
    start = m.end()
  pieces.append(text[start:])
  return [p for p in pieces if p]


def sentences_of(texts: Iterable[str]) -> list[str]:
  """The sentences of `texts` that pass every rule, in order."""
  return [s for text in texts for p in paragraphs(text)
          for s in split_sentences(p) if failed_rule(s) is None]


# ------------------------------------------------------------- Python files

_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def docstrings(tree: ast.Module) -> list[str]:
  """The docstrings of a module and of its classes and functions, in source
  order. Only statement bodies are visited (a docstring is a statement),
  which is several times faster than `ast.walk` over every expression."""
  found, stack = [], [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, _DOC_NODES):
      doc = ast.get_docstring(node, clean=True)
      if doc:
        found.append(doc)
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
      children = getattr(node, field, None)
      if isinstance(children, list):
        stack.extend(reversed(children))
  return found


def python_texts(source: str) -> list[str] | None:
  """Docstrings, then comment blocks, of Python `source`; None if it does
  not parse."""
  try:
    tree = ast.parse(source)
    tokens = list(py_tokenize.generate_tokens(io.StringIO(source).readline))
  except (SyntaxError, ValueError, py_tokenize.TokenError):
    return None
  texts = docstrings(tree)
  block, last_row = [], -2
  for tok in tokens:
    if tok.type != py_tokenize.COMMENT:
      continue
    whole_line = tok.line.lstrip().startswith("#")
    if not (whole_line and tok.start[0] == last_row + 1) and block:
      texts.append("\n".join(block))
      block = []
    body = tok.string.lstrip("#")
    block.append(body[1:] if body.startswith(" ") else body)
    last_row = tok.start[0] if whole_line else -2
  if block:
    texts.append("\n".join(block))
  return texts


def stdlib_root() -> str:
  return sysconfig.get_paths()["stdlib"]


def _walk(root: str, suffixes: tuple[str, ...],
          skip: Callable[[str], bool] = lambda name: False) -> list[str]:
  """Relative '/'-separated paths of the files under `root` ending in one
  of `suffixes`, sorted; hidden files and folders, and those whose name
  `skip` accepts, left out."""
  found = []
  for folder, dirs, names in os.walk(root):
    dirs[:] = [d for d in dirs if not d.startswith(".") and not skip(d)]
    rel = os.path.relpath(folder, root)
    found += [n if rel == "." else f"{rel}/{n}".replace(os.sep, "/")
              for n in names if n.endswith(suffixes)
              and not n.startswith(".") and not skip(n)]
  return sorted(found)


def stdlib_files(root: str) -> list[str]:
  """The standard library's `.py` files read (module docstring), relative
  to `root`, sorted."""
  return _walk(root, (".py",), lambda name: name in SKIP_DIRS
               or name.startswith(SKIP_PREFIXES))


def stdlib_units(root: str, counts: dict[str, int]) -> Iterator[
    tuple[str, list[str]]]:
  """(relative path, sentences) of each standard-library file; tallies
  files read and skipped into `counts`."""
  for rel in stdlib_files(root):
    with open(os.path.join(root, rel), "rb") as f:
      raw = f.read()
    try:
      texts = python_texts(raw.decode("utf-8"))
    except UnicodeDecodeError:
      texts = None
    if texts is None:
      counts["files_skipped"] += 1
      continue
    counts["files_read"] += 1
    yield rel, sentences_of(texts)


# -------------------------------------------------------------- user text


def _read_text(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise DataError(f"task {NAME}: {path} is not UTF-8 text (byte {e.start}:"
                    f" {e.reason}); convert it or remove it") from None
  except OSError as e:
    raise DataError(f"task {NAME}: cannot read {path}: {e.strerror}") from None


def line_units(path: str) -> Iterator[tuple[str, list[str]]]:
  """(line, [line]) per non-empty line of a one-sentence-per-line file: each
  line is split by its own hash, so duplicates share a split."""
  for line in _read_text(path).splitlines():
    line = " ".join(line.split())
    if line:
      yield line, [line]


def folder_units(root: str, counts: dict[str, int]) -> Iterator[
    tuple[str, list[str]]]:
  """(relative path, sentences) of each .txt/.md file under `root`."""
  for rel in _walk(root, TEXT_SUFFIXES):
    counts["files_read"] += 1
    yield rel, sentences_of([_read_text(os.path.join(root, rel))])


# ------------------------------------------------------------------ splits


def split_of(key: str) -> str:
  """"test", "validation" or "train": sha256 of `key` mod BUCKETS."""
  bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % BUCKETS
  return {0: "test", 1: "validation"}.get(bucket, "train")


def assemble(units: Units) -> dict[str, list[str]]:
  """split -> its sentences in source order: each unit goes to the split of
  its key, duplicates are dropped within a split, and a sentence already in
  train (then validation) is dropped from the later splits."""
  chosen: dict[str, dict[str, None]] = {s: {} for s in SPLITS}
  for key, sentences in units:
    chosen[split_of(key)].update(dict.fromkeys(sentences))
  seen: set[str] = set()
  splits = {}
  for split in SPLITS:  # train, validation, test: earlier splits win
    splits[split] = [s for s in chosen[split] if s not in seen]
    seen.update(splits[split])
  return splits


def _digest(sentences: list[str]) -> str:
  return hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()


# ------------------------------------------------------- sources and cache


def source_kind(source: str) -> str:
  """"stdlib", "file" or "folder"; a DataError line for anything else."""
  if source == STDLIB:
    return STDLIB
  if os.path.isfile(source):
    return "file"
  if os.path.isdir(source):
    return "folder"
  raise DataError(f"task {NAME}: source {source} is neither {STDLIB!r} nor a"
                  " file or folder; set task.source to 'stdlib', a text file"
                  " (one sentence per line) or a folder of .txt/.md files")


def _source_key(source: str) -> tuple[str, dict[str, Any]]:
  """(readable cache name, what the cache digest covers) of `source`."""
  kind = source_kind(source)
  if kind == STDLIB:
    version = platform.python_version()
    return f"stdlib-py{version}", {"python": version, "root": stdlib_root()}
  path = os.path.abspath(source)
  listed = [path] if kind == "file" else [
      os.path.join(path, r) for r in _walk(path, TEXT_SUFFIXES)]
  stats = [[p, os.path.getsize(p), os.stat(p).st_mtime_ns] for p in listed]
  name = re.sub(r"[^A-Za-z0-9.-]+", "-", os.path.basename(path)) or "text"
  return name, {"path": path, "files": stats}


def extract(source: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
  """(split -> sentences, manifest) of `source`, extracted now (no cache)."""
  counts = {"files_read": 0, "files_skipped": 0}
  kind = source_kind(source)
  if kind == STDLIB:
    splits = assemble(stdlib_units(stdlib_root(), counts))
  elif kind == "file":
    splits = assemble(line_units(source))
    counts["files_read"] = 1
  else:
    splits = assemble(folder_units(source, counts))
  unit, more = (("line", "give more lines") if kind == "file" else (
      "file", "give more files, or one text file with a sentence per line"))
  for split, sentences in splits.items():
    if not sentences:
      raise DataError(
          f"task {NAME}: {source} gives no {split} sentences (about 1 {unit}"
          f" in {BUCKETS} goes to each of validation and test); {more}")
  manifest = {
      "source": source if kind == STDLIB else os.path.abspath(source),
      "python_version": platform.python_version(),
      "rules_version": RULES_VERSION,
      **counts,
      "counts": {s: len(v) for s, v in splits.items()},
      "sha256": {s: _digest(v) for s, v in splits.items()},
  }
  return splits, manifest


def _to_arrays(splits: dict[str, list[str]]) -> cache.Splits:
  out = {}
  for split, sentences in splits.items():
    encoded = [s.encode("utf-8") for s in sentences]
    out[split] = {
        "utf8": np.frombuffer(b"".join(encoded), np.uint8),
        "ends": np.cumsum([len(e) for e in encoded], dtype=np.int64)}
  return out


def _from_arrays(arrays: cache.Splits) -> dict[str, list[str]]:
  out = {}
  for split, d in arrays.items():
    raw, ends = d["utf8"].tobytes(), d["ends"].tolist()
    out[split] = [raw[a:b].decode("utf-8") for a, b in zip([0] + ends, ends)]
  return out


def load_sentences(source: str, data_dir: str
                   ) -> tuple[dict[str, list[str]], dict[str, Any]]:
  """(split -> sentences, manifest) of `source` ("stdlib", a text file or a
  folder), from the cache under `data_dir` or extracted and cached."""
  name, key = _source_key(source)
  path = cache.npz_path(data_dir, CACHE_SUBDIR, name,
                        {"rules": RULES_VERSION, "source": key})
  manifest_path = path[:-len(".npz")] + ".json"
  built = {}

  def build() -> cache.Splits:
    splits, built["manifest"] = extract(source)
    return _to_arrays(splits)

  arrays = cache.cached(path, build, splits=SPLITS, fields=("utf8", "ends"),
                        what=f"corpus {name}", sep="/",
                        made=lambda a: f"Extracted corpus {name}"
                        f" ({ {s: len(d['ends']) for s, d in a.items()} })")
  splits = _from_arrays(arrays)
  manifest = built.get("manifest")
  if manifest is None and os.path.isfile(manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
      manifest = json.load(f)
  if manifest is None:  # the sentences were cached, the manifest lost
    manifest = extract(source)[1]
  if "manifest" in built or not os.path.isfile(manifest_path):
    files.atomic_write(manifest_path, lambda f: json.dump(
        manifest, f, indent=1, sort_keys=True))
  return splits, manifest
