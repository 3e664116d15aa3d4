"""Low-rank (SVD) factorisation: the `low_rank_ranks` model option and the
`low_rank` shrink method (lightjax/shrink/lowrank.py)."""

import json
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import config_lib, init_from, models, shrink, trainer
from lightjax.metrics.params import count_params
from lightjax import hf
from lightjax.models import transformer
from lightjax.shrink import lowrank, run
from tests.helpers import heads_of, load_config, ranks_of, widths_of

DIMS = {"vocab_size": 24, "num_classes": 10, "max_len": 32}


def _model_cfg(**changes):
  """The tiny ListOps model config (embed 32, 2 heads of 16, MLP 64, 2 layers)."""
  return shrink.model_config(load_config("configs/listops.py:tiny").model,
                             **changes)


def _build(cfg, seed=0):
  return models.build_model(cfg, **DIMS, rngs=nnx.Rngs(seed))


def _random_teacher(cfg, seed=0):
  """A model whose every parameter (biases too) is random, so a weight left
  behind or put in the wrong place shows in the logits."""
  model = _build(cfg, seed)
  rng = np.random.default_rng(seed)
  weights = {p: rng.normal(0, 0.2, v.shape).astype(np.float32)
             for p, v in shrink.params_of(model).items()}
  hf.load_weights(model, weights)
  return model


def _tokens(seed=0, batch=4, length=12):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, DIMS["vocab_size"], (batch, length))
  tokens[:, -3:] = 0  # some padding
  return jnp.asarray(tokens, jnp.int32)


def _full_ranks(cfg):
  """min(in, out) for every projection of every layer."""
  typed = models.as_model_config(cfg)
  return [{name: min(shape) for name, shape in typed.matrix_shapes(
      s.num_heads, s.mlp_dim).items()} for s in typed.layers]


# --- the linear algebra ------------------------------------------------------------


def test_rank_r_factors_are_the_best_rank_r_approximation():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(24, 40))
  s = np.linalg.svd(w, compute_uv=False)
  for r in (1, 5, 12, 24):
    down, up, s_out = lowrank.factorise(w, r)
    assert down.shape == (24, r) and up.shape == (r, 40)
    np.testing.assert_allclose(s_out, s)
    # Eckart-Young: the error is the dropped singular values' energy.
    err = np.linalg.norm(w - down.astype(np.float64) @ up)
    np.testing.assert_allclose(err, np.sqrt((s[r:] ** 2).sum()), rtol=1e-5,
                               atol=1e-5)
    # Balanced: both factors carry sqrt(S_r).
    np.testing.assert_allclose(np.linalg.svd(down, compute_uv=False),
                               np.sqrt(s[:r]), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.svd(up, compute_uv=False),
                               np.sqrt(s[:r]), rtol=1e-5)


def test_energy_rule_picks_the_smallest_sufficient_rank():
  s = np.array([4.0, 3.0, 2.0, 1.0])  # squares 16, 9, 4, 1 of 30
  assert lowrank.energy_rank(s, 0.5) == 1     # 16/30 = 0.53
  assert lowrank.energy_rank(s, 16 / 30) == 1  # exactly reached
  assert lowrank.energy_rank(s, 0.6) == 2     # 25/30 = 0.83
  assert lowrank.energy_rank(s, 0.9) == 3     # 29/30 = 0.97
  assert lowrank.energy_rank(s, 1.0) == 4
  assert lowrank.energy_rank(np.zeros(3), 0.9) == 1
  assert lowrank.saves(64, 64, 31) and not lowrank.saves(64, 64, 32)


# --- the model option --------------------------------------------------------------


def test_default_option_builds_the_identical_model():
  base = _model_cfg()
  old = ml_collections.ConfigDict(base.to_dict())
  with old.unlocked():
    del old["layers"]  # a config written before the field existed
  ref = _build(old)
  ref_params = shrink.params_of(ref)
  for cfg in (base, _model_cfg(low_rank_ranks=({}, {})),
              _model_cfg(low_rank_ranks=({"query": 0}, {"fc2": 0}))):
    model = _build(cfg)
    params = shrink.params_of(model)
    assert params.keys() == ref_params.keys()
    for p in params:
      np.testing.assert_array_equal(params[p], ref_params[p])
    np.testing.assert_array_equal(np.asarray(model(_tokens())),
                                  np.asarray(ref(_tokens())))


