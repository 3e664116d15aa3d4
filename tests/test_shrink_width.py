"""lightjax.shrink width pruning (Minitron) and activation importance: the
exact symmetries width slicing must keep (a permuted residual stream, a
duplicated one cut back), the student's size, zero-output heads / units /
channels scored 0 and pruned first, block importance against layer
contribution, chaining with head and unit pruning, every attention
variant, and one run that saves, reloads and exports."""

import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import attention, data, export, hf, init_from, models, shrink
from lightjax.metrics.params import count_params
from lightjax.models import weights as weights_lib
from lightjax.shrink import heads, importance, layers, run, width
from tests.helpers import REPO, load_config, set_fields, write_st_dir

V, C, L = 20, 3, 16  # vocabulary, classes, max_len of the in-process models
PRE_LN = {"embed_dim": 16, "num_heads": 2, "head_dim": 4, "mlp_dim": 24,
          "num_layers": 2, "classifier_hidden_dim": 8}
# BERT's layout (post-LN, embedding LayerNorm, segments, pooler, [CLS] at
# position 0) with ALBERT's factorised table, uneven heads (one layer
# emptied) and low-rank projections: every residual-touching parameter kind.
BERT = {**models.config.bert_layout(activation="gelu"), **PRE_LN,
        "embed_factor_dim": 6,
        "layers": ({"num_heads": 2, "mlp_dim": 24, "ranks": {"query": 3}},
                   {"num_heads": 0, "mlp_dim": 10, "ranks": {"fc2": 4}})}


def _ctx(model_fields, n=24, seed=0):
  """A Context for a freshly built model (no run): its config, and a task
  of `n` random sequences (padded tails) to score on."""
  cfg = ml_collections.ConfigDict(models.ModelConfig.from_dict(
      {**PRE_LN, "dropout_rate": 0.0, **model_fields}).to_dict())
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, V, (n, L - 2)).astype(np.int32)
  tokens[::3, 9:] = 0
  split = {"inputs": tokens, "targets": rng.integers(0, C, n).astype(np.int32)}
  task = types.SimpleNamespace(splits={"train": split}, pad_id=0,
                               kind="classification")
  return shrink.Context(
      config=ml_collections.ConfigDict({"seed": seed, "eval_batch_size": 8}),
      options={}, teacher_cfg=cfg, task=task, vocab_size=V, num_classes=C,
      max_len=L, evaluate=None)


# Jitted: one compilation per model structure (eager op-by-op dispatch of
# the sparse kernels costs seconds on a CPU).
_forward = nnx.jit(lambda model, tokens_BxL: model(tokens_BxL, pad_id=0))


def _logits(model, ctx):
  tokens = ctx.task.splits["train"]["inputs"][:6]
  return np.asarray(_forward(model, jnp.asarray(tokens)))


def _with_cfg(ctx, cfg):
  """`ctx` for a teacher of config.model `cfg` (a student of an earlier
  step, as a chained shrink run sees it)."""
  return shrink.Context(**{**vars(ctx), "teacher_cfg": cfg})


# --- exact symmetries --------------------------------------------------------------


def _doubled(teacher, ctx):
  """A model of twice the width computing exactly what `teacher` computes:
  every residual dimension duplicated where a parameter writes into the
  stream (embeddings, biases, LayerNorms, kernel columns) and zero-padded
  where it reads from it (kernel rows). Every LayerNorm then sees each
  value twice, which keeps its mean and variance."""
  axes = shrink.axes_of(teacher)
  weights = {}
  for path, w in shrink.params_of(teacher).items():
    for dim, axis in enumerate(axes[path]):
      if axis in width.RESIDUAL_AXES:
        reads = path[-1] == "kernel" and dim == 0
        w = np.concatenate([w, np.zeros_like(w) if reads else w], axis=dim)
    weights[path] = w
  cfg = shrink.model_config(ctx.teacher_cfg, embed_dim=32)
  return shrink.build_with(ctx, cfg, weights), _with_cfg(ctx, cfg)


