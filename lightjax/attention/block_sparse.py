"""The block-sparse engine every sparse pattern runs on (`sparse.py`).

One machinery (`_block_sparse`) computes only the blocks a pattern keeps:
queries are cut into blocks [B, nb, bs, H, D] and each block is scored
against the keys gathered for it, under ONE softmax over the disjoint union
of the key sets the pattern's `KeySet` states (Child et al. 2019, sec. 4.2,
eq. 2-3), so the result equals dense masked attention. The why, the key-set
kinds and the weightings are in `sparse.py`'s docstring; this module is the
mechanism, that one the patterns.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lightjax.attention import dense
from lightjax.attention import sparse_patterns as patterns

WEIGHTINGS = ("softmax", "uniform_sqrt")

Rule = Callable[[jax.Array, jax.Array], jax.Array]


def _combine(logits, allowed, values, weighting):
  """Softmax (or uniform_sqrt) over the kept keys -> float32 outputs.

  Args:
    logits: [B, nb, bs, H, K] float32 scores of every key slot.
    allowed: [B or 1, nb, bs, K] bool, True = key in Omega_i.
    values: weights [B, nb, bs, H, K] -> float32 [B, nb, bs, H, D].
    weighting: "softmax" or "uniform_sqrt".
  """
  allowed = allowed[..., None, :]
  if weighting == "uniform_sqrt":
    count = allowed.sum(-1, keepdims=True, dtype=jnp.float32)
    out = values(jnp.broadcast_to(allowed, logits.shape))
    return out * jnp.where(count > 0, jax.lax.rsqrt(jnp.maximum(count, 1.0)),
                           0.0)
  return values(dense.masked_softmax(logits, allowed))


def _decode_row(q_Bx1xHxD, k_BxSxHxD, v_BxSxHxD, allowed_S, weighting):
  """One query against S cached keys, `allowed_S` of them in Omega_i.

  The parallel kernel's arithmetic (float32 scores scaled by 1 / sqrt(d),
  `_combine`) on a single row, so decoding equals the causal forward.
  """
  d = q_Bx1xHxD.shape[-1]
  logits_Bx1x1xHxS = jnp.einsum(
      "bqhd,bshd->bqhs", q_Bx1xHxD, k_BxSxHxD.astype(q_Bx1xHxD.dtype),
      preferred_element_type=jnp.float32)[:, None] * (1.0 / math.sqrt(d))
  allowed_1x1x1xS = allowed_S[None, None, None, :]

  def values(w_Bx1x1xHxS):
    return jnp.einsum("bnqhs,bshd->bnqhd",
                      w_Bx1x1xHxS.astype(q_Bx1xHxD.dtype),
                      v_BxSxHxD.astype(q_Bx1xHxD.dtype),
                      preferred_element_type=jnp.float32)

  out_Bx1x1xHxD = _combine(logits_Bx1x1xHxS, allowed_1x1x1xS, values,
                           weighting)
  return out_Bx1x1xHxD[:, 0].astype(q_Bx1xHxD.dtype)


def _take_blocks(x_BxNb: jax.Array, static_table: np.ndarray,
                 random_table: jax.Array | None) -> jax.Array:
  """x[:, table] -> [B, nb, slots, ...] (x: [B, nb, ...]), slices if static.

  A window column (block i + o for every i) is x shifted by o blocks and a
  global column is one block broadcast: no gather, and their gradients are
  slices and pads rather than scatter-adds. Out-of-range slots read zeros
  (they are masked). Only the traced random table is gathered.
  """
  nb = x_BxNb.shape[1]
  rows = np.arange(nb)
  cols = []
  for col in np.asarray(static_table).T:
    used = (col >= 0) & (col < nb)
    shift = (col - rows)[used]
    if used.any() and (shift == shift[0]).all():
      o = int(shift[0])
      pad = [(0, 0)] * x_BxNb.ndim
      pad[1] = (max(-o, 0), max(o, 0))
      cols.append(jax.lax.slice_in_dim(jnp.pad(x_BxNb, pad), max(o, 0),
                                       max(o, 0) + nb, axis=1))
    elif used.any() and (col[used] == col[used][0]).all():
      cols.append(jnp.broadcast_to(x_BxNb[:, col[used][:1]],
                                   x_BxNb.shape))
    else:
      cols.append(jnp.take(x_BxNb, np.clip(col, 0, nb - 1), axis=1))
  if random_table is not None:
    gathered = jnp.take(x_BxNb, jnp.clip(random_table, 0, nb - 1), axis=1)
    cols.extend(jnp.moveaxis(gathered, 2, 0))
  return jnp.stack(cols, axis=2)


@dataclasses.dataclass(frozen=True, eq=False)
class KeySet:
  """One pattern's Omega_i in block form: the key sets `_block_sparse` joins
  under one softmax (module docstring). Each pattern function builds one.

  A rule(q_pos, k_pos) -> keep is elementwise over absolute int positions
  (broadcastable shapes).

  Attributes:
    block_size: query block size bs (the length is padded to nb * bs; pads
      masked).
    block_table: static numpy int [nb, slots] key blocks per query block;
      -1 / out of range = empty slot. Columns that are a shifted window
      (block i + o) or one fixed block are read with slices, not gathers.
    random_table: optional traced int [nb, r] key blocks appended to
      block_table and read with a gather (BigBird's random blocks). A block
      listed twice in a row (both tables) is counted once.
    block_rule: optional rule applied inside the gathered blocks.
    shared_keys: int [P] key positions added to every query block.
    shared_rule: optional rule for the shared keys.
    same_offset: add keys j with j = i (mod bs) from every block.
    global_rows: the first R queries attend to all keys instead.
  """
  block_size: int
  block_table: np.ndarray | None = None
  random_table: jax.Array | None = None
  block_rule: Rule | None = None
  shared_keys: np.ndarray | None = None
  shared_rule: Rule | None = None
  same_offset: bool = False
  global_rows: int = 0


class _Blocks(NamedTuple):
  """q, k, v padded to nb * bs and cut into query blocks, and which keys
  are real (inside the length and the key-padding mask)."""
  q_BxNpxHxD: jax.Array
  k_BxNpxHxD: jax.Array
  v_BxNpxHxD: jax.Array
  q_BxNbxBsxHxD: jax.Array
  k_BxNbxBsxHxD: jax.Array
  v_BxNbxBsxHxD: jax.Array
  valid_BxNp: jax.Array
  valid_BxNbxBs: jax.Array
  qpos_NbxBsx1: jax.Array


def _cut_into_blocks(q, k, v, mask, bs: int) -> _Blocks:
  b_, n, h, d = q.shape
  nb = patterns.num_blocks(n, bs)
  n_pad = nb * bs
  pad = ((0, 0), (0, n_pad - n), (0, 0), (0, 0))
  q_p, k_p, v_p = (jnp.pad(x, pad) for x in (q, k, v))
  valid_BxNp = jnp.arange(n_pad)[None] < n
  if mask is not None:
    valid_BxNp &= jnp.pad(mask.astype(bool), ((0, 0), (0, n_pad - n)))
  return _Blocks(
      q_p, k_p, v_p, q_p.reshape(b_, nb, bs, h, d),
      k_p.reshape(b_, nb, bs, h, d), v_p.reshape(b_, nb, bs, h, d),
      valid_BxNp, valid_BxNp.reshape(-1, nb, bs),
      jnp.arange(n_pad).reshape(nb, bs, 1))


def _keep(ok, rule: Rule | None, qpos, kpos, causal: bool):
  """`ok` & the rule (if any) & j <= i (if causal)."""
  if rule is not None:
    ok = ok & rule(qpos, kpos)
  if causal:
    ok = ok & (kpos <= qpos)
  return ok


def _table_keys(x: _Blocks, keys: KeySet, causal: bool):
  """The key blocks of the block (+ random) table, per query block:
  (k, v [B, nb, K, H, D], allowed [nb, bs, K], real [B, nb, K])."""
  b_, nb, bs, h, d = x.k_BxNbxBsxHxD.shape
  table = jnp.asarray(keys.block_table, jnp.int32)
  if keys.random_table is not None:
    table = jnp.concatenate([table, keys.random_table.astype(jnp.int32)],
                            axis=1)
  slots = table.shape[1]
  keep = (table >= 0) & (table < nb)
  earlier = np.tril(np.ones((slots, slots), bool), -1)
  keep &= ~jnp.any((table[:, :, None] == table[:, None, :]) & earlier[None],
                   -1)
  table = jnp.clip(table, 0, nb - 1)
  kk = slots * bs
  take = functools.partial(_take_blocks, static_table=keys.block_table,
                           random_table=keys.random_table)
  kpos_Nbx1xK = (table[:, :, None] * bs
                 + jnp.arange(bs)[None, None, :]).reshape(nb, 1, kk)
  ok = _keep(jnp.repeat(keep, bs, axis=1)[:, None, :], keys.block_rule,
             x.qpos_NbxBsx1, kpos_Nbx1xK, causal)
  return (take(x.k_BxNbxBsxHxD).reshape(b_, nb, kk, h, d),
          take(x.v_BxNbxBsxHxD).reshape(b_, nb, kk, h, d),
          jnp.broadcast_to(ok, (nb, bs, kk)),
          take(x.valid_BxNbxBs).reshape(-1, nb, kk))


def _shared_keys(x: _Blocks, keys: KeySet, causal: bool):
  """The shared key positions, the same for every query block: (k, v
  [B, nb, P, H, D], allowed [nb, bs, P], real [B, nb, P])."""
  b_, nb, bs, h, d = x.k_BxNbxBsxHxD.shape
  kpos_P = np.asarray(keys.shared_keys, np.int32)
  p = len(kpos_P)
  ok = _keep(jnp.ones((1, 1, p), bool), keys.shared_rule, x.qpos_NbxBsx1,
             jnp.asarray(kpos_P)[None, None, :], causal)
  return (jnp.broadcast_to(x.k_BxNpxHxD[:, None, kpos_P], (b_, nb, p, h, d)),
          jnp.broadcast_to(x.v_BxNpxHxD[:, None, kpos_P], (b_, nb, p, h, d)),
          jnp.broadcast_to(ok, (nb, bs, p)),
          jnp.broadcast_to(x.valid_BxNp[:, None, kpos_P],
                           (x.valid_BxNp.shape[0], nb, p)))


def _gathered_keys(x: _Blocks, keys: KeySet, causal: bool):
  """Per query block, its table's blocks then the shared keys, concatenated
  into one set (one score matmul): k, v [B, nb, K, H, D] and allowed
  [B, nb, bs, K] (the rules, causality and the real keys)."""
  parts = []
  if keys.block_table is not None:
    parts.append(_table_keys(x, keys, causal))
  if keys.shared_keys is not None and len(keys.shared_keys):
    parts.append(_shared_keys(x, keys, causal))
  ks, vs, allowed, kvalid = zip(*parts)
  return (jnp.concatenate(ks, axis=2), jnp.concatenate(vs, axis=2),
          jnp.concatenate(allowed, axis=-1)[None]
          & jnp.concatenate(kvalid, axis=-1)[:, :, None, :])


def _same_offset_keys(x: _Blocks, causal: bool, scale: float):
  """Key block m', same in-block offset c as the query: scores
  [B, nb, bs, H, nb] and allowed [B, nb, bs, nb], read in the [nb, bs]
  layout with c as a batch axis."""
  nb, bs = x.valid_BxNbxBs.shape[1:]
  kpos_1xBsxNb = (jnp.arange(nb)[None, None, :] * bs
                  + jnp.arange(bs)[None, :, None])
  ok = _keep(jnp.ones((1, bs, nb), bool), None, x.qpos_NbxBsx1, kpos_1xBsxNb,
             causal)
  ok = ok[None] & jnp.swapaxes(x.valid_BxNbxBs, 1, 2)[:, None]  # [B,nb,bs,nb]
  logits_BxNbxBsxHxNb = jnp.einsum(
      "bmchd,bnchd->bmchn", x.q_BxNbxBsxHxD, x.k_BxNbxBsxHxD,
      preferred_element_type=jnp.float32) * scale
  return logits_BxNbxBsxHxNb, ok


def _global_rows(x: _Blocks, r: int, causal: bool, weighting: str,
                 scale: float):
  """Dense rows: the first R queries see every key -> float32 [B, R, H, D]."""
  n_pad = x.valid_BxNp.shape[1]
  allowed_Bx1xRxNp = jnp.broadcast_to(x.valid_BxNp[:, None, None, :],
                                      (x.valid_BxNp.shape[0], 1, r, n_pad))
  if causal:
    allowed_Bx1xRxNp = allowed_Bx1xRxNp & jnp.tril(
        jnp.ones((r, n_pad), bool))[None, None]
  v_BxNpxHxD = x.v_BxNpxHxD
  return _combine(
      jnp.einsum("brhd,bkhd->brhk", x.q_BxNpxHxD[:, :r], x.k_BxNpxHxD,
                 preferred_element_type=jnp.float32)[:, None] * scale,
      allowed_Bx1xRxNp,
      lambda w: jnp.einsum("bnrhk,bkhd->bnrhd", w.astype(v_BxNpxHxD.dtype),
                           v_BxNpxHxD, preferred_element_type=jnp.float32),
      weighting)[:, 0]


def _block_sparse(q_BxLxHxD: jax.Array, k_BxLxHxD: jax.Array,
                  v_BxLxHxD: jax.Array, keys: KeySet, *,
                  mask: jax.Array | None, causal: bool,
                  weighting: str) -> jax.Array:
  """The shared machinery: attention over the union of `keys`' key sets.

  Args:
    q_BxLxHxD, k_BxLxHxD, v_BxLxHxD: self-attention (L need not divide by
      the block size).
    keys: the pattern's key sets (`KeySet`).
    mask: optional boolean [B, L] key-padding mask, True = real token.
    causal: keep only keys j <= i everywhere.
    weighting: "softmax" or "uniform_sqrt".
  Returns:
    [B, L, H, D] in q's dtype.
  """
  if weighting not in WEIGHTINGS:
    raise ValueError(f"unknown sparse weighting {weighting!r}; valid:"
                     f" {', '.join(WEIGHTINGS)}")
  n = q_BxLxHxD.shape[1]
  if k_BxLxHxD.shape[1] != n or v_BxLxHxD.shape[1] != n:
    raise ValueError("sparse patterns are self-attention: q, k, v need one"
                     f" length, got {n}, {k_BxLxHxD.shape[1]},"
                     f" {v_BxLxHxD.shape[1]}")
  b_, _, h, d = q_BxLxHxD.shape
  x = _cut_into_blocks(q_BxLxHxD, k_BxLxHxD, v_BxLxHxD, mask, keys.block_size)
  scale = 1.0 / math.sqrt(d)
  k_BxNbxKxHxD, v_BxNbxKxHxD, allowed_BxNbxBsxK = _gathered_keys(x, keys,
                                                                 causal)
  logits_BxNbxBsxHxK = jnp.einsum(
      "bnqhd,bnkhd->bnqhk", x.q_BxNbxBsxHxD, k_BxNbxKxHxD,
      preferred_element_type=jnp.float32) * scale
  n_gathered = k_BxNbxKxHxD.shape[2]
  if keys.same_offset:
    logits_BxNbxBsxHxNb, ok = _same_offset_keys(x, causal, scale)
    logits_BxNbxBsxHxK = jnp.concatenate(
        [logits_BxNbxBsxHxK, logits_BxNbxBsxHxNb], axis=-1)
    allowed_BxNbxBsxK = jnp.concatenate(
        [allowed_BxNbxBsxK, jnp.broadcast_to(
            ok, allowed_BxNbxBsxK.shape[:3] + ok.shape[-1:])], axis=-1)
  dtype = v_BxLxHxD.dtype

  def values(w_BxNbxBsxHxK):
    w = w_BxNbxBsxHxK.astype(dtype)
    out = jnp.einsum("bnqhk,bnkhd->bnqhd", w[..., :n_gathered], v_BxNbxKxHxD,
                     preferred_element_type=jnp.float32)
    if keys.same_offset:
      out += jnp.einsum("bmchn,bnchd->bmchd", w[..., n_gathered:],
                        x.v_BxNbxBsxHxD, preferred_element_type=jnp.float32)
    return out

  out = _combine(logits_BxNbxBsxHxK, allowed_BxNbxBsxK, values, weighting)
  out_BxLxHxD = out.reshape(b_, -1, h, d)[:, :n]
  if keys.global_rows:
    r = keys.global_rows
    out_BxLxHxD = jnp.concatenate(
        [_global_rows(x, r, causal, weighting, scale), out_BxLxHxD[:, r:]],
        axis=1)
  return out_BxLxHxD.astype(q_BxLxHxD.dtype)
