"""Pathfinder: the generator's label is visible in its pixels, balance,
determinism, cache, LRA's original file layout, a tiny training run and the
missing-data message of the CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest

from lightjax import data, trainer
from lightjax.data import pathfinder
from tests.helpers import REPO, check_seeded_task, load_config

GEOMETRY = dict(contour_length=14, num_distractors=2, distractor_length=4,
                max_turn_degrees=60.0)
SMALL = dict(name="lra_pathfinder", num_train=40, num_validation=10,
             num_test=10, contour_length=6, num_distractors=1,
             distractor_length=2)


def flood_reaches(img_HxW, start_yx, goal_yx, reach):
  """Whether a flood fill over nonzero pixels, jumping over at most `reach`
  - 1 zero pixels (Chebyshev steps <= reach), gets from start to goal.

  Written independently of the generator (plain numpy padding and shifts).
  """
  on = img_HxW > 0
  h, w = on.shape
  seen = np.zeros_like(on)
  seen[start_yx] = on[start_yx]
  while True:
    padded = np.pad(seen, reach)
    grown = np.zeros_like(seen)
    for dy in range(2 * reach + 1):
      for dx in range(2 * reach + 1):
        grown |= padded[dy:dy + h, dx:dx + w]
    grown &= on
    if (grown == seen).all():
      return bool(seen[goal_yx])
    seen = grown


@pytest.fixture(scope="module", params=[32, 64])
def samples(request):
  size = request.param
  kw = dict(GEOMETRY, contour_length=14 if size == 32 else 6)
  images, labels, dots = pathfinder.generate_split(
      num=120 if size == 32 else 30, split_index=2, seed=3, image_size=size,
      return_dots=True, **kw)
  return size, images, labels, dots


def test_dots_connected_exactly_in_positives(samples):
  """Gaps between dashes are <= image_size / 32 px, so a fill jumping that far
  follows a path; different paths are farther apart than that."""
  size, images, labels, dots = samples
  reach = size // 32
  assert set(labels.tolist()) == {0, 1}
  for img, label, (a, b) in zip(images, labels, dots):
    a_px = tuple(np.floor(a).astype(int))
    b_px = tuple(np.floor(b).astype(int))
    assert img[a_px] == 255 and img[b_px] == 255  # dots are drawn
    assert flood_reaches(img, a_px, b_px, reach) == bool(label)


def test_dots_equally_far_apart_in_both_classes(samples):
  """Path 2 starts where path 1's end would be at the same distance, so the
  dots' distance carries no label information."""
  _, _, labels, dots = samples
  dist = np.linalg.norm(dots[:, 0] - dots[:, 1], axis=-1)
  assert dist.min() > 2
  pos, neg = dist[labels == 1], dist[labels == 0]
  assert abs(pos.mean() - neg.mean()) < 0.25 * dist.mean()


def test_images_are_dashed_paths_not_blobs(samples):
  size, images, _, _ = samples
  lit = (images > 0).mean(axis=(1, 2))
  assert lit.min() > 0.05 and lit.max() < 0.6
  # Antialiased: partly covered pixels are grey.
  assert ((images > 0) & (images < 255)).any()


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  return data.load_task(SMALL, str(tmp_path_factory.mktemp("pathfinder")))


def test_task_shapes_vocab_and_balance(task):
  assert task.name == "lra_pathfinder" and task.kind == "classification"
  assert task.num_classes == 2 and task.vocab_size == 257 == len(task.vocab)
  assert task.pad_id == 0 and task.max_len == 32 * 32
  for split, n in (("train", 40), ("validation", 10), ("test", 10)):
    inputs = task.splits[split]["inputs"]
    targets = task.splits[split]["targets"]
    assert inputs.shape == (n, 1024) and inputs.dtype == np.int32
    assert targets.shape == (n,) and targets.dtype == np.int32
    assert inputs.min() >= 1 and inputs.max() <= 256  # grey + 1, no pad
    assert (inputs == 256).any() and (inputs == 1).any()
    assert targets.sum() == n // 2  # exactly balanced


def test_same_seed_identical_other_seed_differs(tmp_path):
  check_seeded_task(SMALL, tmp_path, pathfinder.SPLITS)


