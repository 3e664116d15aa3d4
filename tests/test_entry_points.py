"""Every entry point answers bad input the same way (issue 20, items 2, 6, 9):
one line on stderr (at most 3 with a hint), exit 2 (3: a workdir in use), no
traceback, nothing written where it should not be. The CLI repros run the
real entry point in a subprocess; checks of the shared code paths
(`cli.exit_codes`, `config_lib.load_config_file`, `init_from`) run in
process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lightjax import checkpointing, cli, config_lib, errors, init_from, models
from lightjax.data import glue
from lightjax.models import weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT = os.path.join(ROOT, "tests", "fixtures", "bert_tiny")


def run(module: str, *args: str, cwd=None, env=None):
  proc = subprocess.run(
      [sys.executable, "-m", module, *args], capture_output=True, text=True,
      cwd=cwd or ROOT, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})
  return proc


def one_line(proc, code: int = 2) -> str:
  err = proc.stderr.strip()
  assert proc.returncode == code, (proc.returncode, proc.stderr)
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = [l for l in err.splitlines() if l.strip()]
  assert 1 <= len(lines) <= 3, proc.stderr
  return err


# --- the one mapping ------------------------------------------------------------


def test_hierarchy():
  assert issubclass(weights.CheckpointError, errors.CheckpointError)
  assert issubclass(glue.GlueFileError, errors.DataError)
  assert issubclass(glue.GlueFileError, FileNotFoundError)  # kept
  for cls in (errors.ConfigError, errors.DataError, errors.CheckpointError,
              errors.PathError, errors.InUse):
    assert issubclass(cls, errors.UserInputError)


@pytest.mark.parametrize("exc,code,text", [
    (weights.CheckpointError("bad tensor x"), 2, "bad tensor x"),
    (errors.DataError("bad tsv"), 2, "bad tsv"),
    (errors.InUse("busy"), 3, "busy"),
    (IsADirectoryError(21, "Is a directory", "W/metrics.jsonl"), 2,
     "W/metrics.jsonl: Is a directory"),
    (FileExistsError(17, "File exists", "out"), 2, "out: File exists"),
    (checkpointing.WorkdirInUse("in use"), 3, "in use"),
    (KeyboardInterrupt(), 130, "interrupted by signal 2 (SIGINT); rerun"),
])
def test_exit_codes_maps_user_input(capsys, exc, code, text):
  with pytest.raises(SystemExit) as info:
    with cli.exit_codes("prog"):
      raise exc
  assert info.value.code == code
  err = capsys.readouterr().err
  assert err.startswith(f"prog: {text}") and err.count("\n") == 1


def test_exit_codes_keeps_bugs():
  with pytest.raises(RuntimeError):
    with cli.exit_codes("prog"):
      raise RuntimeError("a bug in lightjax")


# --- config files (item 9): the path flags_parser and sweep.load share --------


@pytest.mark.parametrize("body,match", [
    ("def get_config():\n  raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("def get_config(:\n", "syntax error"),
    ("x = 1\n", "defines no get_config"),
    ("def get_config():\n  return None\n", "returned NoneType"),
    ("import nosuchmodule_xyz\n", "ModuleNotFoundError"),
])
def test_config_file_errors(tmp_path, body, match):
  path = tmp_path / "c.py"
  path.write_text(body)
  with pytest.raises(errors.ConfigError, match=match) as info:
    config_lib.load_config_file(str(path))
  assert "\n" not in str(info.value)


# --- a teacher still training (item 6) ---------------------------------------


def _hold_lock(workdir):
  """A process holding <workdir>/.lock as checkpointing.WorkdirLock does."""
  code = ("import fcntl, os, sys, time\n"
          f"f = open({os.path.join(workdir, '.lock')!r}, 'a+')\n"
          "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
          "f.seek(0); f.truncate(); f.write(f'{os.getpid()} somehost\\n')\n"
          "f.flush(); print('held', flush=True); time.sleep(120)\n")
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_teacher_still_training(tmp_path):
  teacher = tmp_path / "teacher"
  teacher.mkdir()
  (teacher / init_from.MODEL_JSON).write_text('{"model": {}}')
  holder = _hold_lock(str(teacher))
  try:
    with pytest.raises(errors.InUse, match="still training"):
      init_from.open_source(str(teacher))
    proc = run("lightjax.shrink", "--config", "configs/shrink/prune_heads.py",
               f"--config.init_from={teacher}",
               "--workdir", str(tmp_path / "student"))
    err = one_line(proc, 3)
    assert "still training" in err
    assert not (tmp_path / "student" / "checkpoints").exists()
  finally:
    holder.kill()
    holder.wait()
  init_from.check_not_training(str(teacher))  # released: no error


# --- the CLI repros (subprocesses) --------------------------------------------


def test_train_glue_not_utf8(tmp_path):
  sst = tmp_path / "G" / "SST-2"
  sst.mkdir(parents=True)
  for name in ("train.tsv", "dev.tsv"):
    (sst / name).write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
  work = tmp_path / "W"
  proc = run("lightjax.train", "--config", "configs/glue.py:sst2,tiny",
             f"--config.task.glue_dir={tmp_path / 'G'}",
             f"--config.init_from=hf:{BERT}", "--workdir", str(work),
             "--config.data_dir", str(tmp_path / "data"))
  err = one_line(proc)
  assert "not UTF-8" in err and "train.tsv" in err
  assert not (work / "checkpoints").exists()


def test_train_config_file_raises_and_extra_argument(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config():\n  raise RuntimeError('boom')\n")
  proc = run("lightjax.train", "--config", str(bad), "--workdir",
             str(tmp_path / "W"))
  assert "boom" in one_line(proc)
  proc = run("lightjax.train", "--config", "configs/listops.py:tiny",
             "--workdir", str(tmp_path / "W"), "extra")
  assert "unexpected arguments: extra" in one_line(proc)
  assert not (tmp_path / "W").exists()


def test_sweep(tmp_path):
  proc = run("lightjax.sweep", "experiments/lra_table1.py:nosuch",
             "--workdir", str(tmp_path / "S"))
  assert "nosuch" in one_line(proc)
  assert not (tmp_path / "S").exists()
  proc = run("lightjax.sweep", "experiments/lra_table1.py:smoke")
  assert "missing required flag --workdir" in one_line(proc)
  out = tmp_path / "file"
  out.write_text("x")
  proc = run("lightjax.sweep", "experiments/lra_table1.py:smoke",
             "--workdir", str(out))
  assert str(out) in one_line(proc)
  assert out.read_text() == "x"


def test_save_pretrained_missing_flag(tmp_path):
  proc = run("lightjax.save_pretrained", "--workdir", str(tmp_path))
  assert "missing required flag --out" in one_line(proc)


def test_bench_out_is_a_file(tmp_path):
  out = tmp_path / "file"
  out.write_text("x")
  proc = run("lightjax.bench", "--config", "configs/bench.py:cpu_quick",
             "--out", str(out))
  assert str(out) in one_line(proc)
  assert out.read_text() == "x"


# --- an output path that is a file (item 9): refused before any work ----------


def _teacher(tmp_path, name="teacher", task="listops", **model):
  """A workdir holding only a model.json (a run's description, no weights):
  what the checks that come before any weight is read look at."""
  directory = tmp_path / name
  directory.mkdir()
  init_from.write_model_json(
      str(directory), models.ModelConfig(**model), vocab_size=20,
      num_classes=10, max_len=64, pad_id=0, task=task)
  return directory


@pytest.mark.parametrize("module", ["export", "report", "shrink"])
def test_out_path_is_a_file(tmp_path, module):
  out = tmp_path / "file"
  out.write_text("x")
  teacher = _teacher(tmp_path)
  args = {
      "export": ["--workdir", str(teacher), "--out", str(out)],
      "report": [os.path.join(ROOT, "results", "listops_long_cpu"),
                 "--out", str(out)],
      "shrink": ["--config", "configs/shrink/prune_heads.py",
                 f"--config.init_from={teacher}", "--workdir", str(out)],
  }[module]
  err = one_line(run(f"lightjax.{module}", *args))
  assert f"{out} is a file, not a directory" in err
  assert out.read_text() == "x"
  assert sorted(os.listdir(teacher)) == [init_from.MODEL_JSON]


def test_model_json_without_sizes(tmp_path):
  """A model.json that parses but lacks the sizes: one line, not KeyError."""
  (tmp_path / init_from.MODEL_JSON).write_text('{"model": {}, "max_len": 8}')
  with pytest.raises(errors.CheckpointError,
                     match="vocab_size, num_classes missing") as info:
    init_from.open_source(str(tmp_path))
  assert "\n" not in str(info.value)


# --- lightjax.train: data, workdir paths, init_from (items 2, 4) ---------------


def _glue(tmp_path, train: bytes):
  sst = tmp_path / "G" / "SST-2"
  sst.mkdir(parents=True)
  (sst / "train.tsv").write_bytes(train)
  (sst / "dev.tsv").write_bytes(b"sentence\tlabel\nok\t1\n")
  return ["--config", "configs/glue.py:sst2,tiny",
          f"--config.task.glue_dir={tmp_path / 'G'}",
          f"--config.task.tokenizer={BERT}"]


def _imdb_txt_folder(tmp_path):
  """A review `<id>_<rating>.txt` that is a folder."""
  for split in ("train", "test"):
    for label in ("pos", "neg"):
      folder = tmp_path / "imdb" / split / label
      folder.mkdir(parents=True)
      (folder / "0_9.txt").write_text("a fine film")
  (tmp_path / "imdb" / "train" / "pos" / "1_8.txt").mkdir()
  return ["--config", "configs/lra_text.py:tiny",
          f"--config.task.imdb_dir={tmp_path / 'imdb'}"]


def _lm(tmp_path, text: str = "a few words of text. " * 100, **kw):
  (tmp_path / "text.txt").write_text(text)
  return ["--config", "configs/lm.py:tiny",
          f"--config.task.path={tmp_path / 'text.txt'}"] + [
              f"--config.{k}={v}" for k, v in kw.items()]


def _in_workdir(name):
  """A folder at W/<name>, where the run keeps a file."""
  def make(tmp_path):
    (tmp_path / "W" / name).mkdir(parents=True)
    return _lm(tmp_path)
  return make


def _data_dir_a_file(tmp_path):
  (tmp_path / "datafile").write_text("x")
  return ["--config", "configs/listops.py:tiny"]


def _init_from_another_task(tmp_path):
  """A classifier trained on ListOps as the start of a language model."""
  return _lm(tmp_path, init_from=_teacher(tmp_path))


TRAIN_CASES = {  # name: (make the input -> train's args, what the line says)
    "glue_missing_column": (lambda p: _glue(p, b"text\tlabel\nok\t1\n"),
                            "has no column(s) ['sentence']"),
    "glue_bad_label": (lambda p: _glue(p, b"sentence\tlabel\nok\tyes\n"),
                       "unknown label(s) ['yes']"),
    "glue_empty_file": (lambda p: _glue(p, b""), "train.tsv is empty"),
    "imdb_txt_is_a_folder": (_imdb_txt_folder, "1_8.txt cannot be read"),
    "lm_text_too_short": (lambda p: _lm(p, "ab"), "2 bytes of text are too few"),
    "metrics_jsonl_a_folder": (_in_workdir("metrics.jsonl"),
                               "metrics.jsonl is a directory"),
    "lock_a_folder": (_in_workdir(".lock"), ".lock is a directory"),
    "data_dir_a_file": (_data_dir_a_file, "datafile is a file"),
    "init_from_another_task": (
        _init_from_another_task,
        "holds a model encoder_classifier (trained on task listops), which"
        " cannot run task lm (lm)"),
    "model_for_another_task": (
        lambda p: ["--config", "configs/listops.py:tiny",
                   "--config.model.name=decoder_lm"],
        "model 'decoder_lm' cannot run task listops (classification)"),
    "sentences_without_a_teacher": (
        lambda p: ["--config", "configs/sentences.py:tiny",
                   f"--config.task.source={_lines(p)}",
                   f"--config.task.tokenizer={BERT}"],
        "task sentences has no targets of its own"),
}


def _lines(p) -> str:
  path = p / "sentences.txt"
  path.write_text("".join(f"A short sentence number {i} of the file.\n"
                          for i in range(60)))
  return str(path)


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_bad_input(tmp_path, case):
  """One line, exit 2, before any compile; the workdir keeps what it held."""
  make, says = TRAIN_CASES[case]
  args = make(tmp_path)
  work = tmp_path / "W"
  before = sorted(os.listdir(work)) if work.exists() else None
  env = ({"LIGHTJAX_DATA_DIR": str(tmp_path / "datafile")}
         if case == "data_dir_a_file" else {})
  if not any(a.startswith("--config.data_dir") for a in args) and not env:
    args.append(f"--config.data_dir={tmp_path / 'data'}")
  err = one_line(run("lightjax.train", *args, "--workdir", str(work),
                     env=env))
  assert says in err, err
  assert (sorted(os.listdir(work)) if work.exists() else None) == before
