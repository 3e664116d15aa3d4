"""MQAR: multi-query associative recall, generated locally from a seed.

Arora, Eyuboglu et al. 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models" (arXiv:2312.04927), sec. 3 and appendix: a
sequence first binds `num_kv_pairs` keys to values, then asks for every key
again; at each query the model must output the value bound to it. Recall of
many bindings at once is what a fixed-size recurrent state (linear attention,
gated convolutions) struggles with and softmax attention does by looking
back, so MQAR separates the two at small model width (Zoology fig. 2).

The distribution is that of Zoology's generator
(HazyResearch/zoology, `zoology/data/multiquery_ar.py`), K = num_kv_pairs,
L = seq_len, V = vocab_size:

  * keys are drawn from [1, V/2), values from [V/2, V) (integer division), K
    distinct keys and K distinct values per sequence, uniformly, in random
    order; positions 0..2K-1 hold k_1 v_1 k_2 v_2 ... k_K v_K;
  * every key is queried exactly once. With space = (L - 2K) / 2 slots after
    the kv block, K distinct gaps g are drawn from {0, ..., space-1} without
    replacement, slot i (1-based) with probability proportional to
    i^(power_a - 1) (a power law: Zoology's default power_a = 0.01 puts most
    queries soon after the kv block, as repeated bigrams in text are mostly
    close; power_a = 1 is uniform). The i-th key of the kv block takes the
    i-th gap drawn and sits at position 2K + 2g;
  * inputs[t] is the key at a query position, otherwise (when
    `random_non_queries`) a uniformly random filler token;
  * targets[t] (the next token to predict after inputs[:t+1], the "lm"
    convention of `objectives.language_model`) is the bound value at a query
    position and `pad_id` everywhere else, so loss and accuracy count the
    answers only (Zoology: label -100 elsewhere).

Token-level accuracy over non-pad targets, which `language_model` already
reports, is therefore exactly Zoology's MQAR accuracy: the fraction of
queries answered correctly.

What differs from Zoology, on purpose (the distribution over queries does not):

  * The pad id 0 is never an input or a target: fillers are drawn from
    [1, V) (Zoology: [0, V)) and without `random_non_queries` the non-query
    slots are pad, which the model masks out of attention as keys. So a
    sequence is never cut short by the model's pad mask, and a real target
    can never be mistaken for an ignored one.
  * Reproducible and split-independent: each split has its own
    `np.random.default_rng([seed, split])` and only `Generator.random()`
    floats are used (integers as floor(u * n)), whereas Zoology seeds global
    numpy state (train: seed, test: seed + 10). Rows are drawn in blocks of
    `_ROWS_PER_BLOCK`, whole blocks at a time, so a smaller split is a
    prefix of a larger one with the same seed.
  * Vectorised: distinct keys/values by Floyd's algorithm (Bentley & Floyd
    1987, "Programming pearls: a sample of brilliance") over all rows at
    once, then a random order; power-law gaps without replacement by the
    Gumbel-top-k trick (Kool et al. 2019, "Stochastic Beams and Where to Find
    Them", sec. 2): the top K of log p_i - log E_i, E_i ~ Exp(1), in
    decreasing order, are distributed as K successive draws without
    replacement (Zoology's `np.random.choice(..., replace=False, p=p)`).
    100k sequences of length 256 with 16 pairs take ~1.5 s on one core.

Vocabulary: 0 `<pad>`, ids 1..V/2-1 keys ("k<id>"), ids V/2..V-1 values
("v<id>"); fillers reuse key and value ids, as in Zoology.

Cache: `<data_dir>/mqar/<key>.npz` (inputs, answer positions and answers,
targets rebuilt on load), the key naming every generation parameter plus a
short hash of them and of `GENERATOR_VERSION`; written atomically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightjax.data import cache
from lightjax.data.base import (TaskData, check_count, register,
                                 resolve_task_config)

NAME = "mqar"

# Bump when the sequences produced for a given config change, so stale caches
# are not reused (the version is part of the cache key's hash).
GENERATOR_VERSION = 1

PAD_ID = 0
SPLITS = ("train", "validation", "test")
# Each split's own random stream: default_rng([seed, _SPLIT_STREAM[split]]).
_SPLIT_STREAM = {"test": 0, "validation": 1, "train": 2}
# Rows drawn per block (part of the generator's definition: the stream's
# order depends on it, hence covered by GENERATOR_VERSION).
_ROWS_PER_BLOCK = 4096

_STORED = ("inputs", "answer_positions", "answers")
_INT_FIELDS = ("vocab_size", "seq_len", "num_kv_pairs", "num_train",
               "num_validation", "num_test", "seed")


def default_config() -> dict[str, Any]:
  """Task config fields; the defaults are Zoology's `multiquery_ar` (vocab
  8192, length 64, 4 kv pairs, power_a 0.01, random fillers, 100k train and
  3k test sequences)."""
  return dict(
      name=NAME,
      vocab_size=8192,
      seq_len=64,
      num_kv_pairs=4,
      power_a=0.01,
      random_non_queries=True,
      num_train=100_000,
      num_validation=3_000,
      num_test=3_000,
      seed=0,
  )


# ----------------------------------------------------------------- vocabulary


def key_range(vocab_size: int) -> tuple[int, int]:
  """[lo, hi) of key ids: 1..V/2-1 (0 is the pad)."""
  return 1, vocab_size // 2


def value_range(vocab_size: int) -> tuple[int, int]:
  """[lo, hi) of value ids: V/2..V-1."""
  return vocab_size // 2, vocab_size


def vocab(vocab_size: int) -> tuple[str, ...]:
  """id -> token string: "<pad>", "k<id>" for keys, "v<id>" for values."""
  split = vocab_size // 2
  return ("<pad>",) + tuple(f"k{i}" for i in range(1, split)) + tuple(
      f"v{i}" for i in range(split, vocab_size))


# ----------------------------------------------------------------- generation


def _uniform_ints(rng: np.random.Generator, shape, low: int, high: int
                  ) -> np.ndarray:
  """Uniform ints in [low, high) as floor(u * n): only `random()` is used, so
  the stream does not depend on numpy's integer algorithms."""
  return low + np.floor(rng.random(shape) * (high - low)).astype(np.int64)