def test_parameter_count_is_the_formula_and_groups_stay():
  ranks = ({"query": 3, "value": 5, "out": 7, "fc1": 4},
           {"key": 2, "fc2": 9})
  cfg = _model_cfg(low_rank_ranks=ranks)
  full, low = count_params(_build(_model_cfg())), count_params(_build(cfg))
  shapes = models.as_model_config(cfg).matrix_shapes(cfg.num_heads, cfg.mlp_dim)
  saved = {"attention": 0, "mlp": 0}
  for layer in ranks:
    for name, r in layer.items():
      din, dout = shapes[name]
      group = "mlp" if name.startswith("fc") else "attention"
      saved[group] += din * dout - r * (din + dout)
  assert low["attention"] == full["attention"] - saved["attention"]
  assert low["mlp"] == full["mlp"] - saved["mlp"]
  assert low["total"] == full["total"] - sum(saved.values())
  assert low["embedding"] == full["embedding"] and low["other"] == full["other"]
  paths = {"/".join(map(str, p)) for p in shrink.params_of(_build(cfg))}
  assert "backbone/blocks/0/attn/query/down/kernel" in paths
  assert "backbone/blocks/0/attn/query/up/bias" in paths
  assert "backbone/blocks/0/attn/key/kernel" in paths  # full: path unchanged


def test_option_with_per_layer_sizes_and_shared_layers():
  cfg = _model_cfg(heads_per_layer=(1, 0), mlp_dims_per_layer=(16, 64),
                   low_rank_ranks=({"query": 4, "fc1": 8}, {"fc1": 8}))
  model = _build(cfg)
  assert model.backbone.blocks[0].attn.query.down.kernel.shape == (32, 4)
  assert model.backbone.blocks[0].mlp.fc1.up.kernel.shape == (8, 16)
  assert model(_tokens()).shape == (4, 10)
  shared = _model_cfg(share_layers=True, low_rank_ranks=({"fc2": 4},) * 2)
  assert count_params(_build(shared))["per_layer"] == [
      count_params(_build(_model_cfg(num_layers=1, low_rank_ranks=(
          {"fc2": 4},))))["per_layer"][0]]


@pytest.mark.parametrize("field, message", [
    (({"qkv": 2}, {}), "unknown matrix name(s) ['qkv']; valid: query, key,"
     " value, out, fc1, fc2"),
    (({"query": 33}, {}), "exceeds min(in, out) = 32"),
    (({"fc1": -1}, {}), "must be an integer >= 0"),
    (({"fc1": 2.5}, {}), "must be an integer >= 0"),
    (({},), "has 1 entries"),
    ((3, {}), "must be a {matrix: rank} dict"),
])
def test_option_bad_values_are_one_line(field, message):
  c = load_config("configs/listops.py:tiny")
  c.model.low_rank_ranks = field
  with pytest.raises(ValueError) as e:
    config_lib.validate(c)
  assert message in str(e.value) and "\n" not in str(e.value)
  c.model.low_rank_ranks = ({"fc1": 4}, {"fc1": 2})
  c.model.share_layers = True
  with pytest.raises(ValueError, match="must be the same in every layer"):
    config_lib.validate(c)


# --- the method -----------------------------------------------------------------------


def test_full_rank_factorisation_reproduces_the_teacher(tmp_path):
  cfg = _model_cfg(heads_per_layer=(2, 1))
  teacher = _random_teacher(cfg)
  ranks = _full_ranks(cfg)
  student_cfg = shrink.model_config(cfg, layers=tuple(
      {"num_heads": h, "mlp_dim": w, "ranks": r}
      for h, w, r in zip(heads_of(cfg), widths_of(cfg), ranks)))
  student = _build(student_cfg, seed=1)
  hf.load_weights(student, lowrank.factorised_weights(
      shrink.params_of(teacher), ranks))
  np.testing.assert_allclose(np.asarray(student(_tokens())),
                             np.asarray(teacher(_tokens())), atol=1e-5)
  # Saved and reloaded through model.json (JSON: a list of dicts): the same.
  init_from.save_model(str(tmp_path / "s"), student, student_cfg, pad_id=0,
                       **DIMS)
  info = json.loads(open(tmp_path / "s" / "model.json").read())
  assert [layer["ranks"] for layer in info["model"]["layers"]] == ranks
  again, _ = init_from.load_model(str(tmp_path / "s"))
  np.testing.assert_array_equal(np.asarray(again(_tokens())),
                                np.asarray(student(_tokens())))


def _ctx(cfg, options):
  return shrink.Context(
      config=load_config("configs/listops.py:tiny"), options=options,
      teacher_cfg=cfg, task=None, evaluate=None, **DIMS)


