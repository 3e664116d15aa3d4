"""Byte-level LM task, bits per byte, `lightjax.sample`, and decoding of every
causal variant (recurrent, ring-buffer window, full cache).

The contract suite (`test_attention_contract.py`) already checks that each
variant's `decode_step` equals its parallel causal forward at default
options; here: the model-level greedy tokens (decode vs re-running the whole
prefix), ring buffers that wrap (small windows), constant cache sizes, and
Performer's stored random features.
"""

import math
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lightjax import attention, config_lib, data, init_from, models, trainer
from lightjax.data import lm
from lightjax.models import generate
from lightjax.sample import check_workdir
from tests.attention_inputs import qkv
from tests.helpers import REPO, load_config

TEXT = "".join(f"line {i}: the quick brown fox jumps {i * 7 % 13} times, héllo\n"
               for i in range(200))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("text") / "corpus.txt"
  path.write_text(TEXT, encoding="utf-8")
  return str(path)


def _task(path, **overrides):
  return data.load_task({"name": "lm", "path": path, "max_length": 16,
                         "num_regions": 10, **overrides}, "/nonexistent")


# --- The task -----------------------------------------------------------------


def test_bytes_to_ids_and_back():
  ids = lm.encode("aé")
  np.testing.assert_array_equal(ids, [ord("a") + 1, 0xC3 + 1, 0xA9 + 1])
  assert lm.decode(np.concatenate([ids, [0, 0]])) == "aé"  # pads dropped
  assert len(lm.vocab()) == lm.VOCAB_SIZE == 257 and lm.vocab()[0] == "<pad>"


def test_windows_are_shifted_by_one_and_cover_each_region(text_file):
  ids = lm.read_ids(text_file)
  region = ids[:100]
  w = lm.windows(region, 16)
  assert w["inputs"].shape == w["targets"].shape == (7, 16)  # ceil(99 / 16)
  padded = np.pad(region, (0, 17))  # pad id 0 after the region's end
  for i, (x, y) in enumerate(zip(w["inputs"], w["targets"])):
    np.testing.assert_array_equal(x, padded[i * 16:i * 16 + 16])
    np.testing.assert_array_equal(y, padded[i * 16 + 1:i * 16 + 17])
  # Every id but the region's first is a target exactly once.
  np.testing.assert_array_equal(w["targets"][w["targets"] > 0], region[1:])


def test_splits_are_disjoint_contiguous_regions_and_deterministic(text_file):
  task = _task(text_file)
  assert (task.kind, task.vocab_size, task.pad_id, task.max_len) == (
      "lm", 257, 0, 16)
  ids = lm.read_ids(text_file)
  regions = lm.region_splits(10, 0.05, 0.05, 0)
  assert [len(regions[s]) for s in ("train", "validation", "test")] == [8, 1, 1]
  assert sorted(np.concatenate(list(regions.values()))) == list(range(10))
  bounds = np.linspace(0, len(ids), 11).round().astype(int)
  for split, chosen in regions.items():  # each split = its regions' windows
    want = np.concatenate([ids[bounds[r] + 1:bounds[r + 1]] for r in chosen])
    got = task.splits[split]["targets"]
    np.testing.assert_array_equal(got[got > 0], want)
  again = _task(text_file)
  for split in task.splits:
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(task.splits[split][key],
                                    again.splits[split][key])
  other = lm.region_splits(10, 0.05, 0.05, 1)
  assert (list(other["validation"]), list(other["test"])) != (
      list(regions["validation"]), list(regions["test"]))


def test_a_directory_is_read_in_path_order_skipping_binary(tmp_path):
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "2.txt").write_text("world")
  (tmp_path / "1.txt").write_text("hello ")
  (tmp_path / ".hidden").write_text("no")
  (tmp_path / "x.bin").write_bytes(b"\0\1\2")
  assert lm.decode(lm.read_ids(str(tmp_path))) == "hello world"


