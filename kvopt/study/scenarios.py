"""Scenarios: flat dicts of the keys one solve takes, checked against a schema per solve kind.

A scenario is a plain dict (``{"model": "Llama-3.1-8B", "rps": 20, ...}``) so it pickles to
any worker and hashes canonically. :func:`normalize` checks every key's type, fills the
defaults and resolves file references (a price book path becomes its prices, ``gpus: all``
the catalog), so two spellings of the same scenario get the same :func:`scenario_key`:
sha256 of the canonical JSON of (solve, scenario, kvopt version).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvopt._version import __version__
from kvopt.errors import InputError
from kvopt.study.fields import FIELDS, OUTPUTS, SOLVES, Field, check_value


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One normalized scenario of a solve kind, with its content hash."""

    solve: str
    params: Mapping[str, Any]
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", scenario_key(self.solve, self.params))

    def task(self) -> dict[str, Any]:
        """The plain dict a worker receives."""
        return {"key": self.key, "solve": self.solve, "scenario": dict(self.params),
                "kvopt_version": __version__}


def close_matches(word: str, allowed: Any) -> str:
    """`` (did you mean: a, b?)`` for a misspelt key, else the allowed keys."""
    options = sorted(str(a) for a in allowed)
    near = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    if near:
        return f"did you mean: {', '.join(near)}?"
    return f"allowed: {', '.join(options)}"


def fields_for(solve: str) -> dict[str, Field]:
    if solve not in SOLVES:
        raise InputError("solve", solve, close_matches(solve, SOLVES))
    return {f.name: f for f in FIELDS if solve in f.solves}


def check_key(solve: str, key: str) -> Field:
    """The schema field ``key`` of ``solve``; unknown keys name the close matches."""
    fields = fields_for(solve)
    if key not in fields:
        raise InputError(key, "(key)", f"unknown key for solve '{solve}'; "
                         + close_matches(key, fields))
    return fields[key]


def normalize(solve: str, raw: Mapping[str, Any], *, base_dir: Path | None = None,
              where: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Every key of ``solve``'s schema, checked, with defaults filled in and files resolved
    (paths relative to ``base_dir``). ``where(key)`` prefixes errors (a file and line)."""
    fields = fields_for(solve)
    out: dict[str, Any] = {}
    at = where or (lambda key: "")
    for key, value in raw.items():
        try:
            f = check_key(solve, key)
            out[key] = check_value(f, value, base_dir or Path.cwd())
        except InputError as exc:
            raise _located(exc, at(key)) from None
    for name, f in fields.items():
        if name not in out:
            if f.required:
                raise _located(InputError(name, None, f"is required for solve '{solve}'",
                                          f.help), at(""))
            out[name] = f.default
    labels = dict(out.pop("labels", None) or {})
    if isinstance(raw.get("prices"), str):  # a price book file: its name labels the rows
        labels.setdefault("price_book", Path(str(raw["prices"])).stem)
    out["labels"] = dict(sorted(labels.items()))
    try:
        _cross_checks(solve, out)
    except InputError as exc:
        raise _located(exc, at("")) from None
    return {k: out[k] for k in sorted(out)}


def prefix(text: str) -> Callable[[str], str]:
    """A ``where`` for :func:`normalize` that names the scenario."""
    return lambda key: text


def _located(exc: InputError, prefix: str) -> InputError:
    if not prefix:
        return exc
    err = InputError(exc.field, exc.value, exc.rule, exc.fix)
    err.args = (f"{prefix}{exc}",)
    return err


def _cross_checks(solve: str, s: dict[str, Any]) -> None:
    for kind in ("input", "output"):
        if f"{kind}_len" in s and (s[f"{kind}_len"] is None) == (s[f"{kind}_len_dist"] is None):
            raise InputError(f"{kind}_len", s[f"{kind}_len"],
                             f"give exactly one of {kind}_len and {kind}_len_dist")
    if solve == "estimate":
        loads = [k for k in ("batch", "rps", "concurrency") if s[k] is not None]
        if len(loads) != 1:
            raise InputError("batch/rps/concurrency", loads or None,
                             "an estimate needs exactly one of batch, rps and concurrency")
    for name in s["labels"]:
        if name in fields_for(solve) or name in OUTPUTS[solve] or name in RESERVED:
            raise InputError("labels", name, "a label may not reuse a scenario key or an "
                             "output column name")


RESERVED = {"key", "idx", "solve", "status", "error", "seconds", "result", "kvopt_version"}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def scenario_key(solve: str, params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of (solve, scenario, kvopt version). A ``size``
    scenario's fleet file enters by its content, not its path."""
    payload = dict(params)
    if solve == "size" and payload.get("fleet_file"):
        try:
            data = Path(str(payload["fleet_file"])).read_bytes()
        except OSError as exc:
            raise InputError("fleet_file", payload["fleet_file"],
                             f"cannot read it ({exc.strerror})") from None
        payload["fleet_file"] = "sha256:" + hashlib.sha256(data).hexdigest()
    text = canonical_json({"solve": solve, "scenario": payload, "kvopt": __version__})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_scenarios(solve: str, items: list[Mapping[str, Any]], *,
                   base_dir: Path | None = None) -> list[Scenario]:
    """Scenarios built in code: each dict is normalized for ``solve``; duplicates (same
    hash) are kept once, in first-seen order."""
    out: dict[str, Scenario] = {}
    for i, raw in enumerate(items):
        params = normalize(solve, raw, base_dir=base_dir, where=prefix(f"scenario {i}: "))
        sc = Scenario(solve=solve, params=params)
        out.setdefault(sc.key, sc)
    return list(out.values())
