"""Shared test settings: strict JAX numerics and a per-session data cache."""

import os
import tempfile

# XLA's CPU compile dominates this suite (tiny shapes, many programs). Cheaper
# backend passes cut it a lot and change no semantics; set before jax loads.
# Subprocesses started by tests inherit it.
os.environ["XLA_FLAGS"] = " ".join(filter(None, [
    os.environ.get("XLA_FLAGS", ""),
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
]))

# Many tests compile the same tiny programs (the ListOps smoke model trained
# by a dozen subprocesses); JAX's persistent compilation cache, shared by the
# xdist workers of one run and every subprocess they start, compiles each
# once. It starts empty on every run (a fresh directory per run id), so no
# test depends on an earlier run, and it changes no result (it stores the
# compiled executables XLA would produce again).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"lightjax-test-jax-cache-{_RUN}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # pylint: disable=g-import-not-at-top
import pytest

# Broadcasting bugs fail loudly (nanodo's tests do the same).
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One generated-data cache for the whole session (and each xdist worker)."""
  return str(tmp_path_factory.mktemp("data"))


def pytest_configure(config):
  # Multi-process end-to-end tests left out of the README's test command
  # (CI's budget); `-m slow` runs them.
  config.addinivalue_line(
      "markers", "slow: a multi-process end-to-end test of minutes of CPU,"
      " run with -m slow")
  # jax2onnx 0.13.0 (the newest that admits our orbax pin) reads Flax
  # Variables through the deprecated `.value`; its warnings are its own, and
  # hundreds of them would hide ours.
  config.addinivalue_line(
      "filterwarnings",
      "ignore:'.value' access is now deprecated:DeprecationWarning:jax2onnx")
