"""ListOps (Long Range Arena), generated locally from a seed.

Tay et al. 2020, "Long Range Arena", task "ListOps" (after Nangia & Bowman
2018). The distribution is that of LRA's `lra_benchmarks/data/listops.py`:

  * operators MIN, MAX, MED (`int(np.median(args))`, i.e. the floor of the mean
    of the two middle values for an even count) and SM (sum mod 10); operands
    and answers are digits 0-9, so the task has 10 classes;
  * `generate_tree(depth)`, root at depth 1: below `max_depth` draw
    r ~ U[0, 1), at `max_depth` take r = 1; r > 0.25 gives a leaf (a uniform
    digit), otherwise a node with a uniform operator and `randint(2, max_args)`
    children (inclusive), each generated at depth + 1;
  * the length of a tree counts operators, digits and closing brackets (LRA
    strips the parentheses), a tree is kept iff
    `min_length < length < max_length`, and duplicate expressions are dropped.

A sequence is the token list, e.g. `[MAX 2 9 [MIN 4 7 ] 0 ]`, so its token count
is exactly the LRA "length"; the label is its value.

What differs from LRA, on purpose (the distribution over examples does not):

  * Reproducible: a private `np.random.default_rng(seed)`, never global state.
    LRA splits by iterating a Python `set`, whose order depends on
    PYTHONHASHSEED; here the examples are kept in generation order.
  * Fast: LRA draws one tree at a time, depth-first, in Python; here thousands
    of trees are drawn at once, level by level, in numpy (see
    `generate_batch`). In LRA a node's type and arity depend on its depth only,
    so both orders give the same distribution over trees. Trees that are sure
    to reach `max_length` stop growing early; they would be rejected anyway.
    Generating 24k examples of length 32..256 takes ~3 s on one CPU core,
    LRA's 100k of length 500..2000 ~30 s.

Splits. The generator yields an endless stream of distinct accepted
expressions for (seed, min_length, max_length, max_depth, max_args). The first
`num_test` of them are the test split, the next `num_validation` the validation
split, the next `num_train` the train split. Hence the splits are disjoint, each
split's content depends only on (seed, the sizes, lengths, depth, args), and the
evaluation splits do not change when only `num_train` changes.

Vocabulary (no `<unk>`: the token set is closed): 0 `<pad>`, 1-10 the digits
"0"-"9" (digit d has id d + 1), 11 `[MIN`, 12 `[MAX`, 13 `[MED`, 14 `[SM`,
15 `]`; vocab_size 16.

Cache: `<data_dir>/listops/<key>.npz`, where the key names every generation
parameter plus a short hash of them and of `GENERATOR_VERSION`. Sequences are
stored ragged (uint8 tokens + lengths) and padded to int32 on load, since LRA's
padded int32 arrays are ~8x larger than the tokens.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from absl import logging
import numpy as np

from lightjax.data import cache
from lightjax.data.arrays import pad_ragged
from lightjax.data.base import (TaskData, check_count, register,
                                 resolve_task_config)

NAME = "listops"

# Bump when the token stream produced for a given config changes, so stale
# caches are not reused (the version is part of the cache key's hash).
GENERATOR_VERSION = 1

VALUE_P = 0.25  # P(leaf) is 1 - VALUE_P below max_depth (LRA's VALUE_P).
NUM_CLASSES = 10

PAD = "<pad>"
DIGITS = tuple(str(d) for d in range(10))
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VOCAB = (PAD,) + DIGITS + OPERATORS + (END,)
PAD_ID = 0
TOKEN_TO_ID = {token: i for i, token in enumerate(VOCAB)}
MIN_ID, MAX_ID, MED_ID, SM_ID = (TOKEN_TO_ID[op] for op in OPERATORS)
OPERATOR_IDS = (MIN_ID, MAX_ID, MED_ID, SM_ID)
END_ID = TOKEN_TO_ID[END]
VOCAB_SIZE = len(VOCAB)

SPLITS = ("train", "validation", "test")
# Order in which splits are cut from the generation stream (see module doc).
_STREAM_ORDER = ("test", "validation", "train")

# Trees drawn per vectorised batch. Part of the generator's definition (the
# stream's order depends on it), hence covered by GENERATOR_VERSION.
_ROOTS_PER_BATCH = 4096
# Generation gives up after this many consecutive batches that add no new
# expression: a config whose expression space is exhausted (or almost never
# hit, e.g. min_length near the maximal tree size) would otherwise loop forever.
_MAX_FRUITLESS_BATCHES = 1000


def default_config() -> dict[str, Any]:
  """Task config fields; the defaults are LRA's ListOps."""
  return dict(
      name=NAME,
      num_train=96_000,
      num_validation=2_000,
      num_test=2_000,
      min_length=500,
      max_length=2_000,
      max_depth=10,
      max_args=10,
      seed=0,
  )


