"""Shared test settings: strict JAX numerics and a per-session data cache."""

import os

import jax
import pytest

# Broadcasting bugs fail loudly (nanodo's tests do the same).
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One generated-data cache for the whole session (and each xdist worker)."""
  return str(tmp_path_factory.mktemp("data"))