def test_missing_or_short_text_is_one_line(tmp_path):
  missing = str(tmp_path / "nope.txt")
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"no such file or directory: {missing}")):
    _task(missing)
  with pytest.raises(FileNotFoundError, match="set task.path"):
    _task("")
  short = tmp_path / "short.txt"
  short.write_text("abc")
  with pytest.raises(ValueError, match="too few for 10 regions"):
    _task(str(short))


def test_config_refuses_a_non_causal_variant():
  non_causal = [n for n in attention.names()
                if not attention.get(n).supports_causal]
  assert "linformer" in non_causal
  with pytest.raises(ValueError, match="'linformer' cannot be causal"):
    config_lib.validate(load_config("configs/lm.py:linformer,tiny"))
  c = load_config("configs/lm.py:tiny")  # the variant as a field override
  c.model.attention.name = "linformer"
  with pytest.raises(ValueError, match="'linformer' cannot be causal, and"
                     " model 'decoder_lm' is; valid: "):
    config_lib.validate(c)
  for name in ("softmax", "performer", "local"):
    c = load_config(f"configs/lm.py:{name},tiny")
    config_lib.validate(c)
    assert c.model.attention.name == name


def test_missing_text_via_the_cli_exits_2_with_one_line(tmp_path):
  missing = str(tmp_path / "absent")
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/lm.py:tiny", "--workdir", str(tmp_path / "run"),
       f"--config.task.path={missing}"], cwd=REPO, capture_output=True,
      text=True, timeout=300)
  assert r.returncode == 2, r.stderr
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert lines == [f"lightjax.train: task lm: no such file or directory:"
                   f" {missing}"], r.stderr


# --- Training reports bits per byte, and sampling from the run -----------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, text_file):
  workdir = str(tmp_path_factory.mktemp("lm_run"))
  config = load_config("configs/lm.py:tiny")
  with config.unlocked():
    config.task.path = text_file
    config.task.max_length = 24
    config.num_train_steps = 6
    config.log_every = config.eval_every = config.checkpoint_every = 3
  summary = trainer.train_and_evaluate(config, workdir)
  return workdir, summary


def test_training_reports_bits_per_byte(trained_run):
  _, summary = trained_run
  bpb = summary["test_metrics"]["bits_per_byte"]
  assert bpb == pytest.approx(summary["test_loss"] / math.log(2), rel=1e-5)
  assert 0 < bpb < 9  # untrained over 257 ids: log2(257) = 8.006 bits


def test_sample_cli_prints_text_and_tokens_per_s(trained_run):
  workdir, _ = trained_run
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.sample", "--workdir", workdir,
       "--prompt", "line 1", "--max_new_tokens", "10", "--temperature",
       "0.8", "--top_k", "5", "--seed", "1"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  assert r.stdout.startswith("line 1")
  assert len(r.stdout.rstrip("\n").encode()) >= len("line 1")
  assert "10 new tokens" in r.stderr and "tokens/s" in r.stderr
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.sample", "--workdir", workdir,
       "--prompt", "", "--max_new_tokens", "3"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2
  assert r.stderr.strip() == ("lightjax.sample: the prompt is empty: give at"
                              " least one character")


def test_sample_refuses_what_it_cannot_generate(trained_run, tmp_path):
  workdir, _ = trained_run
  model, _ = init_from.load_model(workdir)
  with pytest.raises(ValueError, match="prompt has 30 tokens, more than the"
                     " model's max_len 24"):
    generate.sample(model, lm.encode("x" * 30), 1)
  with pytest.raises(ValueError, match="ask for at most 14 new tokens"):
    generate.sample(model, lm.encode("x" * 10), 20)
  with pytest.raises(ValueError, match="prompt is empty"):
    generate.sample(model, [], 3)
  # A real run of another kind: an encoder classifier saved as a workdir.
  cfg = load_config("configs/listops.py:tiny").model
  classifier = models.build_model(cfg, vocab_size=20, num_classes=10,
                                  max_len=16, rngs=nnx.Rngs(0))
  other = str(tmp_path / "classifier")
  init_from.save_model(other, classifier, cfg, vocab_size=20, num_classes=10,
                       max_len=16, pad_id=0, task="listops")
  with pytest.raises(ValueError, match="holds a encoder_classifier for task"
                     " 'listops', not a byte-level language model"):
    check_workdir(other)
  check_workdir(workdir)  # the LM run passes


