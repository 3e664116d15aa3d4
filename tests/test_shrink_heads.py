"""lightjax.shrink head and FFN-unit pruning (Michel et al. 2019): importance
gradients against finite differences, the pruned = masked identity, exact
parameter savings, uneven per-layer counts, save/reload in a fresh process
(ListOps and an imported BERT), the driver end to end, and bad input."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import hf, init_from, models, objectives, shrink, trainer
from lightjax.metrics.params import count_params
from lightjax.models import transformer
from lightjax.shrink import heads, importance, run
from tests.helpers import REPO, heads_of, load_config, train_tiny_listops, widths_of

E, H, D, M = 32, 4, 8, 64  # the teacher: embed, heads, head_dim, mlp_dim
BERT = os.path.join(REPO, "tests", "fixtures", "bert_tiny")


@pytest.fixture(scope="module")
def data_dir_module(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir_module):
  """A tiny 2-layer x 4-head ListOps teacher, trained a few steps."""
  return train_tiny_listops(str(tmp_path_factory.mktemp("teacher") / "run"),
                            data_dir_module, num_heads=H, head_dim=D)


def _ctx(teacher_dir, data_dir, method="prune_heads", **options):
  c = load_config(f"configs/shrink/{method}.py:tiny")
  c.data_dir, c.init_from = data_dir, teacher_dir
  source, task = run._resolve(c, [])
  opts = {**dict(c.shrink[method]), "num_examples": 64, **options}
  ctx = shrink.Context(
      config=c, options=opts, teacher_cfg=ml_collections.ConfigDict(source.model),
      task=task, vocab_size=source.vocab_size, num_classes=source.num_classes,
      max_len=source.max_len, evaluate=None)
  model, _ = init_from.load_model(teacher_dir)
  return ctx, model


def _tokens(ctx, n=16):
  return jnp.asarray(ctx.task.splits["validation"]["inputs"][:n])


def _gated(model, kept, sizes):
  """A copy of `model` with every head not in `kept[l]` gated to 0."""
  masked = nnx.clone(model)
  for block, k, h in zip(masked.backbone.blocks, kept, sizes):
    block.attn.head_gate = transformer.HeadGate(
        jnp.asarray(np.isin(np.arange(h), k), jnp.float32))
  return masked


def _zeroed_units(model, kept):
  """A copy of `model` with fc2 rows of the units not in `kept[l]` zeroed
  (= a gate of 0 on those activations)."""
  masked = nnx.clone(model)
  for block, k in zip(masked.backbone.blocks, kept):
    kernel = block.mlp.fc2.kernel
    keep = np.isin(np.arange(kernel.shape[0]), k).astype(np.float32)
    kernel[...] = kernel[...] * jnp.asarray(keep)[:, None]
  return masked


def _n(model):
  return sum(v.size for v in shrink.params_of(model).values())


# --- importance ---------------------------------------------------------------------


def test_importance_gradients_equal_finite_differences(teacher, data_dir_module):
  ctx, model = _ctx(teacher, data_dir_module)
  batch = {k: v[:3] for k, v in ctx.task.splits["train"].items()}
  head_grads, unit_grads = importance.gradient_fn(
      model, "classification", ctx.pad_id)(batch)
  assert [g.shape for g in head_grads] == [(3, H)] * 2
  assert [g.shape for g in unit_grads] == [(3, M)] * 2
  assert all(b.attn.head_gate is None for b in model.backbone.blocks)

  def loss(m, i):
    logits = m(jnp.asarray(batch["inputs"][i:i + 1]))
    return float(objectives.classification(
        logits, jnp.asarray(batch["targets"][i:i + 1]), jnp.ones(1))["loss_sum"])

  eps = 1e-2
  for layer, h, i in ((0, 1, 0), (1, 3, 2)):  # dL/dxi_h (eq. 2)
    diff = []
    for sign in (1, -1):
      gates = np.ones(H, np.float32)
      gates[h] += sign * eps
      m = nnx.clone(model)
      m.backbone.blocks[layer].attn.head_gate = transformer.HeadGate(
          jnp.asarray(gates))
      diff.append(loss(m, i))
    np.testing.assert_allclose((diff[0] - diff[1]) / (2 * eps),
                               head_grads[layer][i, h], rtol=2e-2, atol=2e-4)
  for layer, j, i in ((0, 5, 1), (1, 40, 0)):  # dL/dg_j: row j of W2 scaled
    diff = []
    for sign in (1, -1):
      m = nnx.clone(model)
      kernel = m.backbone.blocks[layer].mlp.fc2.kernel
      kernel[...] = kernel[...].at[j].multiply(1 + sign * eps)
      diff.append(loss(m, i))
    np.testing.assert_allclose((diff[0] - diff[1]) / (2 * eps),
                               unit_grads[layer][i, j], rtol=2e-2, atol=2e-4)
  # I = mean over examples of |gradient|, then l2-normalised per layer.
  raw = importance.raw_importance(model, [batch], kind="classification",
                                  pad_id=ctx.pad_id)
  np.testing.assert_allclose(raw["heads"][1],
                             np.abs(np.asarray(head_grads[1])).mean(0), rtol=1e-6)
  for s in importance.normalise_per_layer(raw["heads"] + raw["units"]):
    np.testing.assert_allclose(np.linalg.norm(s), 1.0, rtol=1e-5)


def test_global_ranking_is_uneven_and_respects_the_floor():
  scores = [np.array([.9, .8, .7, .6]), np.array([.1, .2, .95, .3])]
  assert heads.lowest_global(scores, 4, 0) == [(1, 0), (1, 1), (1, 3), (0, 3)]
  assert heads.lowest_global(scores, 4, 2) == [(1, 0), (1, 1), (0, 3), (0, 2)]
  assert heads.lowest_per_layer(scores, [1, 2]) == [(0, 3), (1, 0), (1, 1)]
  assert heads.schedule(5, 2) == [3, 2] and heads.schedule(4, 2) == [2, 2]


# --- physical pruning = masking ------------------------------------------------------


def test_pruned_heads_equal_the_teacher_with_those_heads_gated_off(
    teacher, data_dir_module):
  # fraction 3/8 removes 3 of 8 heads: the two layers cannot end even.
  ctx, model = _ctx(teacher, data_dir_module, fraction=0.375, iterations=2)
  out = heads.prune_heads(model, ctx)
  kept = out.details["kept_heads"]
  counts = tuple(len(k) for k in kept)
  assert heads_of(out.model_cfg) == tuple(counts)
  assert sum(counts) == 5 and counts[0] != counts[1]
  assert len(out.details["rounds"]) == 2  # re-scored between rounds
  assert [len(r["removed"]) for r in out.details["rounds"]] == [2, 1]
  assert [len(s) for s in out.details["rounds"][1]["scores"]] == [
      len(k) for k in out.details["rounds"][1]["kept_before"]]
  x = _tokens(ctx)
  np.testing.assert_allclose(out.model(x), _gated(model, kept, [H, H])(x),
                             atol=1e-5)
  per_head = 3 * (E * D + D) + D * E  # q/k/v columns + biases, out rows
  assert _n(model) - _n(out.model) == 3 * per_head
  assert count_params(out.model)["total"] == _n(out.model)
  # A crafted uneven cut, one layer emptied: its sublayer is out's bias.
  crafted = heads.keep_heads(model, ctx, [[0, 2, 3], []])
  assert heads_of(crafted.model_cfg) == (3, 0)
  np.testing.assert_allclose(crafted.model(x),
                             _gated(model, [[0, 2, 3], []], [H, H])(x),
                             atol=1e-5)
  assert _n(model) - _n(crafted.model) == 5 * per_head


def test_pruned_units_equal_the_teacher_with_those_fc2_rows_zeroed(
    teacher, data_dir_module):
  ctx, model = _ctx(teacher, data_dir_module, "prune_ffn", fraction=0.5,
                    iterations=2)
  out = heads.prune_ffn(model, ctx)
  kept = out.details["kept_units"]
  assert sum(len(k) for k in kept) == M  # 64 of 128 removed
  assert widths_of(out.model_cfg) == tuple(len(k) for k in kept)
  x = _tokens(ctx)
  np.testing.assert_allclose(out.model(x), _zeroed_units(model, kept)(x),
                             atol=1e-5)
  assert _n(model) - _n(out.model) == M * (E + 1 + E)  # fc1 col + bias, fc2 row
  emptied = heads.keep_units(model, ctx, [[], list(range(0, M, 3))])
  np.testing.assert_allclose(
      emptied.model(x), _zeroed_units(model, [[], list(range(0, M, 3))])(x),
      atol=1e-5)


# --- save and reload ------------------------------------------------------------------

_RELOAD = """
import sys, numpy as np, jax.numpy as jnp
from lightjax import init_from
out = {}
for name in sys.argv[2:]:
  model, source = init_from.load_model(sys.argv[1] + "/" + name)
  x = np.load(sys.argv[1] + "/inputs.npz")[name]
  out[name] = np.asarray(model(jnp.asarray(x), pad_id=source.pad_id))
  out[name + "_heads"] = np.asarray(
      [layer["num_heads"] for layer in source.model["layers"]])