def distinct_ints(rng: np.random.Generator, num_rows: int, k: int, low: int,
                  high: int) -> np.ndarray:
  """int64[num_rows, k]: per row k distinct uniform ints of [low, high), as a
  uniformly random ordered sample.

  Floyd's algorithm (Bentley & Floyd 1987) gives a uniform k-subset with k
  draws and no table of size high - low (Zoology tiles the whole key range
  per row): for j = n-k .. n-1 draw t in [0, j]; take t, or j if t is taken
  already. Its order is not uniform, so the columns are then shuffled.
  """
  n = high - low
  if not 0 <= k <= n:
    raise ValueError(f"cannot draw {k} distinct values from [{low}, {high})")
  chosen = np.zeros((num_rows, k), np.int64)
  for col, j in enumerate(range(n - k, n)):
    t = _uniform_ints(rng, num_rows, 0, j + 1)
    taken = (chosen[:, :col] == t[:, None]).any(axis=1)
    chosen[:, col] = np.where(taken, j, t)
  order = np.argsort(rng.random((num_rows, k)), axis=1, kind="stable")
  return low + np.take_along_axis(chosen, order, axis=1)


def power_law(space: int, power_a: float) -> np.ndarray:
  """P(gap = i - 1) for slots i = 1..space, proportional to i^(power_a - 1)
  (Zoology's `p = power_a * arange(1, space + 1) ** (power_a - 1)`,
  normalised)."""
  p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
  return p / p.sum()