@pytest.mark.parametrize("layout", ["pre_ln", "bert"])
def test_width_slicing_keeps_the_exact_symmetries(layout):
  """(1) Keeping every channel in another order permutes every residual
  dimension consistently; LayerNorm's statistics do not depend on the
  order, so the outputs are the teacher's. (2) Cutting the copies off a
  duplicated stream (`_doubled`) gives back the narrow model, weight for
  weight. (Removing real channels changes every LayerNorm: not exact.)"""
  ctx = _ctx({} if layout == "pre_ln" else BERT)
  teacher = ctx.build(ctx.teacher_cfg)
  want = _logits(teacher, ctx)
  perm = np.random.default_rng(1).permutation(16).tolist()
  out = width.keep_channels(teacher, ctx, perm)
  assert out.model_cfg.embed_dim == 16
  np.testing.assert_allclose(_logits(out.model, ctx), want, atol=1e-5)
  query = "query/down/kernel" if layout == "bert" else "query/kernel"
  path = ("backbone", "blocks", 0, "attn", *query.split("/"))
  np.testing.assert_array_equal(shrink.params_of(out.model)[path],
                                shrink.params_of(teacher)[path][perm])
  wide, wide_ctx = _doubled(teacher, ctx)
  np.testing.assert_allclose(_logits(wide, ctx), want, atol=1e-5)
  cut = width.keep_channels(wide, wide_ctx, range(16))
  got, expected = shrink.params_of(cut.model), shrink.params_of(teacher)
  assert got.keys() == expected.keys()
  for path in expected:
    np.testing.assert_array_equal(got[path], expected[path])


# --- the student ---------------------------------------------------------------------


def test_student_has_the_narrower_width_and_exact_parameter_count():
  ctx = _ctx({})
  teacher = ctx.build(ctx.teacher_cfg)
  n, e, h, m, hidden = 6, 16, 2 * 4, 24, 8
  out = width.keep_channels(teacher, ctx, [i for i in range(e) if i % 3])
  assert out.model_cfg.embed_dim == e - n and out.model_cfg.head_dim == 4
  # Per channel: a token and a position table column, the cls vector; per
  # layer q/k/v rows, an out column and bias, ln1/ln2, an fc1 row, an fc2
  # column and bias; the final LayerNorm; a row of the classifier's hidden.
  per_channel = V + (L + 1) + 1 + 2 * (3 * h + h + 1 + 4 + m + m + 1) + 2 + hidden
  assert (count_params(teacher)["total"] - count_params(out.model)["total"]
          == n * per_channel)
  assert out.model.backbone.blocks[1].mlp.fc1.kernel.shape == (e - n, m)
  assert out.model.head_hidden.kernel.shape == (e - n, hidden)


def test_bad_width_input_is_one_line():
  ctx = _ctx({})
  teacher = ctx.build(ctx.teacher_cfg)
  for options, message in (
      ({"embed_dim": 16}, r"embed_dim must be an integer in 1..15"),
      ({"fraction": 1.0}, r"prune_width.fraction must be in \(0, 1\)"),
      ({"fraction": 0.01}, r"removes 0 of 16 channels")):
    ctx.options = options
    with pytest.raises(ValueError, match=message) as err:
      width.prune_width(teacher, ctx)
    assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="at least one distinct index"):
    width.keep_channels(teacher, ctx, [0, 0, 3])
  low_rank = _ctx(BERT)
  with pytest.raises(ValueError, match=r"prune_width to embed_dim 2: .*exceeds"):
    width.keep_channels(low_rank.build(low_rank.teacher_cfg), low_rank, [0, 1])
  sinusoidal = _ctx({"pos_embedding": "sinusoidal"})
  with pytest.raises(ValueError, match="sinusoidal"):
    width.keep_channels(sinusoidal.build(sinusoidal.teacher_cfg), sinusoidal,
                        [0, 1])


# --- activation importance -----------------------------------------------------------


