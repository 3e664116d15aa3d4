"""Low-rank factorisation of a trained model's block projections by SVD.

Each chosen dense layer W [in, out] of every block (attention query, key,
value, out; MLP fc1, fc2) is replaced by its truncated SVD
W ~ W_r = U_r S_r V_r^T, stored as two thinner layers (a `LowRankLinear`,
model option `low_rank_ranks`):

    down [in, r] = U_r sqrt(S_r),   up [r, out] = sqrt(S_r) V_r^T   (+ W's bias)

By Eckart & Young (1936, "The approximation of one matrix by another of
lower rank") W_r is the best rank-r approximation of W in the Frobenius
(and spectral) norm, with ||W - W_r||_F^2 = sum_{i>r} s_i^2. Replacing the
weight matrices of a trained network by such approximations and then
fine-tuning to recover accuracy is Denton et al. 2014 ("Exploiting Linear
Structure Within Convolutional Networks for Efficient Evaluation", sec.
3.2, and sec. 5 on fine-tuning after approximation); plain truncated SVD of
each Transformer weight matrix followed by fine-tuning is the baseline of
Hsu et al. 2022 ("Language Model Compression with Weighted Low-Rank
Factorization", FWSVD, sec. 3), which weights the reconstruction by Fisher
information instead (not done here: every entry of W counts the same).
Splitting sqrt(S_r) onto both factors (the "balanced" factorisation) gives
them the same singular values, so neither factor dwarfs the other when the
recovery fine-tune updates both.

The rank of each matrix is chosen by one of two rules (options):
  rank    one rank r for every chosen matrix (capped at min(in, out));
  energy  per matrix, the smallest r whose squared singular values sum to at
          least this fraction of ||W||_F^2, i.e. (Eckart-Young) the smallest
          r whose relative squared error ||W - W_r||_F^2 / ||W||_F^2 is at
          most 1 - energy; matrices with a faster-decaying spectrum get
          smaller ranks.
A factorised layer holds r * (in + out) weights instead of in * out; where
that is not fewer (r >= in * out / (in + out)) the matrix stays full and the
details say so. `matrices` picks which of the six projections are
considered (default: all). The embedding table, LayerNorms, pooler and
classifier head are never factorised.

A teacher that is already low-rank is handled too: its factors are
multiplied out to W first, and the new rank is capped at the old one.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lightjax.models import weights as weights_lib
from lightjax import models
from lightjax.shrink.base import (METHODS, Context, Shrunk, build_with,
                                  model_config, params_of)

MATRICES = models.config.LOW_RANK_MATRICES


# --- the linear algebra --------------------------------------------------------------


def energy_rank(singular_values_R: np.ndarray, energy: float) -> int:
  """The smallest r with sum_{i<r} s_i^2 >= energy * sum_i s_i^2 (>= 1).

  An all-zero matrix gets r = 1 (the smallest factorisation there is).
  """
  sq_R = np.asarray(singular_values_R, np.float64) ** 2
  total = sq_R.sum()
  if total <= 0:
    return 1
  kept_R = np.cumsum(sq_R) / total
  # A hair of tolerance, so energy = 1 (or an exact boundary) is not missed
  # by the rounding of the cumulative sum.
  return int(min(np.searchsorted(kept_R, energy - 1e-12) + 1, len(sq_R)))


def factorise(kernel_IxO: np.ndarray, rank: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(down [I, r], up [r, O], singular values of W) of the balanced rank-r
  truncated SVD: down @ up is the best rank-r approximation (Eckart-Young)."""
  w_IxO = np.asarray(kernel_IxO, np.float64)
  u_IxK, s_K, vt_KxO = np.linalg.svd(w_IxO, full_matrices=False)
  root_R = np.sqrt(s_K[:rank])
  down_IxR = u_IxK[:, :rank] * root_R[None, :]
  up_RxO = root_R[:, None] * vt_KxO[:rank]
  return down_IxR.astype(np.float32), up_RxO.astype(np.float32), s_K


