"""Hostile Hugging Face checkpoints (issue 20 item 3): config.json and the
safetensors headers are checked before anything is loaded or built, and
every problem is one line of `CheckpointError`.

`test_fuzz_*` mutates the fixtures' config.json and safetensors headers
(sizes, types, shapes, dtypes, offsets, truncations) with a fixed seed; each
mutation must end in a one-line CheckpointError or a correct load, within a
time limit per mutation and with no memory growth beyond the files' size.
"""

import json
import os
import random
import resource
import shutil
import signal
import struct
import time

import numpy as np
import pytest

from lightjax import hf
from tests.helpers import write_shards

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
BERT = os.path.join(FIXTURES, "bert_tiny")
KINDS = ("bert_tiny", "distilbert_tiny", "roberta_tiny", "bert_mlm_tiny")


def _copy(tmp_path, name="bert_tiny", config_edit=None):
  d = tmp_path / f"ckpt_{name}"
  if d.exists():
    shutil.rmtree(d)
  shutil.copytree(os.path.join(FIXTURES, name), d)
  if config_edit:
    cfg = json.loads((d / "config.json").read_text())
    config_edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
  return d


def _one_line_error(fn, match=None):
  with pytest.raises(hf.CheckpointError, match=match) as e:
    fn()
  assert "\n" not in str(e.value), str(e.value)
  return str(e.value)



def _join(path, header, data, pad=True):
  text = json.dumps(header).encode()
  if pad:
    text += b" " * (-len(text) % 8)
  path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _set_tensor(path, key, array):
  """Replaces one tensor (new dtype / values) keeping the file valid."""
  from safetensors.numpy import load_file, save_file
  t = load_file(str(path))
  t[key] = array
  save_file(t, str(path), metadata={"format": "pt"})


# --- each repro of the issue ------------------------------------------------------


def test_num_hidden_layers_larger_than_the_file_fails_at_once(tmp_path):
  d = _copy(tmp_path, config_edit=lambda c: c.update(num_hidden_layers=100000))
  start = time.time()
  _one_line_error(lambda: hf.from_pretrained(str(d)),
                  r"num_hidden_layers = 100000 but the checkpoint holds"
                  r" tensors of 2 layer")
  assert time.time() - start < 5


def test_huge_hidden_size_fails_before_allocating(tmp_path):
  d = _copy(tmp_path, config_edit=lambda c: c.update(
      hidden_size=10**9, num_attention_heads=1))
  _one_line_error(lambda: hf.from_pretrained(str(d)),
                  r"hidden_size = 1000000000 but checkpoint tensor"
                  r" 'bert.embeddings.word_embeddings.weight' is \(99, 32\)")


def test_huge_intermediate_size_and_num_labels_fail_before_allocating(tmp_path):
  d = _copy(tmp_path, config_edit=lambda c: c.update(intermediate_size=10**9))
  _one_line_error(lambda: hf.from_pretrained(str(d)),
                  r"fc1/bias: checkpoint tensor .* lightjax model \(1000000000,\)")
  # A pretraining checkpoint has no classifier: its size is the config's.
  d = _copy(tmp_path, "bert_mlm_tiny", config_edit=lambda c: c.update(
      num_labels=10**9))
  _one_line_error(lambda: hf.from_pretrained(str(d)),
                  r"initialise \d+ parameters the checkpoint lacks .*num_labels")


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(num_attention_heads=0),
     r"num_attention_heads must be an integer > 0, got 0"),
    (lambda c: c.update(hidden_size="32"),
     r"hidden_size must be an integer > 0, got '32'"),
    (lambda c: c.update(hidden_size=30),
     r"hidden_size 30 is not a multiple of num_attention_heads 4"),
    (lambda c: c.update(vocab_size=True), r"vocab_size must be an integer"),
    (lambda c: c.update(max_position_embeddings=None),
     r"max_position_embeddings must be an integer > 0, got None"),
    (lambda c: c.pop("vocab_size"), r"config.json has no vocab_size"),
    (lambda c: c.update(model_type=["bert"]), r"model_type \['bert'\]"),
    (lambda c: c.update(hidden_act=["gelu"]), r"hidden_act must be a string"),
    (lambda c: c.update(id2label=[1, 2]), r"id2label must be an object"),
    (lambda c: c.update(pad_token_id="x"), r"pad_token_id must be null"),
    (lambda c: c.update(layer_norm_eps=float("nan")), r"layer_norm_eps"),
    (lambda c: c.update(hidden_dropout_prob=2), r"hidden_dropout_prob"),
    (lambda c: c.update(vocab_size=98), r"vocab_size = 98 but checkpoint"),
    (lambda c: c.update(max_position_embeddings=65),
     r"max_position_embeddings = 65 but checkpoint"),
])
def test_config_field_types_and_sizes(tmp_path, edit, match):
  d = _copy(tmp_path, config_edit=edit)
  _one_line_error(lambda: hf.from_pretrained(str(d)), match)