def _silenced(ctx):
  """The teacher of `ctx` with layer 0's head 1 (its value columns), layer
  1's MLP unit 5 (its fc1 column) and residual channel 7 (every
  LayerNorm's scale and bias) made to output zeros."""
  model = ctx.build(ctx.teacher_cfg)
  value = model.backbone.blocks[0].attn.value
  value.kernel[...] = value.kernel[...].at[:, 4:8].set(0.0)
  value.bias[...] = value.bias[...].at[4:8].set(0.0)
  fc1 = model.backbone.blocks[1].mlp.fc1
  fc1.kernel[...] = fc1.kernel[...].at[:, 5].set(0.0)
  fc1.bias[...] = fc1.bias[...].at[5].set(0.0)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.LayerNorm):
      module.scale[...] = module.scale[...].at[7].set(0.0)
      module.bias[...] = module.bias[...].at[7].set(0.0)
  return model


def test_silent_heads_units_and_channels_score_zero_and_go_first():
  ctx = _ctx({"pool": "mean"}, n=20)
  model = _silenced(ctx)
  raw = importance.raw_activation_importance(
      model, ctx.batches("train", 20), pad_id=0)
  assert raw["num_examples"] == 20  # 8 + 8 + 4 (padded to 8, not counted)
  whole = importance.raw_activation_importance(
      model, ctx.batches("train", 20, batch_size=20), pad_id=0)
  for key in ("heads", "units"):
    for a, b in zip(raw[key], whole[key]):
      np.testing.assert_allclose(a, b, rtol=1e-5)
  np.testing.assert_allclose(raw["channels"], whole["channels"], rtol=1e-5)
  assert raw["heads"][0][1] == 0 and raw["heads"][0][0] > 0
  assert raw["units"][1][5] == 0 and np.all(np.delete(raw["units"][1], 5) > 0)
  assert raw["channels"][7] == 0 and np.all(np.delete(raw["channels"], 7) > 0)
  # Block importance is 1 - the input/output similarity layers.py measures.
  np.testing.assert_allclose(
      raw["blocks"], 1 - layers.layer_contribution(model, ctx, 20), atol=1e-5)
  ctx.options = {"heads_per_layer": (1, 2), "importance": "activation",
                 "compare_importance": True, "num_examples": 20}
  out = heads.prune_heads(model, ctx)
  assert out.details["kept_heads"] == [[0], [0, 1]]
  agree = out.details["importance_agreement"]
  assert agree["against"] == "gradient" and -1 <= agree["spearman"] <= 1
  ctx.options = {"embed_dim": 15, "num_examples": 20}
  out = width.prune_width(model, ctx)
  assert out.details["removed_channels"] == [7]
  assert len(out.details["channel_scores"]) == 16
  ctx.options = {"strategy": "block_importance", "num_drop": 1,
                 "num_examples": 20}
  dropped = layers.drop_layers(model, ctx).details
  assert dropped["dropped_layers"] == [int(np.argmin(raw["blocks"]))]
  with pytest.raises(ValueError, match="valid: gradient, activation"):
    ctx.options = {"fraction": 0.5, "importance": "weights"}
    heads.prune_heads(model, ctx)


def test_agreement_of_two_rankings():
  a = [np.array([0.1, 0.5]), np.array([0.2, 0.9, 0.3])]
  assert importance.agreement(a, a, 2) == {"spearman": 1.0, "count": 2,
                                           "overlap": 1.0}
  b = [np.array([0.9, 0.5]), np.array([0.2, 0.1, 0.3])]  # lowest: 3, 2
  out = importance.agreement(a, b, 2)
  assert out["overlap"] == 0.5 and out["spearman"] < 1


# --- chaining -----------------------------------------------------------------------


