"""Name resolution: case-insensitive ids, aliases, and "did you mean" suggestions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

from kvopt.errors import CatalogError

_SUFFIXES = ("-instruct", "-chat", "-hf", "-base", "-it")


def normalize(name: str) -> str:
    """Lower-case, unify separators, and drop an ``org/`` prefix and chat/instruct suffixes."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = re.sub(r"-+", "-", key)
    if "/" in key:
        key = key.rsplit("/", 1)[1]
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix):
                key = key[: -len(suffix)]
                changed = True
    return key


def compact(name: str) -> str:
    """``normalize`` without separators: 'RTX 4090' and 'rtx-4090' both become 'rtx4090'."""
    return re.sub(r"[^a-z0-9.]", "", normalize(name))


class NameIndex:
    """Maps every spelling of a catalog entry to its canonical id."""

    def __init__(self, kind: str, names: Mapping[str, Iterable[str]]) -> None:
        self.kind = kind
        self._canonical = sorted(names)
        self._index: dict[str, str] = {}
        for canonical, aliases in names.items():
            for spelling in (canonical, *aliases):
                for key in {spelling.strip().lower(), normalize(spelling), compact(spelling)}:
                    owner = self._index.get(key)
                    if owner is not None and owner != canonical:
                        raise CatalogError(
                            f"{kind} alias '{spelling}' is claimed by both '{owner}' and "
                            f"'{canonical}'; make aliases unique in the catalog"
                        )
                    self._index[key] = canonical

    @property
    def canonical_ids(self) -> list[str]:
        return list(self._canonical)

    def lookup(self, name: str) -> str | None:
        """Canonical id for ``name``, or None."""
        for key in (name.strip().lower(), normalize(name), compact(name)):
            if key in self._index:
                return self._index[key]
        return None

    def resolve(self, name: str) -> str:
        """Canonical id for ``name``; raises :class:`CatalogError` with close matches."""
        found = self.lookup(name)
        if found is not None:
            return found
        raise CatalogError(
            f"unknown {self.kind} '{name}' (see `kvopt list-{self.kind}s`)",
            suggestions=self.suggest(name),
        )

    def suggest(self, name: str, n: int = 4) -> list[str]:
        """Entries that contain the name (e.g. 'a100' -> every A100), then close spellings."""
        key = normalize(name)
        out: list[str] = []
        if len(key) >= 2:
            for c in self._canonical:
                if key in normalize(c) and c not in out:
                    out.append(c)
        for hit in difflib.get_close_matches(key, list(self._index), n=8, cutoff=0.5):
            canonical = self._index[hit]
            if canonical not in out:
                out.append(canonical)
        return out[:n]