def saves(din: int, dout: int, rank: int) -> bool:
  """Whether two factors of rank r hold fewer weights than W [in, out]."""
  return rank * (din + dout) < din * dout


# --- the model's projections -----------------------------------------------------------


def _prefix(layer: int, name: str) -> tuple:
  return weights_lib.projection_path(layer, name)


def dense_weights(params: dict, layer: int, name: str
                  ) -> tuple[np.ndarray, np.ndarray, int]:
  """(W [in, out], bias [out], current rank; 0 = full) of one projection,
  the product of the factors where it is already low-rank."""
  p = _prefix(layer, name)
  if p + ("kernel",) in params:
    return params[p + ("kernel",)], params[p + ("bias",)], 0
  down_IxR, up_RxO = params[p + ("down", "kernel")], params[p + ("up", "kernel")]
  return down_IxR @ up_RxO, params[p + ("up", "bias")], down_IxR.shape[1]


def factorised_weights(params: dict, ranks_per_layer: list[dict[str, int]]
                       ) -> dict:
  """`params` with every projection of rank r > 0 in `ranks_per_layer`
  replaced by its balanced rank-r factors (paths `<name>/down/kernel`,
  `<name>/up/kernel`, `<name>/up/bias`) and every rank-0 one full
  (`<name>/kernel`, `<name>/bias`): the weights of the model whose
  `low_rank_ranks` is `ranks_per_layer`."""
  out = {p: v for p, v in params.items()
         if not ((layer := weights_lib.block_of(p)) is not None
                 and layer[1][:2] in weights_lib.PROJECTIONS.values())}
  for layer, ranks in enumerate(ranks_per_layer):
    for name in MATRICES:
      if _prefix(layer, name) + ("kernel",) not in params and (
          _prefix(layer, name) + ("down", "kernel") not in params):
        continue  # a shared block's later layers: one set of weights
      w_IxO, bias_O, current = dense_weights(params, layer, name)
      p, rank = _prefix(layer, name), ranks.get(name, 0)
      if rank and rank == current:  # already these factors: copied as they are
        for key in (("down", "kernel"), ("up", "kernel"), ("up", "bias")):
          out[p + key] = params[p + key]
      elif rank:
        down_IxR, up_RxO, _ = factorise(w_IxO, rank)
        out[p + ("down", "kernel")] = down_IxR
        out[p + ("up", "kernel")] = up_RxO
        out[p + ("up", "bias")] = bias_O
      else:
        out[p + ("kernel",)] = np.asarray(w_IxO, np.float32)
        out[p + ("bias",)] = bias_O
  return out


def _check_options(opts: dict[str, Any]) -> tuple[int, float, tuple[str, ...]]:
  """(rank or 0, energy or 0, matrices), each checked: one line on bad input."""
  rank, energy = opts.get("rank") or 0, opts.get("energy") or 0.0
  if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 0:
    raise ValueError(f"low_rank.rank must be a positive integer, got {rank!r}")
  if isinstance(energy, bool) or not isinstance(energy, numbers.Real) or not (
      0.0 <= energy <= 1.0):
    raise ValueError("low_rank.energy must be in (0, 1] (the fraction of each"
                     f" matrix's squared singular values kept), got {energy!r}")
  if bool(rank) == bool(energy):
    raise ValueError("low_rank needs exactly one of rank (> 0) or energy (in"
                     f" (0, 1]); got rank={rank!r}, energy={energy!r} (set the"
                     " other to 0)")
  matrices = opts.get("matrices", MATRICES)
  if isinstance(matrices, str):
    matrices = tuple(m for m in matrices.split(",") if m)
  matrices = tuple(matrices)
  unknown = [m for m in matrices if m not in MATRICES]
  if unknown or not matrices:
    raise ValueError(f"low_rank.matrices: unknown or no matrix name(s)"
                     f" {unknown or list(matrices)}; valid: {', '.join(MATRICES)}")
  return int(rank), float(energy), matrices