def test_method_ranks_details_and_the_no_saving_rule():
  cfg = _model_cfg()
  teacher = _random_teacher(cfg)
  out = lowrank.low_rank(teacher, _ctx(cfg, {"rank": 12}))
  # 12 * (32 + 32) = 768 < 1024 saves; 12 * (32 + 64) = 1152 < 2048 too.
  assert ranks_of(out.model_cfg) == (dict.fromkeys(lowrank.MATRICES, 12),) * 2
  d = out.details
  assert d["layers"][0]["fc1"] == {
      "rank": 12, "rule_rank": 12, "full_rank": 32,
      "energy_kept": pytest.approx(d["layers"][0]["fc1"]["energy_kept"]),
      "weights_before": 2048, "weights_after": 1152}
  saved = d["block_weights_before"] - d["block_weights_after"]
  assert count_params(teacher)["total"] - count_params(out.model)["total"] == saved
  # rank 20 saves on fc1/fc2 ([32, 64]: 1920 < 2048) but not on q/k/v/out.
  out = lowrank.low_rank(teacher, _ctx(cfg, {"rank": 20, "matrices": (
      "query", "fc1")}))
  assert ranks_of(out.model_cfg) == ({"fc1": 20},) * 2
  assert any("layer 0 query [32, 32]: rank 20 would hold 1280 >= 1024"
             in reason for reason in out.details["kept_full"])
  # Energy: each matrix its own rank, the energy kept at least the target.
  out = lowrank.low_rank(teacher, _ctx(cfg, {"energy": 0.6}))
  for layer in out.details["layers"]:
    for info in layer.values():
      assert info["energy_kept"] >= 0.6 or info["rank"] == 0
  # Nothing saves: the student is the teacher, field () (no option at all).
  out = lowrank.low_rank(teacher, _ctx(cfg, {"rank": 32}))
  assert not any(ranks_of(out.model_cfg)) and len(out.details["kept_full"]) == 12
  np.testing.assert_allclose(np.asarray(out.model(_tokens())),
                             np.asarray(teacher(_tokens())), atol=1e-5)


def test_refactorising_a_low_rank_teacher_and_a_shared_one():
  cfg = _model_cfg(low_rank_ranks=({"fc1": 10}, {"fc1": 10}))
  teacher = _random_teacher(cfg)
  out = lowrank.low_rank(teacher, _ctx(cfg, {"rank": 20, "matrices": ("fc1",)}))
  assert ranks_of(out.model_cfg) == ({"fc1": 10},) * 2  # capped at 10
  np.testing.assert_allclose(np.asarray(out.model(_tokens())),
                             np.asarray(teacher(_tokens())), atol=1e-5)
  shared = _model_cfg(share_layers=True)
  out = lowrank.low_rank(_random_teacher(shared), _ctx(shared, {"rank": 4}))
  assert ranks_of(out.model_cfg) == (dict.fromkeys(lowrank.MATRICES, 4),) * 2
  assert len(out.details["layers"]) == 1  # the one block


@pytest.mark.parametrize("options, message", [
    ({"rank": -2}, "low_rank.rank must be a positive integer, got -2"),
    ({"rank": 0, "energy": 0.0}, "needs exactly one of rank"),
    ({"rank": 4, "energy": 0.9}, "needs exactly one of rank"),
    ({"energy": 1.5}, "low_rank.energy must be in (0, 1]"),
    ({"energy": -0.1}, "low_rank.energy must be in (0, 1]"),
    ({"rank": 4, "matrices": ("query", "ffn")},
     "unknown or no matrix name(s) ['ffn']; valid: query, key, value, out,"
     " fc1, fc2"),
])
def test_bad_options_are_one_line(options, message):
  cfg = _model_cfg()
  with pytest.raises(ValueError) as e:
    lowrank.low_rank(_build(cfg), _ctx(cfg, options))
  assert message in str(e.value) and "\n" not in str(e.value)


# --- the run -----------------------------------------------------------------------


def test_low_rank_recipe_end_to_end(tmp_path, data_dir):
  t = load_config("configs/listops.py:tiny")
  t.data_dir = data_dir
  trainer.train_and_evaluate(t, str(tmp_path / "teacher"))
  c = load_config("configs/shrink/low_rank.py:tiny")
  c.data_dir, c.init_from = data_dir, str(tmp_path / "teacher")
  s = run.shrink_and_evaluate(c, str(tmp_path / "lr"))
  assert s["method"] == "low_rank"
  assert s["num_params"]["total"] < s["teacher_num_params"]
  assert s["num_train_steps"] == c.num_train_steps > 0
  saved = json.loads(open(tmp_path / "lr" / "config.json").read())
  ranks = [layer["ranks"] for layer in saved["model"]["layers"]]
  assert len(ranks) == 2 and all(r for r in ranks)
  assert s["shrink_details"]["rule"].startswith(("rank", "energy"))
  assert os.path.exists(tmp_path / "lr" / "shrink_report.md")
  # The fine-tuned student reloads as a low-rank model.
  student, _ = init_from.load_model(str(tmp_path / "lr"))
  assert isinstance(student.backbone.blocks[0].mlp.fc1,
                    transformer.LowRankLinear)
  assert count_params(student)["total"] == s["num_params"]["total"]