def test_width_and_head_unit_pruning_chain_in_either_order():
  """Width slices the residual dimensions, head and unit pruning their
  own: the cuts commute, so both orders give the same weights."""
  ctx = _ctx({})
  teacher = ctx.build(ctx.teacher_cfg)
  kept_heads, kept_units = [[1], [0, 1]], [list(range(0, 24, 2)), [3]]
  channels = [0, 2, 3, 5, 8, 9, 11, 12, 14, 15]
  a = heads.keep_heads(teacher, ctx, kept_heads)
  a = heads.keep_units(a.model, _with_cfg(ctx, a.model_cfg), kept_units)
  a = width.keep_channels(a.model, _with_cfg(ctx, a.model_cfg), channels)
  b = width.keep_channels(teacher, ctx, channels)
  b = heads.keep_heads(b.model, _with_cfg(ctx, b.model_cfg), kept_heads)
  b = heads.keep_units(b.model, _with_cfg(ctx, b.model_cfg), kept_units)
  assert a.model_cfg.to_dict() == b.model_cfg.to_dict()
  assert [(s["num_heads"], s["mlp_dim"]) for s in a.model_cfg.layers] == [
      (1, 12), (2, 1)] and a.model_cfg.embed_dim == 10
  got, want = shrink.params_of(a.model), shrink.params_of(b.model)
  for path in want:
    np.testing.assert_array_equal(got[path], want[path])


# --- every attention variant ----------------------------------------------------------

SMALL_BLOCKS = {"bigbird": {"block_size": 8},
                "longformer": {"window": 8, "block_size": 8},
                "linformer": {"proj_len": 8}, "performer": {"num_features": 8}}


def test_every_attention_variant_runs_after_width_pruning():
  """No variant has a parameter of the residual width, so each keeps its
  own (Linformer's E/F, Performer's features) and runs narrower."""
  for name in attention.names():
    options = {**attention.check_options(name, {}),
               **SMALL_BLOCKS.get(name, {})}
    ctx = _ctx({"attention": {"name": name, name: options}, "num_layers": 1})
    teacher = ctx.build(ctx.teacher_cfg)
    out = width.keep_channels(teacher, ctx, range(0, 16, 2))
    logits = _logits(out.model, ctx)
    assert logits.shape == (6, C) and np.isfinite(logits).all(), name
    kernel = {k: v.shape for k, v in shrink.params_of(teacher).items()
              if "kernel" in k[4:5]}
    assert kernel == {k: v.shape for k, v in shrink.params_of(
        out.model).items() if "kernel" in k[4:5]}, name


# --- a sentence encoder: projected back into the teacher's space --------------------


def _surgery_ctx(model_cfg, config):
  """A teacher config and a builder: all `keep_*` need outside a run."""
  return types.SimpleNamespace(
      teacher_cfg=model_cfg, build=lambda c, seed=None: models.build_model(
          c, vocab_size=config.hf.vocab_size, num_classes=0,
          max_len=config.hf.max_len, rngs=nnx.Rngs(0)))


def _projection(model):
  return {name: np.asarray(getattr(model.projection, name)[...])
          for name in ("kernel", "bias")}