def power_law_gaps(rng: np.random.Generator, num_rows: int, k: int,
                   space: int, power_a: float) -> np.ndarray:
  """int64[num_rows, k]: k distinct gaps of {0..space-1} per row, in the
  order k successive draws without replacement from `power_law` give them.

  Gumbel-top-k (Kool et al. 2019 sec. 2): the indices of the k largest
  log p_i - log E_i (E_i ~ Exp(1), i.e. log p_i plus Gumbel noise), in
  decreasing order, are distributed exactly as k successive weighted draws
  without replacement.
  """
  log_p = np.log(power_law(space, power_a))
  e = -np.log1p(-rng.random((num_rows, space)))  # Exp(1); u < 1, so finite
  with np.errstate(divide="ignore"):  # e == 0 (u == 0) ranks first: +inf
    score = log_p[None, :] - np.log(e)
  return np.argsort(-score, axis=1, kind="stable")[:, :k]


def generate_block(rng: np.random.Generator, num_rows: int, *,
                   vocab_size: int, seq_len: int, num_kv_pairs: int,
                   power_a: float, random_non_queries: bool):
  """`num_rows` MQAR sequences (see the module docstring).

  Returns:
    (inputs int32[num_rows, seq_len], answer_positions int64[num_rows, K],
     answers int64[num_rows, K]): the value answers[r, i] is to be predicted
    at position answer_positions[r, i], where the key it is bound to is the
    input; positions are in kv-block order, not sorted.
  """
  k = num_kv_pairs
  context = 2 * k
  keys = distinct_ints(rng, num_rows, k, *key_range(vocab_size))
  values = distinct_ints(rng, num_rows, k, *value_range(vocab_size))
  gaps = power_law_gaps(rng, num_rows, k, (seq_len - context) // 2, power_a)
  positions = context + 2 * gaps
  if random_non_queries:
    inputs = _uniform_ints(rng, (num_rows, seq_len), 1, vocab_size)
  else:
    inputs = np.full((num_rows, seq_len), PAD_ID, np.int64)
  inputs[:, 0:context:2] = keys
  inputs[:, 1:context:2] = values
  np.put_along_axis(inputs, positions, keys, axis=1)
  return inputs.astype(np.int32), positions, values


def targets_from_answers(positions: np.ndarray, answers: np.ndarray,
                         seq_len: int) -> np.ndarray:
  """int32[N, seq_len]: `answers` at `positions`, PAD_ID (ignored) elsewhere."""
  targets = np.full((positions.shape[0], seq_len), PAD_ID, np.int32)
  np.put_along_axis(targets, positions.astype(np.int64),
                    answers.astype(np.int32), axis=1)
  return targets


def generate_split(num_rows: int, *, split: str, seed: int, vocab_size: int,
                   seq_len: int, num_kv_pairs: int, power_a: float,
                   random_non_queries: bool) -> dict[str, np.ndarray]:
  """One split's first `num_rows` sequences of its stream (whole blocks are
  drawn, then cut, so a smaller split is a prefix of a larger one).

  Returns:
    {"inputs": int32[N, seq_len], "answer_positions": int64[N, K],
     "answers": int64[N, K]}.
  """
  rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
  parts = []
  for _ in range(-(-num_rows // _ROWS_PER_BLOCK)):
    parts.append(generate_block(
        rng, _ROWS_PER_BLOCK, vocab_size=vocab_size, seq_len=seq_len,
        num_kv_pairs=num_kv_pairs, power_a=power_a,
        random_non_queries=random_non_queries))
  k = num_kv_pairs
  if not parts:
    return {"inputs": np.zeros((0, seq_len), np.int32),
            "answer_positions": np.zeros((0, k), np.int64),
            "answers": np.zeros((0, k), np.int64)}
  inputs, positions, answers = (np.concatenate(a)[:num_rows]
                                for a in zip(*parts))
  return {"inputs": inputs, "answer_positions": positions, "answers": answers}


# ----------------------------------------------------------------- cache


def _generation_params(config: dict[str, Any]) -> dict[str, Any]:
  params = {k: int(config[k]) for k in _INT_FIELDS}
  params["power_a"] = float(config["power_a"])
  params["random_non_queries"] = bool(config["random_non_queries"])
  return dict(sorted(params.items()))


def cache_path(config: dict[str, Any], data_dir: str) -> str:
  """`<data_dir>/mqar/<readable params>_<hash>.npz` for a resolved config."""
  p = _generation_params(config)
  name = (f"n{p['num_train']}-{p['num_validation']}-{p['num_test']}"
          f"_v{p['vocab_size']}_len{p['seq_len']}_kv{p['num_kv_pairs']}"
          f"_a{p['power_a']:g}_r{int(p['random_non_queries'])}"
          f"_s{p['seed']}")
  return cache.npz_path(data_dir, NAME, name, _stamp(p))


def _stamp(params: dict[str, Any]) -> dict[str, Any]:
  return {"version": GENERATOR_VERSION, **params}


def generate_splits(params: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """Every split for the generation params (`_generation_params`)."""
  gen = {k: params[k] for k in ("seed", "vocab_size", "seq_len",
                                "num_kv_pairs", "power_a",
                                "random_non_queries")}
  return {split: generate_split(params[f"num_{split}"], split=split, **gen)
          for split in SPLITS}


def _compact(stored: dict[str, dict[str, np.ndarray]], vocab_size: int
             ) -> dict[str, dict[str, np.ndarray]]:
  """The splits in the dtypes the cache stores (token ids in uint16 when the
  vocabulary fits)."""
  small = np.uint16 if vocab_size <= 2**16 else np.int32
  return {split: {"inputs": s["inputs"].astype(small),
                  "answer_positions": s["answer_positions"].astype(np.int32),
                  "answers": s["answers"].astype(small)}
          for split, s in stored.items()}


def load_splits(config: dict[str, Any], data_dir: str):
  """Per split {inputs, answer_positions, answers}, cached or generated."""
  params = _generation_params(config)
  return cache.cached(
      cache_path(config, data_dir),
      lambda: _compact(generate_splits(params), params["vocab_size"]),
      splits=SPLITS, fields=_STORED, what="MQAR", stamp=_stamp(params),
      made=lambda _: f"Generated MQAR {params}")


def _check_config(config: dict[str, Any]) -> None:
  for k in _INT_FIELDS:
    v = config[k]
    if isinstance(v, bool) or int(v) != v:
      raise ValueError(f"mqar {k} must be an integer, got {v!r}")
  for k in ("num_train", "num_validation", "num_test"):  # each split used
    check_count(NAME, config, k, 1)
  check_count(NAME, config, "seed", 0)
  v, n, k = config["vocab_size"], config["seq_len"], config["num_kv_pairs"]
  if k < 1:
    raise ValueError(f"mqar num_kv_pairs must be >= 1, got {k}")
  if n % 2:
    raise ValueError(f"mqar seq_len must be even (Zoology), got {n}")
  if 4 * k > n:
    # K distinct query slots after the 2K-token kv block: (n - 2K) / 2 >= K.
    raise ValueError(f"mqar needs seq_len >= 4 * num_kv_pairs (kv block plus"
                     f" one query slot per key), got seq_len={n},"
                     f" num_kv_pairs={k}")
  lo, hi = key_range(v)
  if hi - lo < k:
    raise ValueError(f"mqar vocab_size={v} has {hi - lo} key ids (1..V/2-1),"
                     f" fewer than num_kv_pairs={k}")
  if not config["power_a"] > 0:
    raise ValueError(f"mqar power_a must be > 0, got {config['power_a']}")


@register(NAME, default_config=default_config, check_config=_check_config)
def build(task_config: Any, data_dir: str) -> TaskData:
  """Builds the MQAR task ("lm" kind): generated once per config, cached."""
  config = resolve_task_config(task_config, name=NAME)
  _check_config(config)
  seq_len = int(config["seq_len"])
  stored = load_splits(config, data_dir)
  splits = {
      split: {
          "inputs": s["inputs"].astype(np.int32),
          "targets": targets_from_answers(s["answer_positions"], s["answers"],
                                          seq_len),
      }
      for split, s in stored.items()
  }
  return TaskData(
      name=NAME,
      kind="lm",
      vocab_size=int(config["vocab_size"]),
      num_classes=0,
      max_len=seq_len,
      splits=splits,
      vocab=vocab(int(config["vocab_size"])),
      pad_id=PAD_ID,
  )