def test_eval_splits_do_not_depend_on_num_train():
  config = data.resolve_task_config(SMALL)
  a = pathfinder.generate_splits(config)
  b = pathfinder.generate_splits({**config, "num_train": 20})
  for split in ("validation", "test"):
    np.testing.assert_array_equal(a[split]["images"], b[split]["images"])
  assert len(b["train"]["images"]) == 20 and b["train"]["targets"].sum() == 10


def test_cache_written_once_and_reused(tmp_path, monkeypatch):
  first = data.load_task(SMALL, str(tmp_path))
  path = pathfinder.cache_path(data.resolve_task_config(SMALL), str(tmp_path))
  assert os.listdir(tmp_path / "lra_pathfinder") == [os.path.basename(path)]

  def fail(config):
    raise AssertionError("regenerated despite the cache")

  monkeypatch.setattr(pathfinder, "generate_splits", fail)
  second = data.load_task(SMALL, str(tmp_path))
  for split in pathfinder.SPLITS:
    np.testing.assert_array_equal(first.splits[split]["inputs"],
                                  second.splits[split]["inputs"])
  config = data.resolve_task_config(SMALL)
  keys = [k for k in pathfinder._generation_params(config)]
  paths = {pathfinder.cache_path({**config, k: config[k] + 1}, "/d")
           for k in keys}
  assert len(paths | {pathfinder.cache_path(config, "/d")}) == len(keys) + 1


def test_larger_images():
  images, labels = pathfinder.generate_split(
      num=8, split_index=0, seed=0, image_size=128, **dict(
          GEOMETRY, contour_length=9))
  assert images.shape == (8, 128, 128) and labels.sum() == 4


def test_bad_config_values():
  with pytest.raises(ValueError, match="source.*valid: generated, original"):
    data.load_task({**SMALL, "source": "tfds"}, "/nonexistent")
  with pytest.raises(ValueError, match="multiple of 32"):
    data.load_task({**SMALL, "image_size": 48}, "/nonexistent")
  with pytest.raises(ValueError, match="contour_length"):
    data.load_task({**SMALL, "source": "original", "contour_length": 7},
                   "/nonexistent")
  with pytest.raises(ValueError, match="num_trian.*valid options"):
    data.load_task({**SMALL, "num_trian": 3}, "/nonexistent")


# ---------------------------------------------------------------- originals


def write_originals(root, images, labels, difficulty="curv_contour_length_14",
                    per_folder=7):
  """LRA's release layout: metadata/<k>.npy text lines
  "imgs/<k> sample_<i>.png <i> <label> ..." and imgs/<k>/sample_<i>.png."""
  image_cls = pytest.importorskip("PIL.Image", reason="Pillow not installed")
  base = root / difficulty
  (base / "metadata").mkdir(parents=True)
  for k, lo in enumerate(range(0, len(images), per_folder)):
    (base / "imgs" / str(k)).mkdir(parents=True)
    lines = []
    for i in range(lo, min(lo + per_folder, len(images))):
      image_cls.fromarray(images[i]).save(base / "imgs" / str(k) /
                                          f"sample_{i}.png")
      lines.append(f"imgs/{k} sample_{i}.png {i} {labels[i]} 14 1.5 2\n")
    (base / "metadata" / f"{k}.npy").write_text("".join(lines))


def test_original_layout_is_read(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (30, 32, 32), dtype=np.uint8)
  labels = np.arange(30) % 2
  write_originals(tmp_path / "pathfinder32", images, labels)
  config = {**SMALL, "source": "original", "contour_length": 14,
            "original_dir": str(tmp_path / "pathfinder32")}
  task = data.load_task(config, str(tmp_path / "unused"))
  sizes = {s: len(task.splits[s]["targets"]) for s in pathfinder.SPLITS}
  assert sizes == {"train": 24, "validation": 3, "test": 3}  # 80/10/10
  seen = {}
  for split in task.splits.values():
    for row, target in zip(split["inputs"], split["targets"]):
      seen[row.tobytes()] = target
  assert len(seen) == 30
  for img, label in zip(images, labels):
    row = img.reshape(-1).astype(np.int32) + 1
    assert seen[row.tobytes()] == label
  # num_* caps each split.
  capped = data.load_task({**config, "num_train": 5}, str(tmp_path / "u"))
  assert len(capped.splits["train"]["targets"]) == 5
  # Decoded once, then read from the cache (PNGs no longer needed).
  for png in (tmp_path / "pathfinder32").rglob("*.png"):
    png.unlink()
  again = data.load_task(config, str(tmp_path / "unused"))
  np.testing.assert_array_equal(again.splits["test"]["inputs"],
                                task.splits["test"]["inputs"])


