"""Tests for lightjax.metrics.embedding on small hand-computed cases, and the
GLUE STS-B dev reader (lightjax.data.glue.stsb_dev) on a file written here in
the GLUE distribution's format."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lightjax.data import glue
from lightjax.metrics import embedding


def _angles(degrees):
  """Unit vectors in 2-D at the given angles."""
  r = np.radians(degrees)
  return np.stack([np.cos(r), np.sin(r)], axis=1)


def test_identical_and_scaled_embeddings_agree_fully():
  t = np.random.default_rng(0).normal(size=(20, 8))
  scaled = t * np.arange(1, 21)[:, None]  # a positive scale per row
  for s in (t, scaled, jnp.asarray(t, jnp.float32)):
    assert embedding.mean_cosine(s, t) == pytest.approx(1.0, abs=1e-6)
    assert embedding.retrieval_agreement(s, t) == {"top1": 1.0, "top10": 1.0}


def test_rotation_keeps_neighbours_and_has_the_rotation_cosine():
  # Rotating every embedding by 60 degrees: cosine 0.5 to the original, but
  # every cosine between embeddings, hence every neighbour list, is kept.
  t = _angles([0, 10, 45, 100, 170, 200, 300])
  s = _angles([60, 70, 105, 160, 230, 260, 360])
  assert embedding.mean_cosine(s, t) == pytest.approx(0.5)
  assert embedding.retrieval_agreement(s, t, ks=(1, 3)) == {
      "top1": 1.0, "top3": 1.0}
  assert embedding.mean_cosine(-t, t) == pytest.approx(-1.0)


def test_orthogonal_noise_at_a_known_angle():
  rng = np.random.default_rng(1)
  t = rng.normal(size=(50, 16))
  noise = rng.normal(size=(50, 16))
  # Gram-Schmidt: noise orthogonal to each teacher row, both unit length.
  t_unit = t / np.linalg.norm(t, axis=1, keepdims=True)
  noise -= np.sum(noise * t_unit, axis=1, keepdims=True) * t_unit
  noise /= np.linalg.norm(noise, axis=1, keepdims=True)
  angle = math.radians(25)
  s = 3.0 * (math.cos(angle) * t_unit + math.sin(angle) * noise)
  assert embedding.mean_cosine(s, t) == pytest.approx(math.cos(angle))
  np.testing.assert_allclose(embedding.cosines(s, t), math.cos(angle))


def test_zero_vector_has_cosine_zero():
  t = np.array([[1.0, 0.0], [0.0, 1.0]])
  s = np.array([[0.0, 0.0], [0.0, 2.0]])
  np.testing.assert_allclose(embedding.cosines(s, t), [0.0, 1.0])
  assert embedding.mean_cosine(s, t) == pytest.approx(0.5)


def test_retrieval_agreement_hand_computed():
  # Teacher angles 0, 10, 30, 70: nearest neighbours 1, 0, 1, 2. Student
  # angles 0, 25, 30, 70: 1, 2, 1, 2 (query 1 now finds 2, 5 degrees away).
  # Two nearest: teacher [1,2] [0,2] [1,0] [2,1], student [1,2] [2,0] [1,0]
  # [2,1]: the same sets.
  t = _angles([0, 10, 30, 70])
  s = _angles([0, 25, 30, 70])
  np.testing.assert_array_equal(embedding.neighbours(t, 1)[:, 0], [1, 0, 1, 2])
  np.testing.assert_array_equal(embedding.neighbours(s, 1)[:, 0], [1, 2, 1, 2])
  assert embedding.retrieval_agreement(s, t, ks=(1, 2, 3)) == {
      "top1": 0.75, "top2": 1.0, "top3": 1.0}


def test_ties_break_towards_the_lower_index():
  e1, e2 = [1.0, 0.0], [0.0, 1.0]
  x = np.array([e1, e1, e2, e1])
  np.testing.assert_array_equal(embedding.neighbours(x, 3), [
      [1, 3, 2], [0, 3, 2], [0, 1, 3], [0, 1, 2]])
  # Permuting the dimensions of orthonormal rows: cosine 0 to the teacher,
  # yet all similarities are equal (0) in both, so the neighbours agree.
  t = np.eye(3)
  s = t[:, [1, 2, 0]]
  assert embedding.mean_cosine(s, t) == 0.0
  assert embedding.retrieval_agreement(s, t, ks=(1, 2)) == {
      "top1": 1.0, "top2": 1.0}


def test_retrieval_works_across_widths_cosine_does_not():
  t = _angles([0, 10, 30, 70])
  s = np.concatenate([t, np.zeros((4, 1))], axis=1)  # D=3 vs D=2
  assert embedding.retrieval_agreement(s, t, ks=(1,)) == {"top1": 1.0}
  with pytest.raises(ValueError, match="D=3 .* D=2"):
    embedding.mean_cosine(s, t)


def test_bad_inputs_are_refused():
  t = _angles([0, 10, 30, 70])
  with pytest.raises(ValueError, match="k=4"):
    embedding.retrieval_agreement(t, t, ks=(1, 4))  # only 3 others
  with pytest.raises(ValueError, match=">= 1"):
    embedding.retrieval_agreement(t, t, ks=(0,))
  with pytest.raises(ValueError, match="3 student and 4 teacher"):
    embedding.retrieval_agreement(t[:3], t)
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    embedding.mean_cosine(t[0], t[0])


def test_sts_spearman_hand_computed():
  a = _angles([0, 0, 0])
  b = _angles([0, 45, 90])  # cosines 1, 0.707, 0
  assert embedding.sts_spearman(a, b, [5.0, 3.0, 1.0]) == pytest.approx(1.0)
  assert embedding.sts_spearman(a, b, [1.0, 3.0, 5.0]) == pytest.approx(-1.0)
  # Tied gold scores share their mean rank: ranks (3, 2, 1) vs (2.5, 2.5, 1)
  # correlate sqrt(3) / 2.
  assert embedding.sts_spearman(a, b, [5.0, 5.0, 0.0]) == pytest.approx(
      math.sqrt(3) / 2)
  with pytest.raises(ValueError, match="3 pairs for 2 gold"):
    embedding.sts_spearman(a, b, [1.0, 2.0])


STSB_HEADER = ["index", "genre", "filename", "year", "old_index", "source1",
               "source2", "sentence1", "sentence2", "score"]


def test_stsb_dev_reader(tmp_path):
  assert glue.stsb_dev(str(tmp_path)) is None  # no STS-B here
  rows = [STSB_HEADER,
          ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none",
           "A man with a hard hat is dancing.",
           'A man wearing a "hard hat" is dancing.', "5.000"],
          ["1", "main-news", "headlines", "2013", "0001", "none", "none",
           "Three men are playing chess.", "Two men are playing chess.",
           "2.600"]]
  folder = tmp_path / "STS-B"
  folder.mkdir()
  (folder / "dev.tsv").write_text(
      "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
  a, b, scores = glue.stsb_dev(str(tmp_path))
  assert a == ["A man with a hard hat is dancing.",
               "Three men are playing chess."]
  assert b == ['A man wearing a "hard hat" is dancing.',
               "Two men are playing chess."]
  assert scores.dtype == np.float32
  np.testing.assert_allclose(scores, [5.0, 2.6])