np.savez(sys.argv[1] + "/reloaded.npz", **out)
"""


def test_pruned_models_reload_in_a_fresh_process(tmp_path, teacher,
                                                 data_dir_module):
  """ListOps and an imported BERT, pruned unevenly, saved with
  init_from.save_model and reloaded by another Python: identical outputs."""
  ctx, model = _ctx(teacher, data_dir_module)
  listops = heads.keep_heads(model, ctx, [[1], [0, 2, 3]])
  bert, bert_config = hf.from_pretrained(BERT)
  bert_ctx = shrink.Context(
      config=ml_collections.ConfigDict({"seed": 0, "eval_batch_size": 8}),
      options={}, teacher_cfg=bert_config.model, task=None,
      vocab_size=bert_config.hf.vocab_size,
      num_classes=bert_config.hf.num_labels, max_len=bert_config.hf.max_len,
      evaluate=None)
  pruned_bert = heads.keep_heads(bert, bert_ctx, [[0, 1, 3], [2]])
  bert_x = np.array(jax.random.randint(jax.random.key(3), (3, 12), 1,
                                       bert_config.hf.vocab_size))
  bert_x[2, 9:] = bert_config.hf.pad_token_id
  pad = bert_config.hf.pad_token_id
  np.testing.assert_allclose(
      pruned_bert.model(jnp.asarray(bert_x), pad_id=pad),
      _gated(bert, [[0, 1, 3], [2]], [4, 4])(jnp.asarray(bert_x), pad_id=pad),
      atol=1e-5)
  assert _n(pruned_bert.model) < _n(bert)
  expected, inputs = {}, {}
  for name, out, x, dims in (
      ("listops", listops, np.asarray(_tokens(ctx)),
       (ctx.vocab_size, ctx.num_classes, ctx.max_len, ctx.pad_id)),
      ("bert", pruned_bert, bert_x,
       (bert_config.hf.vocab_size, bert_config.hf.num_labels,
        bert_config.hf.max_len, pad))):
    init_from.save_model(str(tmp_path / name), out.model, out.model_cfg,
                         vocab_size=dims[0], num_classes=dims[1],
                         max_len=dims[2], pad_id=dims[3], method="prune_heads")
    inputs[name] = x
    expected[name] = np.asarray(out.model(jnp.asarray(x), pad_id=dims[3]))
  np.savez(tmp_path / "inputs.npz", **inputs)
  r = subprocess.run([sys.executable, "-c", _RELOAD, str(tmp_path), "listops",
                      "bert"], cwd=REPO, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  got = np.load(tmp_path / "reloaded.npz")
  for name in ("listops", "bert"):
    np.testing.assert_array_equal(got[name], expected[name])
  assert tuple(got["listops_heads"]) == (1, 3)
  assert tuple(got["bert_heads"]) == (3, 1)


# --- the driver ------------------------------------------------------------------------


def test_prune_heads_run_shrinks_params_flops_and_latency(tmp_path, teacher,
                                                          data_dir_module):
  c = load_config("configs/shrink/prune_heads.py:tiny")
  c.data_dir, c.init_from = data_dir_module, teacher
  c.num_train_steps = 10
  c.shrink.prune_heads.num_examples = 64
  s = run.shrink_and_evaluate(c, str(tmp_path / "ph"))
  assert s["method"] == "prune_heads"
  assert sum(s["shrink_details"]["heads_per_layer"]) == H  # half of 2 x 4
  assert s["num_params"]["total"] < s["teacher_num_params"]
  assert s["deploy"]["num_params"] < s["teacher_deploy"]["num_params"]
  assert s["deploy"]["forward_flops"] < s["teacher_deploy"]["forward_flops"]
  assert s["deploy"]["bytes"] < s["teacher_deploy"]["bytes"]
  student, source = init_from.load_model(str(tmp_path / "ph"))
  assert heads_of(source.model) == tuple(
      s["shrink_details"]["heads_per_layer"])
  # FFN pruning, scored as cut (no fine-tuning).
  c = load_config("configs/shrink/prune_ffn.py:tiny")
  c.data_dir, c.init_from, c.num_train_steps = data_dir_module, teacher, 0
  c.shrink.prune_ffn.num_examples = 64
  f = run.shrink_and_evaluate(c, str(tmp_path / "ffn"))
  assert sum(f["shrink_details"]["units_per_layer"]) == M
  assert f["num_params"]["mlp"] < f["teacher_num_params"]
  assert f["deploy"]["forward_flops"] < f["teacher_deploy"]["forward_flops"]


# --- bad input -------------------------------------------------------------------------


def _one_line_error(fn, message):
  with pytest.raises(ValueError, match=message) as err:
    fn()
  assert "\n" not in str(err.value), str(err.value)


def test_bad_input_is_one_clear_line(teacher, data_dir_module):
  ctx, model = _ctx(teacher, data_dir_module)
  for fraction in (0, 1, 1.5, -0.2):
    ctx.options = {"fraction": fraction}
    _one_line_error(lambda: heads.prune_heads(model, ctx),
                    r"prune_heads.fraction must be in \(0, 1\)")
  ctx.options = {"fraction": 0.75, "min_heads_per_layer": 2}
  _one_line_error(lambda: heads.prune_heads(model, ctx),
                  "removes 6 of 8 heads, but at most 4 can go"
                  r" \(min_heads_per_layer=2")
  ctx.options = {"fraction": 0.95}  # rounds to all 8
  _one_line_error(lambda: heads.prune_heads(model, ctx),
                  "at least one head must remain")
  ctx.options = {"heads_per_layer": (5, 1)}
  _one_line_error(lambda: heads.prune_heads(model, ctx),
                  r"heads_per_layer\[0\] = 5: layer 0 has 4 heads; keep 0..4")
  ctx.options = {"fraction": 0.5, "iterations": 0}
  _one_line_error(lambda: heads.prune_heads(model, ctx),
                  "iterations must be an integer in 1..4")
  _one_line_error(lambda: heads.keep_heads(model, ctx, [[0, 4], [1]]),
                  r"layer 0 has 4 heads \(indices 0..3\)")
  ctx.options = {"fraction": 2.0}
  _one_line_error(lambda: heads.prune_ffn(model, ctx),
                  r"prune_ffn.fraction must be in \(0, 1\)")
  # Explicit per-layer counts keep the most important heads of each layer.
  ctx.options = {"heads_per_layer": (3, 1), "iterations": 1,
                 "num_examples": 32}
  out = heads.prune_heads(model, ctx)
  assert [len(k) for k in out.details["kept_heads"]] == [3, 1]