# ----------------------------------------------------------------- vocabulary


def encode(tokens: Iterable[str]) -> np.ndarray:
  """Token strings -> int32 ids. Unknown tokens raise (the vocab is closed)."""
  try:
    return np.asarray([TOKEN_TO_ID[t] for t in tokens], dtype=np.int32)
  except KeyError as e:
    raise ValueError(
        f"unknown ListOps token {e.args[0]!r}; vocabulary: {VOCAB}"
    ) from None


def decode(ids: Iterable[int]) -> list[str]:
  """Ids -> token strings, dropping pad ids (so a padded row decodes to its
  sequence)."""
  return [VOCAB[int(i)] for i in np.asarray(ids).ravel() if int(i) != PAD_ID]


# ----------------------------------------------------------------- evaluation


def _median(args: Sequence[int]) -> int:
  """`int(np.median(args))` for non-negative ints, without numpy overhead."""
  s = sorted(args)
  n = len(s)
  mid = n // 2
  return s[mid] if n % 2 else (s[mid - 1] + s[mid]) // 2


def _apply(op_id: int, args: Sequence[int]) -> int:
  if op_id == MIN_ID:
    return min(args)
  if op_id == MAX_ID:
    return max(args)
  if op_id == MED_ID:
    return _median(args)
  if op_id == SM_ID:
    return sum(args) % 10
  raise ValueError(f"not an operator id: {op_id}")


def apply_operator(op: str, args: Sequence[int]) -> int:
  """Value of operator token `op` (e.g. "[MED") applied to digit `args`."""
  if op not in OPERATORS:
    raise ValueError(f"unknown operator {op!r}; valid: {OPERATORS}")
  return _apply(TOKEN_TO_ID[op], args)


def evaluate(tokens: Sequence[str] | Sequence[int] | np.ndarray) -> int:
  """Value of one expression, given as token strings or (padded) ids.

  A stack machine over the token list; it is separate from the generator's
  own bookkeeping so labels can be re-checked from the stored sequences.
  """
  if len(tokens) and isinstance(tokens[0], str):
    ids = encode(tokens)
  else:
    ids = np.asarray(tokens, dtype=np.int64).ravel()
  stack: list[tuple[int, list[int]]] = []
  result = None
  for i in ids.tolist():
    if i == PAD_ID:
      break
    if result is not None:
      raise ValueError("tokens after the end of the expression")
    if i in OPERATOR_IDS:
      stack.append((i, []))
      continue
    if i == END_ID:
      if not stack:
        raise ValueError("unbalanced ']'")
      op_id, args = stack.pop()
      if not args:
        raise ValueError("operator with no arguments")
      value = _apply(op_id, args)
    elif 1 <= i <= 10:
      value = i - 1
    else:
      raise ValueError(f"invalid ListOps id {i}")
    if stack:
      stack[-1][1].append(value)
    else:
      result = value
  if stack or result is None:
    raise ValueError("incomplete expression")
  return result


# ----------------------------------------------------------------- generation


def _segment_starts(arity: np.ndarray) -> np.ndarray:
  """Start index, in the next level, of each operator node's children."""
  ops = arity[arity > 0]
  return np.cumsum(ops) - ops