def test_config_json_must_be_an_object(tmp_path):
  d = _copy(tmp_path)
  (d / "config.json").write_text("[1, 2]")
  _one_line_error(lambda: hf.from_pretrained(str(d)), r"must hold a JSON object")
  (d / "config.json").write_text("{not json")
  _one_line_error(lambda: hf.from_pretrained(str(d)), r"cannot read .*JSONDecodeError")
  (d / "config.json").write_bytes(b'{"a": "\xff"}')
  _one_line_error(lambda: hf.from_pretrained(str(d)), r"UnicodeDecodeError")


def _sharded(tmp_path):
  d = tmp_path / "sharded"
  return d, write_shards(BERT, d, ("a.safetensors", "b.safetensors"))


def test_index_without_weight_map_and_shards_outside(tmp_path):
  d, weight_map = _sharded(tmp_path)
  index = d / "model.safetensors.index.json"
  index.write_text(json.dumps({"metadata": {}}))
  _one_line_error(lambda: hf.from_pretrained(str(d)), r"has no weight_map")
  index.write_text("[]")
  _one_line_error(lambda: hf.from_pretrained(str(d)), r"must hold a JSON object")
  outside = tmp_path / "outside.safetensors"
  shutil.copy(d / "a.safetensors", outside)
  for shard, match in ((str(outside), "not a file name inside"),
                       ("../outside.safetensors", "not a file name inside"),
                       ("sub/../../outside.safetensors", "not a file name inside"),
                       ("link.safetensors", "resolves outside"),
                       ("nosuch.safetensors", "is missing")):
    os.symlink(outside, d / "link.safetensors") if shard == "link.safetensors" else None
    index.write_text(json.dumps({"weight_map": {
        k: (shard if v == "a.safetensors" else v) for k, v in weight_map.items()}}))
    _one_line_error(lambda: hf.from_pretrained(str(d)), match)
  index.write_text(json.dumps({"weight_map": weight_map}))
  hf.from_pretrained(str(d))  # the valid index still loads


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:len(b) // 2], r"within the file.s 37998 data bytes"),
    (lambda b: struct.pack("<Q", 2**60) + b[8:], r"claims 1152921504606846976 bytes"),
    (lambda b: b[:8] + b"\x00garbage" + b[16:], r"not valid JSON"),
    (lambda b: b[:5], r"not a safetensors file"),
])
def test_safetensors_damage_is_one_line(tmp_path, damage, match):
  d = _copy(tmp_path)
  f = d / "model.safetensors"
  f.write_bytes(damage(f.read_bytes()))
  _one_line_error(lambda: hf.from_pretrained(str(d)), match)


@pytest.mark.parametrize("array, match", [
    (np.zeros((37, 32), np.int32), r"dtype I32; lightjax reads floating"),
    (np.zeros((37, 32), bool), r"dtype BOOL; lightjax reads floating"),
])
def test_non_float_weights_are_refused(tmp_path, array, match):
  d = _copy(tmp_path)
  _set_tensor(d / "model.safetensors",
              "bert.encoder.layer.0.intermediate.dense.weight", array)
  _one_line_error(lambda: hf.from_pretrained(str(d)),
                  r"'bert.encoder.layer.0.intermediate.dense.weight' has " + match)


def test_int_weights_refused_by_convert_weights_too():
  tensors = hf.read_tensors(BERT)
  key = "bert.encoder.layer.0.intermediate.dense.bias"
  tensors[key] = tensors[key].astype(np.int32)
  _one_line_error(lambda: hf.convert_weights(hf.read_config(BERT), tensors),
                  r"dtype int32")


def test_non_finite_weights_are_refused(tmp_path):
  from safetensors.numpy import load_file
  d = _copy(tmp_path)
  key = "bert.encoder.layer.1.output.dense.weight"
  value = load_file(str(d / "model.safetensors"))[key]
  value[3, 4], value[0, 0] = np.nan, np.inf
  _set_tensor(d / "model.safetensors", key, value)
  _one_line_error(lambda: hf.from_pretrained(str(d)),
                  rf"'{key}' \(32, 37\) holds 2 non-finite value")


def test_init_from_checks_the_header_before_building(tmp_path):
  from lightjax import init_from
  d = _copy(tmp_path, config_edit=lambda c: c.update(num_hidden_layers=100000))
  _one_line_error(lambda: init_from.open_source(f"hf:{d}"), r"num_hidden_layers")


# --- the fuzz test ----------------------------------------------------------------

SIZE_FIELDS = ("hidden_size", "num_attention_heads", "num_hidden_layers",
               "intermediate_size", "vocab_size", "max_position_embeddings",
               "type_vocab_size", "pad_token_id", "num_labels", "dim",
               "n_heads", "n_layers", "hidden_dim", "layer_norm_eps",
               "hidden_dropout_prob", "dropout", "hidden_act", "activation",
               "id2label", "model_type")
WEIRD = (0, -1, 1, 3, 10**9, 2**63, 10**30, 1.5, 32.0, "32", None, True,
         [], {}, [32], float("nan"), float("inf"), "gelu", "bert")


