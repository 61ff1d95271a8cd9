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


class NameIndex:
    """Maps every spelling of a catalog entry to its canonical id."""

    def __init__(self, kind: str, names: Mapping[str, Iterable[str]]) -> None:
        self.kind = kind
        self._canonical = sorted(names)
        self._index: dict[str, str] = {}
        for canonical, aliases in names.items():
            for spelling in (canonical, *aliases):
                for key in {spelling.strip().lower(), normalize(spelling)}:
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
        return self._index.get(name.strip().lower()) or self._index.get(normalize(name))

    def resolve(self, name: str) -> str:
        """Canonical id for ``name``; raises :class:`CatalogError` with close matches."""
        found = self.lookup(name)
        if found is not None:
            return found
        raise CatalogError(
            f"unknown {self.kind} '{name}' (see `kvopt list-{self.kind}s`)",
            suggestions=self.suggest(name),
        )

    def suggest(self, name: str, n: int = 3) -> list[str]:
        key = normalize(name)
        hits = difflib.get_close_matches(key, list(self._index), n=8, cutoff=0.5)
        out: list[str] = []
        for hit in hits:
            canonical = self._index[hit]
            if canonical not in out:
                out.append(canonical)
        if not out:
            out = [c for c in self._canonical if key and key.split("-")[0] in c.lower()]
        return out[:n]