def _segment_median(
    child_values: np.ndarray, arity: np.ndarray
) -> np.ndarray:
  """`int(np.median(children))` for every operator node, vectorised.

  Sorting (parent, value) keys sorts values within each parent's contiguous
  segment; the median is then the floor-mean of the two middle entries (the
  same entry for an odd count).
  """
  ops = arity[arity > 0]
  parent = np.repeat(np.arange(ops.size), ops)
  sorted_values = np.sort(parent * 16 + child_values) % 16
  starts = np.cumsum(ops) - ops
  lo = sorted_values[starts + (ops - 1) // 2]
  hi = sorted_values[starts + ops // 2]
  return (lo + hi) // 2


def _draw_shapes(rng: np.random.Generator, num_roots: int, *, max_length: int,
                 max_depth: int, max_args: int):
  """Tree shapes, level by level; trees too long to accept stop growing.

  Returns:
    (levels: per level (node_tree int[K], arity int[K]), length int64[num_roots]
     lower bounds, exact for complete trees).
  """
  node_tree = np.arange(num_roots)  # Tree of each node of the current level.
  length = np.ones(num_roots, np.int64)
  levels = []  # Per level: (node_tree, arity).
  for depth in range(1, max_depth + 1):
    k = node_tree.size
    if k == 0:
      break
    arity = np.zeros(k, np.int64)
    if depth < max_depth:
      is_op = rng.random(k) <= VALUE_P
      arity[is_op] = 2 + np.floor(
          rng.random(int(is_op.sum())) * (max_args - 1)
      ).astype(np.int64)
    levels.append((node_tree, arity))
    grow = np.where(arity > 0, arity + 1, 0)
    length += np.bincount(node_tree, weights=grow, minlength=num_roots).astype(
        np.int64
    )
    child_tree = np.repeat(node_tree, arity)
    node_tree = child_tree[length[child_tree] < max_length]
  return levels, length


def _values_and_sizes(levels, draws):
  """Bottom-up: the value and token count (size) of every node's subtree.

  A leaf's value is floor(10 u) of its draw u; an operator's, floor(4 u)
  picking MIN/MAX/MED/SM, applied to its children's values.
  """
  values = [None] * len(levels)
  sizes = [None] * len(levels)
  for l in reversed(range(len(levels))):
    _, arity = levels[l]
    is_op = arity > 0
    digit = np.floor(draws[l] * 10).astype(np.int64)
    value = digit.copy()
    size = np.ones(arity.size, np.int64)
    if is_op.any():
      child_values, child_sizes = values[l + 1], sizes[l + 1]
      starts = _segment_starts(arity)
      op = np.floor(draws[l][is_op] * 4).astype(np.int64)
      reduced = np.select(
          [op == 0, op == 1, op == 2],
          [
              np.minimum.reduceat(child_values, starts),
              np.maximum.reduceat(child_values, starts),
              _segment_median(child_values, arity),
          ],
          np.add.reduceat(child_values, starts) % 10,
      )
      value[is_op] = reduced
      size[is_op] = 2 + np.add.reduceat(child_sizes, starts)
    values[l], sizes[l] = value, size
  return values, sizes


def _scatter_tokens(levels, draws, values, sizes, row_of_tree: np.ndarray,
                    num_rows: int, max_length: int) -> np.ndarray:
  """Top-down: each node's pre-order position in its row; writes its tokens.

  Returns uint8[num_rows, max_length], zero-padded.
  """
  tokens = np.zeros((num_rows, max_length), np.uint8)
  position = np.zeros(num_rows, np.int64)  # Roots start their sequence.
  for l, (node_tree, arity) in enumerate(levels):
    row = row_of_tree[node_tree]
    is_op = arity > 0
    op_ids = np.asarray(OPERATOR_IDS, np.uint8)[
        np.floor(draws[l] * 4).astype(np.int64)
    ]
    # An operator writes "[OP" at its position and "]" at its end; a leaf
    # writes its digit (its value), id value + 1.
    tokens[row, position] = np.where(is_op, op_ids, values[l] + 1)
    tokens[row[is_op], (position + sizes[l] - 1)[is_op]] = END_ID
    if l + 1 < len(levels):
      # Child k starts after its parent's token and its elder siblings.
      child_sizes = sizes[l + 1]
      before = np.cumsum(child_sizes) - child_sizes
      first = np.repeat(before[_segment_starts(arity)], arity[is_op])
      position = np.repeat(position + 1, arity) + before - first
  return tokens


def generate_batch(
    rng: np.random.Generator,
    num_roots: int,
    *,
    min_length: int,
    max_length: int,
    max_depth: int,
    max_args: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Draws `num_roots` LRA trees and returns the accepted ones, vectorised.

  In LRA every node's type and arity depend on its depth only, so drawing all
  trees level by level (breadth-first, each level of all trees at once) gives
  the same distribution over trees as LRA's recursive depth-first draw, at
  numpy speed. A tree is encoded by its levels: node arities in left-to-right
  order, the children of a node being the next `arity` nodes of the level
  below.

  Only Generator.random() floats are used (integers as floor(u * n)): with a
  fixed bit generator that stream is reproducible, whereas numpy does not
  promise a stable algorithm for `integers`.

  Shapes are drawn first and tokens only for the accepted ones, because most
  trees are rejected: 75% are a single digit, many grow past `max_length`. A
  tree stops growing at the first level where `1 + sum(arity + 1)` over its
  operators reaches `max_length`: that is a lower bound on its length (each
  operator brings its token, its `]` and at least one token per child), so
  the tree would be rejected anyway. The bound is exact for complete trees.

  Returns:
    (tokens uint8[A, max_length] zero-padded, lengths int32[A],
     values int32[A]) for the A accepted trees, in root order.
  """
  levels, length = _draw_shapes(rng, num_roots, max_length=max_length,
                                max_depth=max_depth, max_args=max_args)
  accepted = (length > min_length) & (length < max_length)
  row_of_tree = np.cumsum(accepted) - 1
  # Keep the accepted trees' nodes; their levels are complete.
  levels = [(t[accepted[t]], a[accepted[t]]) for t, a in levels]
  levels = [(t, a) for t, a in levels if t.size]
  # One uniform per node picks its operator or digit.
  draws = [rng.random(t.size) for t, _ in levels]
  values, sizes = _values_and_sizes(levels, draws)
  tokens = _scatter_tokens(levels, draws, values, sizes, row_of_tree,
                           int(accepted.sum()), max_length)
  return (
      tokens,
      length[accepted].astype(np.int32),
      values[0].astype(np.int32) if levels else np.zeros(0, np.int32),
  )


def generate_stream(
    *, min_length: int, max_length: int, max_depth: int, max_args: int,
    seed: int
) -> Iterator[tuple[np.ndarray, int]]:
  """Endless stream of distinct accepted (ids uint8[length], label), in
  generation order (batches of `_ROOTS_PER_BATCH` roots, roots in order)."""
  rng = np.random.default_rng(seed)
  seen: set[bytes] = set()
  fruitless = 0
  while True:
    tokens, lengths, values = generate_batch(
        rng, _ROOTS_PER_BATCH, min_length=min_length, max_length=max_length,
        max_depth=max_depth, max_args=max_args,
    )
    progress = False
    for row, n, value in zip(tokens, lengths.tolist(), values.tolist()):
      ids = row[:n].copy()  # Not a view: the batch array is mostly padding.
      key = ids.tobytes()
      if key not in seen:
        seen.add(key)
        progress = True
        yield ids, value
    fruitless = 0 if progress else fruitless + 1
    if fruitless > _MAX_FRUITLESS_BATCHES:
      raise RuntimeError(
          f"ListOps generation found no new expression in"
          f" {_MAX_FRUITLESS_BATCHES * _ROOTS_PER_BATCH} draws after"
          f" {len(seen)} (min_length={min_length}, max_length={max_length},"
          f" max_depth={max_depth}, max_args={max_args}): the requested sizes"
          " are not reachable."
      )


def generate_splits(
    *, num_train: int, num_validation: int, num_test: int, min_length: int,
    max_length: int, max_depth: int, max_args: int, seed: int
) -> dict[str, dict[str, np.ndarray]]:
  """Generates the three splits in ragged form.

  Returns:
    split -> {"tokens": uint8[sum of lengths] (concatenated ids),
              "lengths": int32[N], "targets": int32[N]}.
  """
  sizes = {"train": num_train, "validation": num_validation, "test": num_test}
  stream = generate_stream(
      min_length=min_length, max_length=max_length, max_depth=max_depth,
      max_args=max_args, seed=seed,
  )
  out = {}
  for split in _STREAM_ORDER:
    tokens: list[np.ndarray] = []
    lengths = np.zeros(sizes[split], np.int32)
    targets = np.zeros(sizes[split], np.int32)
    for n in range(sizes[split]):
      ids, value = next(stream)
      tokens.append(ids)
      lengths[n] = len(ids)
      targets[n] = value
    out[split] = {
        "tokens": np.concatenate(tokens or [np.zeros(0, np.uint8)]),
        "lengths": lengths,
        "targets": targets,
    }
  return {split: out[split] for split in SPLITS}


# ----------------------------------------------------------------- cache


def _generation_params(config: dict[str, Any]) -> dict[str, int]:
  return {k: int(config[k]) for k in sorted(default_config()) if k != "name"}


def cache_path(config: dict[str, Any], data_dir: str) -> str:
  """`<data_dir>/listops/<readable params>_<hash>.npz` for a resolved config."""
  p = _generation_params(config)
  name = (
      f"n{p['num_train']}-{p['num_validation']}-{p['num_test']}"
      f"_len{p['min_length']}-{p['max_length']}_d{p['max_depth']}"
      f"_a{p['max_args']}_s{p['seed']}"
  )
  return cache.npz_path(data_dir, NAME, name, _stamp(p))


def _stamp(params: dict[str, int]) -> dict[str, int]:
  return {"version": GENERATOR_VERSION, **params}


def load_ragged(config: dict[str, Any], data_dir: str):
  """The ragged splits for `config`, from the cache or freshly generated."""
  params = _generation_params(config)

  def generate():
    logging.info("Generating ListOps %s", params)
    return generate_splits(**params)

  def made(ragged):
    return f"Generated ListOps ({sum(cache.rows(ragged).values())} examples)"

  return cache.cached(cache_path(config, data_dir), generate, splits=SPLITS,
                      fields=("tokens", "lengths", "targets"), what="ListOps",
                      stamp=_stamp(params), made=made)


def _check_config(config: dict[str, Any]) -> None:
  for k, v in _generation_params(config).items():
    if v != config[k]:
      raise ValueError(f"listops {k} must be an integer, got {config[k]!r}")
  for k in ("num_train", "num_validation", "num_test"):  # each split used
    check_count(NAME, config, k, 1)
  check_count(NAME, config, "seed", 0)
  if config["max_args"] < 2:
    raise ValueError(f"listops max_args must be >= 2, got {config['max_args']}")
  if config["max_depth"] < 1:
    raise ValueError(
        f"listops max_depth must be >= 1, got {config['max_depth']}")
  if not 0 <= config["min_length"] < config["max_length"] - 1:
    raise ValueError(
        "listops needs 0 <= min_length < max_length - 1 (lengths are strictly"
        f" between them), got {config['min_length']}, {config['max_length']}"
    )
  longest = 1  # Longest tree: every node above max_depth has max_args children.
  for _ in range(config["max_depth"] - 1):
    longest = 2 + config["max_args"] * longest
  if longest <= config["min_length"]:
    raise ValueError(
        f"listops trees of max_depth={config['max_depth']} and"
        f" max_args={config['max_args']} have at most {longest} tokens, not"
        f" more than min_length={config['min_length']}"
    )


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Builds the ListOps task: generated once per config, then cached."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  max_len = int(config["max_length"])
  ragged = load_ragged(config, data_dir)
  splits = {
      split: {
          "inputs": pad_ragged(r["tokens"], r["lengths"], max_len),
          "targets": r["targets"].astype(np.int32),
      }
      for split, r in ragged.items()
  }
  return TaskData(
      name=NAME,
      kind="classification",
      vocab_size=VOCAB_SIZE,
      num_classes=NUM_CLASSES,
      max_len=max_len,
      splits=splits,
      vocab=VOCAB,
      pad_id=PAD_ID,
  )

