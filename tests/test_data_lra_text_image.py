"""LRA Text (byte-level IMDb) and LRA Image (grey CIFAR-10): tokens, splits,
cache, missing-data messages, and a few training steps of each `tiny`
preset. The data are written here in the datasets' own formats (an aclImdb
folder tree; CIFAR-10 python batches pickled as the dataset does, bytes
keys); nothing is downloaded."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from lightjax import data, trainer
from lightjax.data import lra_image, lra_text
from tests.helpers import REPO, load_config, read_jsonl

# --------------------------------------------------------------- aclImdb tree

WORDS = ["the", "film", "plot", "actor", "scene", "was", "a", "and"]
TRAIN_PER_FOLDER, TEST_PER_FOLDER = 12, 4


def _review(rng, positive, i):
  words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 30))))
  mood = "great" if positive else "awful"
  # Non-ASCII, an HTML break and surrounding whitespace, as in real reviews.
  return f"  {mood} {words} café<br /><br />#{i}\n"


def write_aclimdb(root, seed=0):
  """aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, plus what the real
  archive also holds and the task ignores (train/unsup, urls_*.txt)."""
  rng = np.random.default_rng(seed)
  texts = {}
  for split, n in (("train", TRAIN_PER_FOLDER), ("test", TEST_PER_FOLDER)):
    for label in ("neg", "pos"):
      folder = os.path.join(root, "aclImdb", split, label)
      os.makedirs(folder)
      for i in range(n):
        # Ids out of lexicographic order (10 < 2 as strings).
        rating = int(rng.integers(7, 11) if label == "pos"
                     else rng.integers(1, 5))
        name = f"{(i * 7) % n + (10 if i % 2 else 0)}_{rating}.txt"
        text = _review(rng, label == "pos", i)
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
          f.write(text)
        texts[(split, label, name)] = text.encode("utf-8")
    with open(os.path.join(root, "aclImdb", split, "urls_pos.txt"), "w") as f:
      f.write("http://www.imdb.com/title/tt0000001/usercomments\n")
  os.makedirs(os.path.join(root, "aclImdb", "train", "unsup"))
  with open(os.path.join(root, "aclImdb", "train", "unsup", "0_0.txt"),
            "w") as f:
    f.write("unlabelled")
  return texts


@pytest.fixture(scope="module")
def imdb(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("imdb"))
  return root, write_aclimdb(root)


def text_config(**overrides):
  return dict(name="lra_text", **overrides)


# --------------------------------------------------------------- CIFAR batches

IMAGES_PER_BATCH, TEST_IMAGES = 6, 8


def _cifar_batch(rng, n, label_text):
  """A dict exactly as the CIFAR-10 python batches hold it."""
  return {
      b"batch_label": label_text.encode(),
      b"labels": [int(y) for y in rng.integers(0, 10, n)],
      b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
      b"filenames": [f"img_{i}.png".encode() for i in range(n)],
  }


def write_cifar(root, seed=0):
  """cifar-10-batches-py/{data_batch_1..5,test_batch}; returns the dicts.

  Test image 0 is set by hand: black except pixel (row 0, col 1) pure green
  and pixel (row 1, col 0) pure red.
  """
  rng = np.random.default_rng(seed)
  folder = os.path.join(root, "cifar-10-batches-py")
  os.makedirs(folder)
  batches = {}
  for i in range(1, 6):
    batches[f"data_batch_{i}"] = _cifar_batch(
        rng, IMAGES_PER_BATCH, f"training batch {i} of 5")
  test = _cifar_batch(rng, TEST_IMAGES, "testing batch 1 of 1")
  image = np.zeros((3, 32, 32), np.uint8)  # R, G, B planes
  image[1, 0, 1] = 255
  image[0, 1, 0] = 255
  test[b"data"][0] = image.reshape(-1)
  batches["test_batch"] = test
  for name, batch in batches.items():
    with open(os.path.join(folder, name), "wb") as f:
      pickle.dump(batch, f, protocol=2)  # as cPickle wrote them
  return batches


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("cifar"))
  return root, write_cifar(root)


def image_config(**overrides):
  return dict(name="lra_image", **overrides)


def _rows(split):
  return {row.tobytes() for row in split["inputs"]}


# --------------------------------------------------------------- LRA Text


def test_byte_encoding_is_lras():
  # LRA's tfds ByteTextEncoder: UTF-8 bytes + 1, pad 0.
  ids = lra_text.encode("Hé<", 6)
  assert ids.dtype == np.int32
  assert ids.tolist() == [ord("H") + 1, 0xC3 + 1, 0xA9 + 1, ord("<") + 1, 0, 0]
  assert lra_text.encode(b"abcdef", 3).tolist() == [98, 99, 100]
  assert lra_text.decode(lra_text.encode("Hé<", 6)) == "Hé<".encode()
  assert lra_text.encode(bytes([0, 255]), 2).tolist() == [1, 256]
  assert lra_text.VOCAB_SIZE == 257 and len(lra_text.vocab()) == 257
  assert lra_text.vocab()[ord("a") + 1] == "a"


def test_text_splits_tokens_and_order(imdb, tmp_path):
  root, texts = imdb
  task = data.load_task(text_config(max_length=40, validation_fraction=0.25),
                        os.path.join(root))
  assert (task.kind, task.vocab_size, task.num_classes, task.max_len,
          task.pad_id) == ("classification", 257, 2, 40, 0)
  n_train = 2 * TRAIN_PER_FOLDER
  val, train, test = (task.splits[s] for s in ("validation", "train", "test"))
  assert len(val["targets"]) == round(0.25 * n_train)
  assert len(train["targets"]) + len(val["targets"]) == n_train
  assert len(test["targets"]) == 2 * TEST_PER_FOLDER
  assert not _rows(train) & _rows(val)

  # Test keeps file order: neg then pos, each by numeric id.
  def order(name):
    return int(name.split("_")[0])
  want = []
  for label in ("neg", "pos"):
    names = sorted((n for s, l, n in texts if s == "test" and l == label),
                   key=order)
    want += [texts[("test", label, n)].strip()[:40] for n in names]
  got = [lra_text.decode(row) for row in test["inputs"]]
  assert got == want
  assert test["targets"].tolist() == ([0] * TEST_PER_FOLDER
                                      + [1] * TEST_PER_FOLDER)
  assert test["inputs"].dtype == np.int32 and test["inputs"].shape == (8, 40)
  # Labels follow the folder: a positive review says "great".
  for split in (train, val, test):
    for row, y in zip(split["inputs"], split["targets"]):
      assert lra_text.decode(row).startswith(b"great" if y else b"awful")
  # Truncated rows are full; short ones are padded with 0 after the text.
  full = lra_text.encode(want[0], 40)
  np.testing.assert_array_equal(test["inputs"][0], full)


def test_text_is_deterministic_and_cached(imdb, tmp_path):
  root, _ = imdb
  cache_dir = str(tmp_path / "cache")
  config = text_config(imdb_dir=os.path.join(root, "aclImdb"), max_length=32)
  first = data.load_task(config, cache_dir)
  cached = os.listdir(os.path.join(cache_dir, lra_text.CACHE_SUBDIR))
  assert len(cached) == 1 and cached[0].startswith("files_L32_")
  again = data.load_task(config, cache_dir)
  for split in first.splits:
    for k in first.splits[split]:
      np.testing.assert_array_equal(first.splits[split][k],
                                    again.splits[split][k])
  # Another hold-out seed: other validation rows, same cache file.
  other = data.load_task(dict(config, seed=1), cache_dir)
  assert _rows(other.splits["validation"]) != _rows(first.splits["validation"])
  np.testing.assert_array_equal(other.splits["test"]["inputs"],
                                first.splits["test"]["inputs"])
  assert len(os.listdir(os.path.join(cache_dir, lra_text.CACHE_SUBDIR))) == 1
  # Another length is another cache entry.
  data.load_task(dict(config, max_length=16), cache_dir)
  assert len(os.listdir(os.path.join(cache_dir, lra_text.CACHE_SUBDIR))) == 2


def test_text_new_review_invalidates_cache(tmp_path):
  write_aclimdb(str(tmp_path))
  before = data.load_task(text_config(max_length=16), str(tmp_path))
  with open(tmp_path / "aclImdb" / "test" / "pos" / "99_10.txt", "w") as f:
    f.write("great new review")
  after = data.load_task(text_config(max_length=16), str(tmp_path))
  assert len(after.splits["test"]["targets"]) == len(
      before.splits["test"]["targets"]) + 1
  newest = after.splits["test"]["inputs"][-1]
  assert lra_text.decode(newest) == b"great new review"


def test_text_validation_fraction_zero_is_test(imdb):
  root, _ = imdb
  task = data.load_task(text_config(max_length=16, validation_fraction=0.0),
                        root)
  np.testing.assert_array_equal(task.splits["validation"]["inputs"],
                                task.splits["test"]["inputs"])
  assert len(task.splits["train"]["targets"]) == 2 * TRAIN_PER_FOLDER


def test_text_bad_config(imdb):
  root, _ = imdb
  with pytest.raises(ValueError, match="source must be one of files, tfds"):
    data.load_task(text_config(source="hub"), root)
  with pytest.raises(ValueError, match="max_length"):
    data.load_task(text_config(max_length=0), root)
  with pytest.raises(ValueError, match="validation_fraction"):
    data.load_task(text_config(validation_fraction=1.0), root)
  with pytest.raises(ValueError, match="unknown option"):
    data.load_task(text_config(max_len=10), root)


def test_text_missing_data_message(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    data.load_task(text_config(), str(tmp_path))
  message = str(e.value)
  assert "\n" not in message
  assert str(tmp_path / "aclImdb") in message
  assert lra_text.URL in message and "aclImdb/{train,test}/{pos,neg}" in message
  # One folder missing: it is named.
  write_aclimdb(str(tmp_path / "partial"))
  os.rename(tmp_path / "partial" / "aclImdb" / "test" / "neg",
            tmp_path / "partial" / "aclImdb" / "test" / "negative")
  with pytest.raises(FileNotFoundError, match="no review files in test/neg"):
    data.load_task(text_config(), str(tmp_path / "partial"))


def _tensorflow_importable():
  try:
    # pylint: disable=import-outside-toplevel,unused-import
    import tensorflow  # noqa: F401
  except ImportError:
    return False
  return True


@pytest.mark.skipif(_tensorflow_importable(), reason="TensorFlow is installed")
@pytest.mark.parametrize("name", ["lra_text", "lra_image"])
def test_tfds_source_without_tensorflow_says_what_to_install(name, tmp_path):
  with pytest.raises(ImportError) as e:
    data.load_task({"name": name, "source": "tfds"}, str(tmp_path))
  message = str(e.value)
  assert "\n" not in message
  assert "pip install tensorflow-datasets tensorflow-cpu" in message
  assert "source='files'" in message


@pytest.mark.skipif(not _tensorflow_importable(),
                    reason="tfds.load needs TensorFlow")
def test_tfds_source_with_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with tfds.testing.mock_data(num_examples=12):
    text = data.load_task(text_config(source="tfds", max_length=20,
                                      validation_fraction=0.25),
                          str(tmp_path))
    image = data.load_task(image_config(source="tfds"), str(tmp_path))
  assert text.splits["test"]["inputs"].shape == (12, 20)
  assert len(text.splits["validation"]["targets"]) == 3
  assert image.splits["test"]["inputs"].shape == (12, 1024)
  assert image.splits["test"]["inputs"].min() >= 1


# --------------------------------------------------------------- LRA Image


def test_grayscale_is_tf_rgb_to_grayscale():
  # uint8((0.2989 R + 0.5870 G + 0.1140 B) / 255 * 255.5), truncated, by hand:
  #   (255, 0, 0):   0.2989 * 255.5 = 76.37  -> 76
  #   (0, 255, 0):   0.5870 * 255.5 = 149.98 -> 149 (rounding would give 150)
  #   (0, 0, 255):   0.1140 * 255.5 = 29.13  -> 29
  #   (100, 150, 200): 140.74 / 255 * 255.5 = 141.02 -> 141
  #   (255, 255, 255): 0.9999 * 255.5 = 255.47 -> 255
  pixels = np.asarray([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                       [100, 150, 200], [255, 255, 255]], np.uint8)
  assert lra_image.grayscale(pixels).tolist() == [0, 76, 149, 29, 141, 255]
  with pytest.raises(ValueError, match="uint8"):
    lra_image.grayscale(pixels.astype(np.int32))


def test_image_tokens_splits_and_labels(cifar):
  root, batches = cifar
  task = data.load_task(image_config(), root)
  assert (task.kind, task.vocab_size, task.num_classes, task.max_len,
          task.pad_id) == ("classification", 257, 10, 1024, 0)
  test = task.splits["test"]
  assert test["inputs"].shape == (TEST_IMAGES, 1024)
  assert test["inputs"].dtype == np.int32
  # The hand-made image: black is id 1 (not the pad id), green at (0, 1) is
  # grey 149 -> id 150, red at (1, 0) = position 32 is grey 76 -> id 77.
  first = test["inputs"][0]
  assert first[1] == 150 and first[32] == 77
  assert (np.delete(first, [1, 32]) == 1).all()
  assert test["targets"].tolist() == batches["test_batch"][b"labels"]
  # Every other image against the per-pixel formula on its R, G, B planes.
  data_ = batches["test_batch"][b"data"][1:].reshape(-1, 3, 1024)
  want = lra_image.grayscale(np.stack([data_[:, 0], data_[:, 1],
                                       data_[:, 2]], -1)).astype(np.int32) + 1
  np.testing.assert_array_equal(test["inputs"][1:], want)
  # Train + validation are the five train batches, nothing lost or repeated.
  n_train = 5 * IMAGES_PER_BATCH
  train, val = task.splits["train"], task.splits["validation"]
  assert len(val["targets"]) == round(0.1 * n_train)
  assert len(train["targets"]) + len(val["targets"]) == n_train
  assert not _rows(train) & _rows(val)
  all_labels = sum((batches[f"data_batch_{i}"][b"labels"]
                    for i in range(1, 6)), [])
  assert sorted(all_labels) == sorted(
      train["targets"].tolist() + val["targets"].tolist())
  assert task.splits["train"]["inputs"].min() >= 1


def test_image_is_deterministic(cifar):
  root, _ = cifar
  a = data.load_task(image_config(validation_fraction=0.2), root)
  b = data.load_task(image_config(validation_fraction=0.2), root)
  c = data.load_task(image_config(validation_fraction=0.2, seed=3), root)
  for split in a.splits:
    for k in a.splits[split]:
      np.testing.assert_array_equal(a.splits[split][k], b.splits[split][k])
  assert _rows(c.splits["validation"]) != _rows(a.splits["validation"])


def test_image_bad_batches_are_named(tmp_path):
  write_cifar(str(tmp_path))
  folder = tmp_path / "cifar-10-batches-py"
  with open(folder / "data_batch_2", "wb") as f:
    pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f, protocol=2)
  with pytest.raises(ValueError, match="data_batch_2.*b'labels'"):
    data.load_task(image_config(), str(tmp_path))
  with open(folder / "data_batch_2", "wb") as f:
    pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]},
                f, protocol=2)
  with pytest.raises(ValueError, match=r"data_batch_2: b'data' must be"):
    data.load_task(image_config(), str(tmp_path))
  (folder / "data_batch_2").write_bytes(b"not a pickle")
  with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
    data.load_task(image_config(), str(tmp_path))


def test_image_missing_data_message(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    data.load_task(image_config(), str(tmp_path))
  message = str(e.value)
  assert "\n" not in message
  assert str(tmp_path / "cifar-10-batches-py") in message
  assert lra_image.URL in message and "data_batch_1" in message
  write_cifar(str(tmp_path / "partial"))
  os.remove(tmp_path / "partial" / "cifar-10-batches-py" / "data_batch_3")
  with pytest.raises(FileNotFoundError, match="missing data_batch_3 in"):
    data.load_task(image_config(), str(tmp_path / "partial"))


# --------------------------------------------------------------- configs


@pytest.mark.parametrize("spec,length,steps", [
    ("configs/lra_text.py", 512, 1500),
    ("configs/lra_text.py:lra", 1000, 20_000),
    ("configs/lra_text.py:lra4k,linear", 4096, 20_000),
    ("configs/lra_image.py", 1024, 3000),
    ("configs/lra_image.py:lra", 1024, 35_000),
])
def test_configs(spec, length, steps):
  c = load_config(spec)
  assert c.num_train_steps == steps
  if c.task.name == "lra_text":
    assert c.task.max_length == length
  if spec.endswith(":lra"):
    assert c.model.pool == "cls" and c.model.classifier_activation == "relu"
    assert c.model.classifier_hidden_dim == c.model.mlp_dim
  if "linear" in spec:
    assert c.model.attention.name == "linear"


# --------------------------------------------------------------- training


def test_text_tiny_trains(imdb, tmp_path):
  root, _ = imdb
  c = load_config("configs/lra_text.py:tiny")
  c.data_dir = root
  summary = trainer.train_and_evaluate(c, str(tmp_path))
  assert summary["task"] == "lra_text"
  assert 0 <= summary["test_accuracy"] <= 1
  recs = read_jsonl(tmp_path / "metrics.jsonl")
  assert {r["split"] for r in recs} >= {"train", "validation", "test"}
  assert np.isfinite([r["loss"] for r in recs if r["split"] == "train"]).all()


def test_image_tiny_trains(cifar, tmp_path):
  root, _ = cifar
  c = load_config("configs/lra_image.py:tiny")
  c.data_dir = root
  summary = trainer.train_and_evaluate(c, str(tmp_path))
  assert summary["task"] == "lra_image"
  assert 0 <= summary["test_accuracy"] <= 1
  test = [r for r in read_jsonl(tmp_path / "metrics.jsonl")
          if r["split"] == "test"]
  assert len(test) == 1 and test[0]["examples"] == TEST_IMAGES


# --------------------------------------------------------------- CLI


@pytest.mark.parametrize("config,folder", [
    ("configs/lra_text.py:tiny", "aclImdb"),
    ("configs/lra_image.py:tiny", "cifar-10-batches-py")])
def test_cli_missing_data_is_one_line_exit_2(tmp_path, config, folder):
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config", config,
       "--workdir", str(tmp_path / "run"),
       f"--config.data_dir={tmp_path / 'data'}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, r.stderr[-2000:]
  assert len(lines) == 1, r.stderr[-2000:]
  assert lines[0].startswith("lightjax.train: ")
  assert str(tmp_path / "data" / folder) in lines[0]
  assert "https://" in lines[0]


def test_cli_missing_optional_package_is_one_line_exit_2(tmp_path):
  """task.source=tfds without TensorFlow: what to install, one line."""
  try:
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    pytest.skip("TensorFlow is installed: nothing is missing")
  except ImportError:
    pass
  r = subprocess.run(
      [sys.executable, "-m", "lightjax.train", "--config",
       "configs/lra_text.py:tiny", "--workdir", str(tmp_path / "run"),
       f"--config.data_dir={tmp_path / 'data'}", "--config.task.source=tfds"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, r.stderr[-2000:]
  assert len(lines) == 1 and "pip install tensorflow-datasets" in lines[0], (
      r.stderr[-2000:])
