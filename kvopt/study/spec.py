"""A study: a base scenario plus axes to sweep (product or zip), one solve kind, the outputs
to keep; from ``study.yaml`` or built in code.

File errors read ``FILE:LINE: path: problem`` from the YAML node positions (the approach of
``kvopt.fleet.fleetfile``); unknown keys name their close matches.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kvopt.errors import InputError
from kvopt.fileio import LineError, read_yaml_mapping
from kvopt.study.fields import OUTPUTS, check_value
from kvopt.study.scenarios import (
    RESERVED,
    Scenario,
    check_key,
    close_matches,
    fields_for,
    normalize,
    prefix,
)

TOP_KEYS = ("name", "solve", "sweep", "base", "axes", "outputs", "keep_result")


class StudyFileError(LineError):
    """A study-file error at a line."""


def _problem(exc: InputError) -> str:
    if exc.value == "(key)":
        return exc.rule
    if exc.value is None:
        return f"{exc.field}: {exc.rule}" + (f" ({exc.fix})" if exc.fix else "")
    return f"{exc.value!r}: {exc.rule}" + (f" ({exc.fix})" if exc.fix else "")


@dataclass(frozen=True, kw_only=True)
class Study:
    """``axes`` maps a scenario key to its values (``{"rps": [5, 10]}``), or a group name to
    named settings (``{"tier": {"gold": {"slo_tpot_p99_ms": 30}, ...}}``: the name becomes a
    label column). ``sweep``: ``product`` (every combination) or ``zip`` (i-th with i-th)."""

    solve: str
    base: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, Any] = field(default_factory=dict)
    sweep: str = "product"
    outputs: tuple[str, ...] = ()  # () = every output column of the solve
    keep_result: bool = True  # store each scenario's full result JSON
    name: str = "study"
    base_dir: Path = field(default_factory=Path.cwd)  # price books and fleet files

    def __post_init__(self) -> None:
        fields_for(self.solve)  # unknown solve -> close matches
        if self.sweep not in ("product", "zip"):
            raise InputError("sweep", self.sweep, "allowed: product, zip")
        for out in self.outputs:
            if out not in OUTPUTS[self.solve]:
                raise InputError("outputs", out, f"not an output of '{self.solve}'; "
                                 + close_matches(out, OUTPUTS[self.solve]))
        for key in self.base:
            check_key(self.solve, key)
        seen: set[str] = set()
        for name, values in self.axes.items():
            for key in _axis_keys(self.solve, name, values):
                if key in seen:
                    raise InputError(f"axes.{name}", key, "set by two axes; keep one")
                seen.add(key)
        lengths = {len(v) for v in self.axes.values()}
        if self.sweep == "zip" and len(lengths) > 1:
            raise InputError("axes", sorted(lengths), "zip needs axes of equal length")

    def settings(self) -> list[dict[str, Any]]:
        """The raw scenario dicts (base + one value of each axis), before normalization."""
        per_axis = []
        for name, values in self.axes.items():
            if isinstance(values, Mapping):  # group axis: label -> settings
                per_axis.append([{**dict(s), "labels": {name: str(label)}}
                                 for label, s in values.items()])
            else:
                per_axis.append([{name: v} for v in values])
        combos = (itertools.product(*per_axis) if self.sweep == "product"
                  else zip(*per_axis, strict=True))
        out = []
        for combo in combos:
            raw = dict(self.base)
            labels = dict(raw.get("labels") or {})
            for part in combo:
                labels.update(part.get("labels", {}))
                raw.update({k: v for k, v in part.items() if k != "labels"})
            if labels:
                raw["labels"] = labels
            out.append(raw)
        return out

    def scenarios(self) -> list[Scenario]:
        """Normalized scenarios in sweep order; duplicates (same hash) kept once."""
        out: dict[str, Scenario] = {}
        for i, raw in enumerate(self.settings()):
            params = normalize(self.solve, raw, base_dir=self.base_dir,
                               where=prefix(f"{self.name}: scenario {i}: "))
            sc = Scenario(solve=self.solve, params=params)
            out.setdefault(sc.key, sc)
        return list(out.values())

    def run(self, out_dir: str | Path, **kw: Any) -> Any:
        """Run (or resume) in ``out_dir`` and return the results as a pandas DataFrame;
        keywords as :func:`kvopt.study.run.run_study`."""
        from kvopt.study.run import run_study
        from kvopt.study.store import load_results

        run_study(self, out_dir, **kw)
        return load_results(out_dir)


def _axis_keys(solve: str, name: str, values: Any) -> list[str]:
    if isinstance(values, Mapping):
        fields = fields_for(solve)
        if name in fields or name in RESERVED or name in OUTPUTS[solve]:
            raise InputError(f"axes.{name}", "(key)", "a group axis (named settings) needs a "
                             "name that is not a scenario key or an output column")
        keys: set[str] = set()
        for label, settings in values.items():
            if not isinstance(settings, Mapping) or not settings:
                raise InputError(f"axes.{name}.{label}", settings,
                                 "must map scenario keys to values")
            for key in settings:
                check_key(solve, str(key))
                keys.add(str(key))
        return sorted(keys)
    if not isinstance(values, list | tuple) or not values:
        raise InputError(f"axes.{name}", values, "must be a non-empty list of values "
                         "(or named settings)")
    check_key(solve, name)
    return [name]


def _node(mapping: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(mapping, yaml.MappingNode):
        for k, v in mapping.value:
            if k.value == key:
                return k, v
    return None


def load_study(path: str | Path) -> Study:
    """A :class:`Study` from a study file, checked against the ``study`` schema (``kvopt
    schema study``) and then value by value; every error names its line."""
    from kvopt.schemas import validate

    p = Path(path)
    origin = str(p)
    root, data = read_yaml_mapping(p, "study file", StudyFileError,
                                   "expected a mapping with 'solve' and 'base'")
    validate("study", data, source=origin, nodes=root, error=StudyFileError)

    def fail(node: yaml.Node, where: str, problem: str) -> StudyFileError:
        return StudyFileError(origin, node.start_mark.line + 1, where, problem)

    solve = data["solve"]

    def check(mapping_node: yaml.Node, where: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            kn, vn = _node(mapping_node, str(key)) or (mapping_node, mapping_node)
            try:
                f = check_key(solve, str(key))
            except InputError as exc:
                raise fail(kn, f"{where}.{key}", _problem(exc)) from None
            items = (list(zip(value, vn.value, strict=False))
                     if where == "axes" and isinstance(vn, yaml.SequenceNode) else [(value, vn)])
            for j, (v, node) in enumerate(items):
                at = f"{where}.{key}" + (f"[{j}]" if len(items) > 1 or where == "axes" else "")
                try:
                    check_value(f, v, p.parent)
                except InputError as exc:
                    raise fail(node, at, _problem(exc)) from None

    base = data.get("base") or {}
    if base:
        check(_node(root, "base")[1], "base", base)  # type: ignore[index]
    axes = data.get("axes") or {}
    axes_node = _node(root, "axes")
    for name, values in axes.items():
        kn, vn = _node(axes_node[1], str(name))  # type: ignore[index,misc]
        if isinstance(values, dict):
            try:
                _axis_keys(solve, str(name), values)
            except InputError as exc:
                raise fail(kn, f"axes.{name}", _problem(exc)) from None
            for label, settings in values.items():
                _, sn = _node(vn, str(label))  # type: ignore[misc]
                check(sn, f"axes.{name}.{label}", settings)
        elif not isinstance(values, list) or not values:
            raise fail(vn, f"axes.{name}", "must be a non-empty list of values "
                       "(or named settings)")
        else:
            check(axes_node[1], "axes", {name: values})  # type: ignore[index]
    try:
        outputs = data.get("outputs") or ()
        if not isinstance(outputs, list | tuple):
            raise InputError("outputs", outputs, "must be a list of output columns")
        study = Study(solve=solve, base=base, axes=axes, sweep=data.get("sweep", "product"),
                      outputs=tuple(outputs), keep_result=bool(data.get("keep_result", True)),
                      name=str(data.get("name") or p.stem), base_dir=p.parent.resolve())
    except InputError as exc:
        top = exc.field.split(".")[0]
        n = _node(root, top if top in TOP_KEYS else "axes")
        raise fail(n[0] if n else root, exc.field, _problem(exc)) from None
    for i, raw in enumerate(study.settings()):  # keys missing or in conflict after merging
        try:
            normalize(solve, raw, base_dir=study.base_dir)
        except InputError as exc:
            n = _node(root, "base")
            raise fail(n[0] if n else root, f"scenario {i}", _problem(exc)) from None
    return study
