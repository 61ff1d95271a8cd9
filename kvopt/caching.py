"""One registry for kvopt's memo caches.

Evaluations repeat: a plan over a catalog asks for the same step-cost table, steady model,
step-time curve and capacity many times, and a study asks the same questions across its
scenarios. Each of those memos is a :class:`Memo` (or a function wrapped by
:func:`memoized`) registered here under a name, so :func:`clear_all` forgets every one of
them at once (benchmarks time cold evaluations after it). A memo never changes a result:
it only remembers one.

A :class:`Memo` is bounded: past ``max_entries`` it forgets everything and starts again
(simple, and enough for the access patterns here: one plan or study at a time).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., object])

_CLEARERS: dict[str, Callable[[], None]] = {}


def register(name: str, clear: Callable[[], None]) -> None:
    """Add a cache's ``clear`` to the registry under ``name`` (a module reloaded replaces
    its own entry)."""
    _CLEARERS[name] = clear


def registered() -> tuple[str, ...]:
    """The names of every registered cache."""
    return tuple(_CLEARERS)


def clear_all() -> None:
    """Forget every memoized evaluation (results do not change)."""
    for clear in _CLEARERS.values():
        clear()


class Memo(Generic[K, V]):
    """A named, bounded memo: a dict that forgets everything once it holds more than
    ``max_entries`` entries and a new one arrives."""

    def __init__(self, name: str, max_entries: int) -> None:
        self.name = name
        self.max_entries = max_entries
        self._data: dict[K, V] = {}
        register(name, self.clear)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> V:
        """Remember ``value`` under ``key`` (and return it)."""
        if len(self._data) > self.max_entries:
            self._data.clear()
        self._data[key] = value
        return value

    def clear(self) -> None:
        self._data.clear()


def memoized(name: str, maxsize: int | None = None) -> Callable[[F], F]:
    """``functools.lru_cache`` (unbounded when ``maxsize`` is None), registered under
    ``name``."""

    def wrap(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        register(name, cached.cache_clear)
        return cached  # type: ignore[return-value]

    return wrap
