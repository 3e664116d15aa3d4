"""One name -> object registry, used for everything chosen by name.

Attention variants, tasks, models, objectives, schedules, compute dtypes and
benchmarks are each a `Registry`, so they share one set of verbs and one
error format:

  SCHEDULES = Registry("schedule")

  @SCHEDULES.register("cosine")
  def cosine(...): ...

  SCHEDULES.get("cosine")     # the object
  SCHEDULES.names()           # sorted names
  SCHEDULES.get("cosin")      # ValueError: unknown schedule 'cosin'; valid:
                              #   constant, cosine, linear, rsqrt

`get` is the one place a name is checked: config validation and builders both
call it, so a bad name fails with the same message wherever it is met first.
(`scenic`'s model registry and levanter's `register_subclass` are the models.)
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to objects (classes, functions, dtypes) of one kind."""

  def __init__(self, kind: str,
               on_register: Callable[[str, T], None] | None = None):
    """Args:
      kind: what the names are, for messages ("attention", "task", ...).
      on_register: called as on_register(name, obj) before an object is
        added (e.g. to check or stamp it); may raise.
    """
    self.kind = kind
    self._items: dict[str, T] = {}
    self._on_register = on_register

  def register(self, name: str, obj: T | None = None):
    """Registers `obj` under `name`; without `obj`, a decorator that does.

    Raises ValueError if `name` is taken: two things must never share a name.
    """

    def add(o: T) -> T:
      if name in self._items:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      if self._on_register is not None:
        self._on_register(name, o)
      self._items[name] = o
      return o

    return add if obj is None else add(obj)

  def unregister(self, name: str) -> None:
    """Removes `name` (for tests that register a temporary entry)."""
    self.get(name)
    del self._items[name]

  def get(self, name: str) -> T:
    try:
      return self._items[name]
    except (KeyError, TypeError):
      raise ValueError(self.unknown_message(name)) from None

  def unknown_message(self, name: Any) -> str:
    return (f"unknown {self.kind} {name!r}; valid: "
            f"{', '.join(self.names()) or '(none registered)'}")

  def names(self) -> list[str]:
    return sorted(self._items)

  def items(self) -> list[tuple[str, T]]:
    return [(n, self._items[n]) for n in self.names()]

  def __contains__(self, name: object) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    return len(self._items)


def with_defaults(given: Any, defaults: dict[str, Any], what: str
                  ) -> dict[str, Any]:
  """`defaults` updated with `given`, refusing keys `defaults` lacks.

  The one check of option/config keys against a registered entry's defaults
  (attention options, task configs): a misspelt key fails with the valid
  ones listed instead of being silently ignored.

  Args:
    given: a mapping (or None) of the caller's keys.
    defaults: every valid key with its default value.
    what: for the message, e.g. "attention 'local'".
  """
  given = dict(given or {})
  unknown = sorted(set(given) - set(defaults))
  if unknown:
    raise ValueError(
        f"unknown option(s) {unknown} for {what}; valid options:"
        f" {', '.join(sorted(defaults)) or '(none)'}")
  return {**defaults, **given}
