"""files.atomic_write: whole files only, and the permissions open() gives."""

import os

import pytest

from lightjax import files


def test_atomic_write_replaces_whole_file_with_default_permissions(tmp_path):
  path = tmp_path / "sub" / "x.json"
  files.atomic_write(str(path), lambda f: f.write("one"))
  files.atomic_write(str(path), lambda f: f.write("two"))
  assert path.read_text() == "two"
  umask = os.umask(0)
  os.umask(umask)
  assert path.stat().st_mode & 0o777 == 0o666 & ~umask
  assert os.listdir(path.parent) == ["x.json"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file(tmp_path):
  path = tmp_path / "x.bin"
  files.atomic_write(str(path), lambda f: f.write(b"old"), binary=True)

  def boom(f):
    f.write(b"partial")
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    files.atomic_write(str(path), boom, binary=True)
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["x.bin"]
