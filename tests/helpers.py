"""Small helpers shared by tests (not fixtures: plain functions)."""

import json
import os
import pathlib
import shutil

import numpy as np

from lightjax import config_lib, models
from lightjax.tables import read_jsonl  # noqa: F401  (re-exported)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str):
  """Loads "configs/x.py[:arg]" relative to the repository root."""
  return config_lib.load_config_file(os.path.join(REPO, spec))


def full_config(**model):
  """The base config on ListOps with `model` fields set: what
  `config_lib.validate` checks, without a config file's presets."""
  c = config_lib.base_config()
  c.task = config_lib.task_config("listops")
  for k, v in model.items():
    c.model[k] = v
  return c


def set_fields(config, overrides: dict):
  """Sets each dotted field ("model.num_layers") of `config`; returns it."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config_lib.lookup(config, ".".join(parents)) if parents else config
    node[leaf] = value
  return config


# --- GLUE-format files ----------------------------------------------------------

WORDS = ["the", "cat", "sat", "a", "dog", "ran", "is", "movie"]


def _sentence(rng, n=4):
  return " ".join(rng.choice(WORDS, size=n)) + " ."


def _glue_tables(rng, n):
  """SST-2, MRPC and STS-B files with `n` train rows and n // 2 dev rows."""
  out = {}
  for split, rows in (("train.tsv", n), ("dev.tsv", n // 2)):
    labels = rng.integers(0, 2, rows)
    sst = [["sentence", "label"]] + [
        [f"{'good' if y else 'bad'} {_sentence(rng)}", str(y)] for y in labels]
    mrpc = [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]]
    stsb = [["index", "genre", "filename", "year", "old_index", "source1",
             "source2", "sentence1", "sentence2", "score"]]
    for i, y in enumerate(labels):
      a = _sentence(rng)
      b = a if y else _sentence(rng)
      mrpc.append([str(y), str(i), str(i), a, b])
      stsb.append([str(i), "main", "x", "2012", str(i), "none", "none", a, b,
                   f"{4.0 * y + rng.uniform(0, 1):.3f}"])
    for folder, table in (("SST-2", sst), ("MRPC", mrpc), ("STS-B", stsb)):
      out.setdefault(folder, {})[split] = table
  header = ["index", "promptID", "pairID", "genre", "s1_binary", "s2_binary",
            "s1_parse", "s2_parse", "sentence1", "sentence2", "label1",
            "gold_label"]
  gold = ("contradiction", "entailment", "neutral")
  for name, rows in (("train.tsv", n), ("dev_matched.tsv", n // 2),
                     ("dev_mismatched.tsv", n // 4)):
    table = [header]
    for i, y in enumerate(rng.integers(0, 3, rows)):
      table.append([str(i), "1", "1e", "fiction", "x", "y", "x", "y",
                    _sentence(rng), _sentence(rng), gold[y], gold[y]])
    out.setdefault("MNLI", {})[name] = table
  return out


def write_glue_tsvs(glue_dir, n: int = 40, seed: int = 0) -> None:
  """SST-2, MRPC, STS-B and MNLI in GLUE's TSV layout under `glue_dir`
  (n train rows; SST-2's label shows in its first word, so it is learnable)."""
  for folder, tables in _glue_tables(np.random.default_rng(seed), n).items():
    os.makedirs(os.path.join(glue_dir, folder), exist_ok=True)
    for name, rows in tables.items():
      with open(os.path.join(glue_dir, folder, name), "w", encoding="utf-8") as f:
        f.write("".join("\t".join(r) + "\n" for r in rows))


def check_seeded_task(task_config: dict, tmp_path, splits) -> tuple:
  """A generated task's data: the same seed gives identical arrays (built
  again in another data dir, not read from the cache), another seed other
  inputs, and validation and test differ. Returns (seed-0 task, seed-1 task)."""
  from lightjax import data  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  a = data.load_task(task_config, str(tmp_path / "a"))
  b = data.load_task(task_config, str(tmp_path / "b"))
  c = data.load_task({**task_config, "seed": 1}, str(tmp_path / "a"))
  for split in splits:
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(a.splits[split][key], b.splits[split][key])
    assert not np.array_equal(a.splits[split]["inputs"],
                              c.splits[split]["inputs"])
  assert not np.array_equal(a.splits["validation"]["inputs"],
                            a.splits["test"]["inputs"])
  return a, c


def train_tiny_listops(workdir: str, data_dir: str, **model) -> str:
  """Trains `configs/listops.py:tiny` (with `model` fields changed) in
  `workdir`: the small real teacher that shrink and export tests start
  from. Returns the workdir."""
  from lightjax import trainer  # pylint: disable=import-outside-toplevel
  c = load_config("configs/listops.py:tiny")
  c.data_dir = data_dir
  for key, value in model.items():
    c.model[key] = value
  trainer.train_and_evaluate(c, workdir)
  return workdir


# --- per-layer sizes of a model config ---------------------------------------------


def heads_of(model_cfg) -> tuple[int, ...]:
  """Each layer's head count (`ModelConfig.layers`) of a config.model."""
  return tuple(s.num_heads for s in models.as_model_config(model_cfg).layers)


def widths_of(model_cfg) -> tuple[int, ...]:
  """Each layer's MLP width of a config.model."""
  return tuple(s.mlp_dim for s in models.as_model_config(model_cfg).layers)


def ranks_of(model_cfg) -> tuple[dict[str, int], ...]:
  """Each layer's {matrix: rank} (full-rank matrices left out)."""
  return tuple(dict(s.ranks) for s in models.as_model_config(model_cfg).layers)


# --- Hugging Face checkpoints --------------------------------------------------------


def write_shards(src: str, dst, names: tuple[str, str]) -> dict[str, str]:
  """`src`'s config.json and its model.safetensors split into two shard
  files `names` (the first 20 tensors by name, then the rest) in `dst`;
  returns the index's weight_map (tensor -> shard), not written."""
  import shutil  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import load_file, save_file  # pylint: disable=import-outside-toplevel
  os.makedirs(dst)
  shutil.copy(os.path.join(src, "config.json"), dst)
  tensors = load_file(os.path.join(src, "model.safetensors"))
  keys = sorted(tensors)
  halves = dict(zip(names, (keys[:20], keys[20:])))
  for name, ks in halves.items():
    save_file({k: tensors[k] for k in ks}, os.path.join(dst, name))
  return {k: n for n, ks in halves.items() for k in ks}


def write_st_dir(d, pooling=None, modules=("Transformer", "Pooling", "Normalize"),
                 max_seq_length=12, dense=None) -> str:
  """bert_tiny as a sentence-transformers directory: modules.json,
  1_Pooling/config.json (`pooling`, default mean), sentence_bert_config.json
  and, with "Dense" in `modules`, 2_Dense/ from `dense` = (its config.json
  dict, {tensor name: array} for its model.safetensors). Other module
  types get a folder name and no files."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  d = pathlib.Path(d)
  shutil.copytree(os.path.join(REPO, "tests", "fixtures", "bert_tiny"), d)
  paths = {"Transformer": "", "Pooling": "1_Pooling", "Dense": "2_Dense"}
  paths = {m: paths.get(m, f"{i}_{m}") for i, m in enumerate(modules)}
  (d / "modules.json").write_text(json.dumps([
      {"idx": i, "name": str(i), "path": paths[m],
       "type": f"sentence_transformers.models.{m}"}
      for i, m in enumerate(modules)]))
  if "Dense" in modules and dense is not None:
    (d / "2_Dense").mkdir()
    (d / "2_Dense" / "config.json").write_text(json.dumps(dense[0]))
    if dense[1] is not None:
      save_file(dense[1], str(d / "2_Dense" / "model.safetensors"))
  (d / "1_Pooling").mkdir()
  (d / "1_Pooling" / "config.json").write_text(json.dumps(
      pooling or {"word_embedding_dimension": 32,
                  "pooling_mode_mean_tokens": True,
                  "pooling_mode_cls_token": False,
                  "pooling_mode_max_tokens": False}))
  (d / "sentence_bert_config.json").write_text(json.dumps(
      {"max_seq_length": max_seq_length, "do_lower_case": False}))
  return str(d)