def test_width_pruned_sentence_encoder_embeds_in_the_teachers_space(tmp_path):
  """The tiny BERT as a sentence encoder (32 wide, no normalisation), 24
  channels kept: the student gets the selection matrix as a projection
  24 -> 32, so its output is its own pooled vector on the kept channels
  and exactly 0 on the removed ones. Keeping all 32 in another order gives
  the teacher's embeddings. Pruned again, the projection loses rows (no
  second one); head pruning leaves it; it saves back and reads in again."""
  d = write_st_dir(tmp_path / "st")
  teacher, config = hf.from_pretrained(d, normalize=False)
  ctx = _surgery_ctx(config.model, config)
  tokens = jnp.asarray(np.load(f"{REPO}/tests/fixtures/bert_tiny/"
                               "expected.npz")["tokens"])
  kept = [i for i in range(32) if i % 4]
  out = width.keep_channels(teacher, ctx, kept)
  assert (out.model_cfg.embed_dim, out.model_cfg.projection_dim) == (24, 32)
  assert out.details["projection_added"]
  emb, hidden, mask = out.model.with_hidden(tokens)
  emb = np.asarray(emb)
  assert emb.shape == (3, 32)
  assert not emb[:, [i for i in range(32) if i % 4 == 0]].any()
  np.testing.assert_array_equal(
      emb[:, kept], np.asarray(out.model.pool_sequence(hidden, mask)))
  perm = np.random.default_rng(0).permutation(32).tolist()
  same = width.keep_channels(teacher, ctx, perm).model
  np.testing.assert_allclose(np.asarray(same.embed(tokens)),
                             np.asarray(teacher.embed(tokens)), atol=1e-5)

  again = width.keep_channels(out.model, _surgery_ctx(out.model_cfg, config),
                              list(range(0, 24, 2)))
  assert again.model_cfg.projection_dim == 32
  assert not again.details["projection_added"]
  np.testing.assert_array_equal(_projection(again.model)["kernel"],
                                _projection(out.model)["kernel"][0:24:2])
  # 3 heads of 8 per layer fit a 24-wide BERT; the projection is untouched.
  fewer = heads.keep_heads(out.model, _surgery_ctx(out.model_cfg, config),
                           [[0, 1, 3], [0, 2, 3]])
  for name, value in _projection(out.model).items():
    np.testing.assert_array_equal(_projection(fewer.model)[name], value)
  saved = tmp_path / "student"
  hf.save_pretrained(fewer.model, fewer.model_cfg, str(saved), tokenizer=d)
  assert (saved / "2_Dense" / "model.safetensors").exists()
  back, back_config = hf.from_pretrained(str(saved))
  assert back_config.model.projection_dim == 32
  params = weights_lib.arrays(back)
  assert params[weights_lib.PROJECTION + ("kernel",)].shape == (24, 32)
  np.testing.assert_allclose(np.asarray(back.embed(tokens)),
                             np.asarray(fewer.model.embed(tokens)), atol=1e-6)


# --- one run ----------------------------------------------------------------------------


def test_prune_width_run_saves_reloads_and_exports(tmp_path, data_dir):
  """The recipe end to end on a (random, untrained: only the plumbing is
  under test) ListOps teacher: the student is a plain narrower model on
  disk that reloads and exports with parity. (Resuming and fine-tuning are
  the run's and the trainer's, the same for every method: test_shrink.py.)"""
  c = load_config("configs/listops.py:tiny")
  teacher_dir = str(tmp_path / "teacher")
  task = data.load_task(c.task, data_dir)
  teacher = models.build_model(c.model, vocab_size=task.vocab_size,
                               num_classes=task.num_classes,
                               max_len=task.max_len, rngs=nnx.Rngs(0))
  init_from.save_model(teacher_dir, teacher, c.model,
                       vocab_size=task.vocab_size,
                       num_classes=task.num_classes, max_len=task.max_len,
                       pad_id=task.pad_id)
  r = load_config("configs/shrink/prune_width.py:tiny")
  set_fields(r, {"data_dir": data_dir, "init_from": teacher_dir,
                 "num_train_steps": 0, "shrink.prune_width.num_examples": 64})
  workdir = str(tmp_path / "width")
  s = run.shrink_and_evaluate(r, workdir)
  assert s["method"] == "prune_width"
  assert s["shrink_details"]["embed_dim"] == 24  # 32 - a quarter
  assert s["deploy"]["num_params"] < s["teacher_deploy"]["num_params"]
  student, source = init_from.load_model(workdir + "/student")
  assert source.model["embed_dim"] == 24
  assert student.backbone.blocks[0].attn.query.kernel.shape == (24, 32)
  # Reloaded from the workdir and run against the exported program.
  record = export.export_run(workdir, "stablehlo", str(tmp_path / "hlo"),
                             data_dir=data_dir)
  assert record["check"]["fp32"]["argmax_all_equal"]
  assert record["check"]["fp32"]["max_abs_logit_diff"] < 1e-4
