"""Small helpers shared by tests (not fixtures: plain functions)."""

import os

from lightjax import config_lib
from lightjax.tables import read_jsonl  # noqa: F401  (re-exported)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str):
  """Loads "configs/x.py[:arg]" relative to the repository root."""
  return config_lib.load_config_file(os.path.join(REPO, spec))