def choose_ranks(params: dict, num_layers: int, *, rank: int = 0,
                 energy: float = 0.0, matrices=MATRICES
                 ) -> tuple[list[dict[str, int]], dict[str, Any]]:
  """Each layer's {matrix: rank} by the rank or energy rule, and details.

  Per layer and matrix the details record the rank chosen (0 = kept full),
  the rule's rank, the fraction of ||W||_F^2 kept, and weights before and
  after; `kept_full` says why a matrix was not factorised.
  """
  ranks_per_layer, per_layer, kept_full = [], [], []
  before = after = 0
  for layer in range(num_layers):
    ranks, info = {}, {}
    for name in MATRICES:
      if _prefix(layer, name) + ("kernel",) not in params and (
          _prefix(layer, name) + ("down", "kernel") not in params):
        continue  # a shared block: layers past 0 have no weights of their own
      w_IxO, _, current = dense_weights(params, layer, name)
      din, dout = w_IxO.shape
      full_weights = current * (din + dout) if current else din * dout
      if name not in matrices:
        ranks[name] = current
        before, after = before + full_weights, after + full_weights
        continue
      if min(din, dout) == 0:  # a layer pruned to 0 heads / MLP units
        kept_full.append(f"layer {layer} {name} [{din}, {dout}] is empty;"
                         " kept full")
        ranks[name] = 0
        continue
      s_K = np.linalg.svd(np.asarray(w_IxO, np.float64), compute_uv=False)
      cap = min(din, dout, current or min(din, dout))
      r = min(rank, cap) if rank else min(energy_rank(s_K, energy), cap)
      sq_K = s_K ** 2
      kept = float(sq_K[:r].sum() / sq_K.sum()) if sq_K.sum() > 0 else 1.0
      if not saves(din, dout, r):
        kept_full.append(f"layer {layer} {name} [{din}, {dout}]: rank {r}"
                         f" would hold {r * (din + dout)} >= {din * dout}"
                         " weights; kept full")
        ranks[name], now, kept = 0, din * dout, 1.0
      else:
        ranks[name], now = r, r * (din + dout)
      info[name] = {"rank": ranks[name], "rule_rank": r,
                    "full_rank": min(din, dout), "energy_kept": kept,
                    "weights_before": full_weights, "weights_after": now}
      before, after = before + full_weights, after + now
    ranks_per_layer.append(ranks)
    per_layer.append(info)
  details = {
      "rule": f"rank {rank}" if rank else f"energy {energy}",
      "matrices": list(matrices), "layers": per_layer, "kept_full": kept_full,
      "block_weights_before": before, "block_weights_after": after,
  }
  return ranks_per_layer, details


def low_rank(teacher, ctx: Context) -> Shrunk:
  """The teacher with its chosen block projections factorised by SVD."""
  rank, energy, matrices = _check_options(ctx.options)
  cfg = ctx.teacher_cfg
  n = cfg.num_layers
  shared = models.as_model_config(cfg).share_layers
  params = params_of(teacher)
  ranks, details = choose_ranks(params, 1 if shared else n, rank=rank,
                                energy=energy, matrices=matrices)
  if shared:  # one block in every layer: the same ranks everywhere
    ranks = ranks * n
  layers = tuple(
      {"num_heads": s.num_heads, "mlp_dim": s.mlp_dim,
       "ranks": {k: v for k, v in r.items() if v}}
      for s, r in zip(models.as_model_config(cfg).layers, ranks))
  student_cfg = model_config(cfg, layers=layers)
  model = build_with(ctx, student_cfg, factorised_weights(params, ranks))
  return Shrunk(model, student_cfg, details)


METHODS.register("low_rank", low_rank)
