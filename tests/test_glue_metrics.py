"""Tests for the GLUE metrics against hand-computed values."""

import math

import numpy as np
import pytest

from lightjax.metrics import glue_metrics as gm

# TP = 2 (rows 0, 4), FP = 1 (row 1), FN = 1 (row 3), TN = 2 (rows 2, 5).
PRED = [1, 1, 0, 0, 1, 0]
GOLD = [1, 0, 0, 1, 1, 0]


def test_confusion_matrix_and_binary_metrics():
  c = gm.confusion_matrix(PRED, GOLD, 2)
  np.testing.assert_array_equal(c, [[2, 1], [1, 2]])  # C[true, predicted].
  assert gm.accuracy(PRED, GOLD) == pytest.approx(4 / 6)
  assert gm.accuracy_from_confusion(c) == pytest.approx(4 / 6)
  # F1 = 2TP / (2TP + FP + FN) = 4 / 6.
  assert gm.f1(PRED, GOLD) == pytest.approx(2 / 3)
  # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 3 / 9.
  assert gm.matthews_corrcoef(PRED, GOLD) == pytest.approx(1 / 3)


def test_f1_is_of_the_positive_class():
  # All predicted 1 with labels 1, 1, 0: P = 2/3, R = 1, F1 = 0.8; F1 of
  # class 0 is 0.
  assert gm.f1([1, 1, 1], [1, 1, 0]) == pytest.approx(0.8)
  assert gm.f1([1, 1, 1], [1, 1, 0], positive=0) == 0.0
  assert gm.f1([0, 0], [0, 0]) == 0.0  # No positives at all.


def test_mcc_edge_cases_and_multiclass():
  assert gm.matthews_corrcoef([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
  assert gm.matthews_corrcoef([0, 1, 0], [1, 0, 1]) == pytest.approx(-1.0)
  assert gm.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # Constant.
  # Three classes, Gorodkin's R_K by hand: C = [[2,0,0],[1,1,0],[0,1,1]],
  # s = 6, c = 4, t = (2,2,2), p = (3,2,1):
  # (6*4 - (6+4+2)) / sqrt((36 - 14)(36 - 12)) = 12 / sqrt(528).
  pred = [0, 0, 0, 1, 1, 2]
  gold = [0, 0, 1, 1, 2, 2]
  assert gm.matthews_corrcoef(pred, gold) == pytest.approx(12 / math.sqrt(528))


def test_confusion_weights_drop_padding():
  c = gm.confusion_matrix(PRED + [1, 1], GOLD + [0, 0], 2,
                          weights=[1] * 6 + [0, 0])
  np.testing.assert_array_equal(c, gm.confusion_matrix(PRED, GOLD, 2))
  with pytest.raises(ValueError, match=r"\[0, 2\)"):
    gm.confusion_matrix([2], [0], 2)


def test_streamed_confusion_equals_whole():
  rng = np.random.default_rng(0)
  pred, gold = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
  c = sum(gm.confusion_matrix(pred[i:i + 7], gold[i:i + 7], 2)
          for i in range(0, 50, 7))
  assert gm.f1_from_confusion(c) == pytest.approx(gm.f1(pred, gold))
  assert gm.mcc_from_confusion(c) == pytest.approx(
      gm.matthews_corrcoef(pred, gold))
  assert gm.accuracy_from_confusion(c) == pytest.approx(
      gm.accuracy(pred, gold))


def test_pearson_by_hand():
  # x = 1, 2, 3; y = 2, 4, 7: dx = (-1, 0, 1), dy = (-7, -1, 8) / 3,
  # r = 5 / sqrt(2 * 114 / 9) = 15 / sqrt(228).
  r = 15 / math.sqrt(228)
  assert gm.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(r)
  sums = gm.pearson_sums([1, 2], [2, 4]) + gm.pearson_sums([3], [7])
  np.testing.assert_allclose(sums, [3, 6, 13, 14, 69, 31])
  assert gm.pearson_from_sums(sums) == pytest.approx(r)
  weighted = gm.pearson_sums([1, 2, 3, 9], [2, 4, 7, -5], [1, 1, 1, 0])
  assert gm.pearson_from_sums(weighted) == pytest.approx(r)
  assert math.isnan(gm.pearson([1, 1, 1], [1, 2, 3]))
  assert math.isnan(gm.pearson_from_sums(gm.pearson_sums([2, 2], [1, 3])))


def test_rankdata_averages_ties():
  np.testing.assert_array_equal(gm.rankdata([10, 20, 20, 5]),
                                [2, 3.5, 3.5, 1])
  np.testing.assert_array_equal(gm.rankdata([3, 3, 3]), [2, 2, 2])
  np.testing.assert_array_equal(gm.rankdata([0.5, -1.0, 2.0, 0.5, 0.5]),
                                [3, 1, 5, 3, 3])


def test_spearman_by_hand():
  # Ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4): centred dx = (-1.5, 0, 0,
  # 1.5), dy = (-1.5, .5, -.5, 1.5); rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
  assert gm.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(
      math.sqrt(0.9))
  # Monotone but not linear: Spearman 1, Pearson below 1.
  x = [1.0, 2.0, 3.0, 4.0]
  y = [1.0, 8.0, 27.0, 1000.0]
  assert gm.spearman(x, y) == pytest.approx(1.0)
  assert gm.pearson(x, y) < 0.9
  assert gm.spearman(x, y[::-1]) == pytest.approx(-1.0)


def test_task_table_and_compute():
  assert set(gm.TASK_METRICS) == {
      "glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb",
      "glue_mnli", "glue_qnli", "glue_rte"}
  assert gm.TASK_METRICS["glue_cola"] == ("matthews_corrcoef",)
  assert gm.TASK_METRICS["glue_stsb"] == ("pearson", "spearman")
  assert gm.MNLI_SPLITS == {"test": "matched",
                            "test_mismatched": "mismatched"}
  out = gm.compute("glue_mrpc", PRED, GOLD)
  assert list(out) == ["f1", "accuracy"]
  assert out == pytest.approx({"f1": 2 / 3, "accuracy": 4 / 6})
  assert gm.compute("glue_cola", PRED, GOLD) == pytest.approx(
      {"matthews_corrcoef": 1 / 3})
  out = gm.compute("glue_stsb", [1, 2, 2, 3], [1, 3, 2, 4])
  assert out["spearman"] == pytest.approx(math.sqrt(0.9))
  with pytest.raises(ValueError, match="glue_rte"):
    gm.compute("glue_sts", [1], [1])


def test_task_names_match_the_data_registry():
  from lightjax.data import glue  # pylint: disable=import-outside-toplevel
  assert set(gm.TASK_METRICS) == set(glue.NAMES)