def _mutate_config(rng, cfg):
  if rng.random() < 0.1:
    return rng.choice([[cfg], "x", 3, None])  # not an object
  for _ in range(rng.choice((1, 1, 2))):
    field = rng.choice(SIZE_FIELDS)
    if rng.random() < 0.15:
      cfg.pop(field, None)
    elif rng.random() < 0.5 and isinstance(cfg.get(field), int):
      cfg[field] = cfg[field] + rng.choice((-1, 1, 7, 10**6, -cfg[field]))
    else:
      cfg[field] = rng.choice(WEIRD)
  return cfg


def _mutate_header(rng, header, data):
  """(header, data, pad) with one entry or the framing broken."""
  keys = [k for k in header if k != "__metadata__"]
  key = rng.choice(keys)
  entry = header[key]
  what = rng.randrange(9)
  if what == 0:
    entry["shape"] = [rng.choice((0, 1, 2, 10**9, 2**62))
                      for _ in range(rng.randrange(4))]
  elif what == 1:
    entry["shape"] = rng.choice(("32", [32.0], [-1], None, [[32]], [True]))
  elif what == 2:
    entry["dtype"] = rng.choice(("I32", "BOOL", "U8", "I64", "F16", "F64",
                                 "BF16", "X", 32, None))
  elif what == 3:
    b, e = entry["data_offsets"]
    entry["data_offsets"] = rng.choice(([e, b], [b, e + 4], [b, 2**60],
                                        [-4, e], [b], "0", [b, e, 0]))
  elif what == 4:
    data = data[:rng.randrange(len(data))]
  elif what == 5:
    header[key] = rng.choice(([1, 2], "x", None, {}))
  elif what == 6:
    header = rng.choice(([header], "x", 7))
  elif what == 7:
    header["__metadata__"] = rng.choice(([], "x", {"format": "pt"}))
  else:
    sh = list(entry["shape"])
    if sh:
      i = rng.randrange(len(sh))
      sh[i] = sh[i] * rng.choice((2, 4)) if sh[i] else 1
      n = np.prod(sh) * 4
      b = entry["data_offsets"][0]
      entry["shape"], entry["data_offsets"] = sh, [b, b + int(n)]
  return header, data


def _raw_damage(rng, raw):
  what = rng.randrange(4)
  if what == 0:
    return raw[:rng.randrange(len(raw))]
  if what == 1:
    return struct.pack("<Q", rng.choice((0, 1, 2**60, 2**64 - 1,
                                         len(raw)))) + raw[8:]
  if what == 2:
    n = struct.unpack("<Q", raw[:8])[0]
    i = 8 + rng.randrange(n)
    return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]
  return raw[:8] + os.urandom(16) + raw[24:]


class _Timeout(Exception):
  pass


def _alarm(signum, frame):
  raise _Timeout()


def test_fuzz_config_and_headers(tmp_path):
  rng = random.Random(20)
  originals = {k: (json.loads(open(os.path.join(FIXTURES, k, "config.json")).read()),
                   open(os.path.join(FIXTURES, k, "model.safetensors"), "rb").read())
               for k in KINDS}
  dirs = {}
  for k in KINDS:
    dirs[k] = tmp_path / k
    shutil.copytree(os.path.join(FIXTURES, k), dirs[k])
  hf.from_pretrained(BERT)  # compiled once: later loads are cheap
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
  previous = signal.signal(signal.SIGALRM, _alarm)
  outcomes = {"error": 0, "loaded": 0}
  start = time.time()
  try:
    for i in range(200):
      kind = rng.choice(KINDS)
      d = dirs[kind]
      cfg, raw = originals[kind]
      cfg = json.loads(json.dumps(cfg))
      (d / "config.json").write_text(json.dumps(cfg))
      f = d / "model.safetensors"
      choice = rng.randrange(3)
      if choice == 0:
        (d / "config.json").write_text(json.dumps(_mutate_config(rng, cfg)))
        f.write_bytes(raw)
      elif choice == 1:
        header, data = _split_bytes(raw)
        header, data = _mutate_header(rng, header, data)
        _join(f, header, data, pad=rng.random() < 0.8)
      else:
        f.write_bytes(_raw_damage(rng, raw))
      head = "mlm" if kind == "bert_mlm_tiny" and rng.random() < 0.5 else "classifier"
      signal.setitimer(signal.ITIMER_REAL, 5.0)
      try:
        model, config = hf.from_pretrained(str(d), head=head)
        outcomes["loaded"] += 1
        assert config.model.num_layers == 2 and config.model.embed_dim == 32
      except hf.CheckpointError as e:
        outcomes["error"] += 1
        assert "\n" not in str(e), (i, str(e))
      except _Timeout:
        pytest.fail(f"mutation {i} ({kind}) took over 5 s")
      finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
  finally:
    signal.signal(signal.SIGALRM, previous)
  grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
  print(f"fuzz: {outcomes}, {time.time() - start:.1f} s, max RSS +{grown_mib:.0f} MiB")
  assert outcomes["error"] >= 150, outcomes
  assert grown_mib < 200, grown_mib  # the checkpoints are < 100 KiB each


def _split_bytes(raw):
  n = struct.unpack("<Q", raw[:8])[0]
  return json.loads(raw[8:8 + n]), raw[8 + n:]
