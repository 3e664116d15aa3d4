"""How faithfully a student's sentence embeddings reproduce a teacher's.

WHY: a shrunk or distilled embedding model has no labels to be scored on;
what a user needs to know is whether it still places sentences where the
teacher did, both pointwise (cosine to the teacher's embedding, the quantity
Reimers & Gurevych 2020 distil toward with an MSE) and for the task the
embeddings serve, nearest-neighbour search. STS-B (Cer et al. 2017) adds an
absolute yardstick: Spearman's correlation of the cosine of each sentence
pair with human similarity scores, the number sentence-transformers reports
(Reimers & Gurevych 2019, "Sentence-BERT", Table 1).

Definitions (N held-out sentences; S, T the student's and teacher's
embeddings, rows s_i, t_i; cos(u, v) = u.v / (|u| |v|), 0 when either is
the zero vector):

  mean_cosine          (1/N) sum_i cos(s_i, t_i). Needs the same width D for
                       both: a student of smaller width must first be mapped
                       into the teacher's space.
  retrieval_agreement  every sentence i is a query against the N - 1 others
                       (itself excluded), ranked by cosine similarity, ties
                       broken towards the lower index, so the ranking is a
                       function of the similarities alone. With nn_k(E, i)
                       the k nearest of i under embeddings E:
                         top-k = (1/N) sum_i |nn_k(S, i) & nn_k(T, i)| / k,
                       so top-1 is the fraction of queries whose student
                       nearest neighbour is the teacher's. Only neighbour
                       indices are compared, so S and T may differ in D.
  sts_spearman         Spearman's rho between cos(a_i, b_i) and the gold
                       scores (`glue_metrics.spearman`: ties get their mean
                       rank).

All computed in float64 numpy on host arrays (jax arrays are converted).
The GLUE STS-B dev pairs are read by `lightjax.data.glue.stsb_dev`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lightjax.metrics.glue_metrics import spearman

# Queries ranked per block: bounds the [block, N] similarity matrix held.
_BLOCK = 1024


def _matrix(x, what: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ValueError(f"{what} must be [N, D] embeddings, got shape {x.shape}")
  return x


def normalize(x_NxD) -> np.ndarray:
  """Rows scaled to unit length (zero rows stay zero), float64."""
  x = _matrix(x_NxD, "embeddings")
  norm_N1 = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norm_N1 > 0, norm_N1, 1.0)


def cosines(a_NxD, b_NxD, what: str = "embeddings") -> np.ndarray:
  """cos(a_i, b_i) per row, float64[N] (0 for a zero row)."""
  a, b = _matrix(a_NxD, what), _matrix(b_NxD, what)
  if a.shape != b.shape:
    raise ValueError(
        f"{what}: shapes {a.shape} and {b.shape} differ; a cosine needs the"
        " same N rows in the same D dimensions")
  return np.sum(normalize(a) * normalize(b), axis=1)


def mean_cosine(student_NxD, teacher_NxD) -> float:
  """Mean cosine between each student embedding and the teacher's.

  Raises:
    ValueError: the shapes differ, e.g. a student of smaller width D (map
      it into the teacher's space first; `retrieval_agreement` compares
      neighbours and needs no common D).
  """
  s = _matrix(student_NxD, "student embeddings")
  t = _matrix(teacher_NxD, "teacher embeddings")
  if s.shape[1] != t.shape[1]:
    raise ValueError(
        f"student embeddings have D={s.shape[1]} and the teacher's"
        f" D={t.shape[1]}: cosine needs the same D (map the student into the"
        " teacher's space, or compare with retrieval_agreement)")
  return float(np.mean(cosines(s, t, "student vs teacher")))


def neighbours(x_NxD, k: int) -> np.ndarray:
  """int64[N, k]: each row's k most cosine-similar other rows, nearest
  first, ties to the lower index; the row itself is excluded."""
  x = normalize(x_NxD)
  n = len(x)
  if not 1 <= k <= n - 1:
    raise ValueError(f"k={k} neighbours need 1 <= k <= N - 1 = {n - 1}")
  out = np.empty((n, k), np.int64)
  for start in range(0, n, _BLOCK):
    rows = np.arange(start, min(start + _BLOCK, n))
    sim_BxN = x[rows] @ x.T
    sim_BxN[np.arange(len(rows)), rows] = -np.inf
    # A stable sort of -similarity keeps equal similarities in index order.
    out[rows] = np.argsort(-sim_BxN, axis=1, kind="stable")[:, :k]
  return out


def retrieval_agreement(student_NxD, teacher_NxD,
                        ks: Sequence[int] = (1, 10)) -> dict[str, float]:
  """{"top<k>": agreement} for each k in `ks` (module docstring).

  Args:
    student_NxD, teacher_NxD: embeddings of the same N sentences, in the
      same order; their widths may differ.
    ks: neighbour counts, each in [1, N - 1].
  """
  s = _matrix(student_NxD, "student embeddings")
  t = _matrix(teacher_NxD, "teacher embeddings")
  if len(s) != len(t):
    raise ValueError(f"{len(s)} student and {len(t)} teacher embeddings:"
                     " both must embed the same sentences")
  if not ks:
    return {}
  k_max = max(ks)
  if min(ks) < 1:
    raise ValueError(f"ks={tuple(ks)}: every k must be >= 1")
  nn_s, nn_t = neighbours(s, k_max), neighbours(t, k_max)
  out = {}
  for k in ks:
    shared = [len(np.intersect1d(a, b, assume_unique=True))
              for a, b in zip(nn_s[:, :k], nn_t[:, :k])]
    out[f"top{k}"] = float(np.mean(shared) / k)
  return out


def sts_spearman(emb_a_NxD, emb_b_NxD, gold_N) -> float:
  """Spearman's rho between cos(a_i, b_i) and the gold similarity scores."""
  cos_N = cosines(emb_a_NxD, emb_b_NxD, "sentence-pair embeddings")
  gold = np.asarray(gold_N, np.float64).ravel()
  if gold.shape != cos_N.shape:
    raise ValueError(f"{len(cos_N)} pairs for {len(gold)} gold scores")
  return spearman(cos_N, gold)