def test_greedy_sample_is_deterministic_and_top_k_1_is_greedy(trained_run):
  workdir, _ = trained_run
  model, _ = init_from.load_model(workdir)
  prompt = lm.encode("line 4")
  greedy, tokens_per_s = generate.sample(model, prompt, 8)
  assert greedy.shape == (8,) and tokens_per_s > 0
  np.testing.assert_array_equal(generate.sample(model, prompt, 8)[0], greedy)
  top1, _ = generate.sample(model, prompt, 8, temperature=1.3, top_k=1, seed=3)
  np.testing.assert_array_equal(top1, greedy)


# --- Greedy decoding with each decode state = re-running the whole prefix ------


def _decoder(attention_name, options=None, max_len=40, seed=0):
  cfg = load_config("configs/lm.py:tiny").model
  with cfg.unlocked():
    cfg.attention.name = attention_name
    cfg.attention[attention_name].update(options or {})
    cfg.num_layers = 2
  return models.build_model(cfg, vocab_size=lm.VOCAB_SIZE, num_classes=0,
                            max_len=max_len, rngs=nnx.Rngs(seed))


def _greedy_by_recomputation(model, prompt_BxP, steps):
  """Re-runs the whole parallel model on the prefix for every new token.

  The prefix is padded to one length (pads after it are future positions,
  invisible to a causal model, and masked as keys), so this compiles once.
  """
  b, p = prompt_BxP.shape
  seq_BxT = jnp.pad(prompt_BxP, ((0, 0), (0, steps)))
  forward = jax.jit(lambda s, t: model(s)[jnp.arange(b), t].argmax(-1))
  for t in range(p - 1, p - 1 + steps):
    nxt_B = forward(seq_BxT, t).astype(seq_BxT.dtype)
    seq_BxT = seq_BxT.at[:, t + 1].set(nxt_B)
  return seq_BxT


@pytest.mark.parametrize("name,options", [
    ("linear", {}),
    ("performer", {"num_features": 32}),
    # Windows far shorter than the 36 generated positions: the ring wraps.
    ("local", {"block_size": 4, "num_neighbor_blocks": 1}),
    ("longformer", {"window": 8, "num_global_tokens": 2}),
], ids=["linear", "performer", "local", "longformer"])
def test_greedy_decode_equals_recomputing_the_prefix(name, options):
  model = _decoder(name, options)
  prompt = jnp.asarray([lm.encode("the qu"), lm.encode("line 3")])
  out = generate.generate(model, prompt, 30, greedy=True)
  np.testing.assert_array_equal(out, _greedy_by_recomputation(model, prompt,
                                                              30))


# --- Kernel-level decode checks the contract suite's defaults do not reach -----


def _decode_all(kernel, q, k, v, cache):
  @jax.jit
  def run(q, k, v, cache):
    def step(cache, t):
      xs = [jax.lax.dynamic_slice_in_dim(x, t, 1, axis=1) for x in (q, k, v)]
      out_Bx1xHxD, cache = kernel.decode_step(*xs, cache, t)
      return cache, out_Bx1xHxD[:, 0]
    _, out_LxBxHxD = jax.lax.scan(step, cache, jnp.arange(q.shape[1]))
    return jnp.swapaxes(out_LxBxHxD, 0, 1)
  return run(q, k, v, cache)


SMALL_SPARSE = [
    ("local", {"block_size": 4, "num_neighbor_blocks": 2}),
    ("local", {"block_size": 5, "num_neighbor_blocks": 0,
               "weighting": "uniform_sqrt"}),
    ("longformer", {"window": 6, "num_global_tokens": 3}),
    ("strided", {"stride": 5}),
    ("fixed", {"stride": 6, "summary": 2}),
    ("bigbird", {"block_size": 4, "num_random_blocks": 2}),
]