def test_original_metadata_columns(tmp_path):
  folder = tmp_path / "curv_baseline"
  (folder / "metadata").mkdir(parents=True)
  (folder / "metadata" / "10.npy").write_text("imgs/10 b.png 3 0\n")
  (folder / "metadata" / "2.npy").write_text(
      "imgs/2 a.png 0 1 6 1.5\nimgs/2 c.png 1 0 6 1.5\n")
  assert pathfinder.read_metadata(str(folder)) == [
      (str(folder / "imgs/2" / "a.png"), 1),
      (str(folder / "imgs/2" / "c.png"), 0),
      (str(folder / "imgs/10" / "b.png"), 0)]
  (folder / "metadata" / "3.npy").write_text("imgs/3 a.png\n")
  with pytest.raises(ValueError, match="3.npy line 1"):
    pathfinder.read_metadata(str(folder))


def test_missing_originals_message(tmp_path):
  config = {**SMALL, "source": "original", "contour_length": 9}
  with pytest.raises(FileNotFoundError) as e:
    data.load_task(config, str(tmp_path))
  message = str(e.value)
  expected = tmp_path / "lra_release" / "lra_release" / "pathfinder32"
  assert str(expected / "curv_contour_length_9" / "metadata") in message
  assert pathfinder.RELEASE_URL in message


def test_cli_missing_originals_is_one_line(tmp_path):
  missing = tmp_path / "nowhere"
  env = {**os.environ, "LIGHTJAX_DATA_DIR": str(tmp_path / "data")}
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/lra_pathfinder.py:tiny", "--workdir", str(tmp_path / "run"),
       "--config.task.source=original",
       f"--config.task.original_dir={missing}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, r.stderr[-2000:]
  assert len(lines) == 1, r.stderr
  assert lines[0].startswith("lightjax.train: Pathfinder originals not found")
  assert str(missing / "curv_baseline" / "metadata") in lines[0]
  assert pathfinder.RELEASE_URL in lines[0]


# ---------------------------------------------------------------- training


def test_tiny_preset_trains(tmp_path):
  c = load_config("configs/lra_pathfinder.py:tiny")
  c.data_dir = str(tmp_path / "data")
  summary = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["task"] == "lra_pathfinder"
  assert 0 <= summary["test_accuracy"] <= 1
  assert 0 <= summary["best_val_score"] <= 1


def test_lra_preset_matches_lra_config():
  c = load_config("configs/lra_pathfinder.py:lra,linear")
  assert c.model.attention.name == "linear"
  assert (c.batch_size, c.num_train_steps, c.optim.warmup_steps) == (
      512, 312 * 200, 312)
  assert (c.model.num_layers, c.model.num_heads, c.model.embed_dim,
          c.model.num_heads * c.model.head_dim, c.model.mlp_dim) == (
              1, 4, 128, 64, 128)
  assert c.model.pool == "mean" and c.model.pos_embedding == "sinusoidal"
  assert (c.task.num_train, c.task.num_validation, c.task.num_test) == (
      160_000, 20_000, 20_000)
  assert c.task.image_size == 32 and c.task.contour_length == 14
  default = load_config("configs/lra_pathfinder.py")
  assert default.task.source == "generated"


def test_sample_grid_script_writes_a_png(tmp_path):
  r = subprocess.run(
      [sys.executable, "scripts/pathfinder_samples.py", "--out",
       str(tmp_path), "--num", "4"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  png = tmp_path / "pathfinder32_len14.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert r.stdout.strip() == str(png)
