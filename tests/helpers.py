"""Small helpers shared by tests (not fixtures: plain functions)."""

import json
import os

from lightjax import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str):
  """Loads "configs/x.py[:arg]" relative to the repository root."""
  return config_lib.load_config_file(os.path.join(REPO, spec))


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