@pytest.mark.parametrize("name,options", SMALL_SPARSE,
                         ids=[f"{n}-{i}" for i, (n, _) in
                              enumerate(SMALL_SPARSE)])
def test_sparse_decode_with_small_patterns_equals_parallel(name, options):
  n = 45
  kernel = attention.build(name, options, num_heads=2, head_dim=8, max_len=n,
                           rngs=nnx.Rngs(1))
  q, k, v = qkv(3, 2, n, 2, 8)
  want = jax.jit(lambda q, k, v: kernel(q, k, v, causal=True))(q, k, v)
  got = _decode_all(kernel, q, k, v, kernel.init_cache(2, n))
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_window_caches_are_constant_size_however_long_the_sequence():
  local = attention.build("local", {"block_size": 16, "num_neighbor_blocks": 2},
                          num_heads=2, head_dim=8, max_len=100_000,
                          rngs=nnx.Rngs(0))
  longformer = attention.build("longformer", {"window": 64,
                                              "num_global_tokens": 2},
                               num_heads=2, head_dim=8, max_len=100_000,
                               rngs=nnx.Rngs(0))
  for max_len in (100, 1_000, 100_000):
    shapes = jax.tree.map(jnp.shape, local.init_cache(1, max_len))
    assert shapes == {"k": (1, 48, 2, 8), "v": (1, 48, 2, 8)}  # (w + 1) bs
    shapes = jax.tree.map(jnp.shape, longformer.init_cache(1, max_len))
    assert shapes == {"k": (1, 33, 2, 8), "v": (1, 33, 2, 8),  # window/2 + 1
                      "global_k": (1, 2, 2, 8), "global_v": (1, 2, 2, 8)}
  # Far-reaching patterns keep every position, as softmax does.
  strided = attention.build("strided", {"stride": 8}, num_heads=2, head_dim=8,
                            max_len=1000, rngs=nnx.Rngs(0))
  assert strided.init_cache(1, 1000)["k"].shape == (1, 1000, 2, 8)
  # A short generation needs no more than its length.
  assert local.init_cache(1, 10)["k"].shape == (1, 10, 2, 8)


def test_performer_decode_uses_the_stored_random_features():
  """Decoding (inference) uses the projection every deterministic call uses,
  even with redraw=True; its state is O(M D), not O(length)."""
  n = 40
  kernel = attention.build("performer", {"num_features": 24, "redraw": True},
                           num_heads=2, head_dim=8, max_len=n,
                           rngs=nnx.Rngs(0))
  q, k, v = qkv(5, 2, n, 2, 8)
  want = attention.performer_attention(
      q, k, v, causal=True, projection=kernel.projection[...], chunk_size=16)
  got = _decode_all(kernel, q, k, v, kernel.init_cache(2, n))
  np.testing.assert_allclose(got, want, atol=1e-5)
  other = attention.performer_attention(
      q, k, v, causal=True, projection=attention.performer.draw_projection(
          jax.random.key(9), 24, 8), chunk_size=16)
  assert float(jnp.abs(other - got).max()) > 1e-3  # the features matter
  cache = kernel.init_cache(2, 100_000)
  assert jax.tree.map(jnp.shape, cache) == {
      "s": (2, 2, 24, 8), "z": (2, 2, 24), "max": (2, 2)}


def test_every_causal_variant_decodes():
  """All shipped variants that can be causal now decode; linformer (not
  causal) is the one that cannot."""
  for name in attention.names():
    cls = attention.get(name)
    assert cls.supports_decode == cls.supports_causal, name


def test_lm_objective_masks_the_tasks_own_pad_id():
  """The trainer binds the task's pad id (`objectives.with_pad`): targets
  equal to it are not scored, whatever id the task pads with."""
  from lightjax import objectives  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
  targets = jnp.asarray([[3, 1, 2, 3, 3], [4, 5, 6, 1, 3]])
  weights = jnp.ones(2)
  sums = objectives.with_pad(objectives.get("lm"), 3)(logits, targets, weights)
  assert float(sums["count"]) == 6  # the four 3s are padding
  assert objectives.with_pad(objectives.classification, 3) is (
      objectives.classification)
