"""Name -> attention class registry: the only place a variant is chosen.

A `lightjax.registry.Registry` like every other registry (tasks, models,
objectives, schedules); this module adds what is attention-specific: each
variant's default options, their check, and building a kernel from a config.
"""

from __future__ import annotations

from typing import Any

from lightjax.registry import Registry, with_defaults


def _stamp(name: str, cls: type) -> None:
  cls.registry_name = name


VARIANTS: Registry[type] = Registry("attention", on_register=_stamp)
register = VARIANTS.register
get = VARIANTS.get
names = VARIANTS.names


def default_options() -> dict[str, dict[str, Any]]:
  """{variant name: its default options}, used to build config sub-dicts."""
  return {n: dict(cls.default_options()) for n, cls in VARIANTS.items()}


def check_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
  """Returns the variant's defaults updated with `options`.

  Raises ValueError for an unknown variant (listing the valid ones), an
  unknown option (listing the variant's options) or a bad option value
  (`AttentionKernel.validate_options`).
  """
  cls = get(name)
  merged = with_defaults(options, cls.default_options(), f"attention {name!r}")
  cls.validate_options(merged)
  return merged


def build(name: str, options: dict[str, Any] | None = None, *,
          shared: dict | None = None, **kwargs):
  """Builds variant `name` with its `options` and the shape kwargs.

  Args:
    name: registered variant name.
    options: the variant's own options (keys of `cls.default_options()`);
      unknown keys raise with the valid ones listed.
    shared: one dict per model, the same for every layer; passed to
      variants with `uses_shared` for cross-layer parameter sharing.
    **kwargs: num_heads, head_dim, max_len, rngs (and dtype).
  """
  cls = get(name)
  merged = check_options(name, options)
  if getattr(cls, "uses_shared", False):
    kwargs["shared"] = {} if shared is None else shared
  return cls(**merged, **kwargs)
