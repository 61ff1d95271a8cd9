"""JSON Schemas (draft 2020-12) of kvopt's file formats, shipped with the package: the one
documentation of each format, printed by ``kvopt schema NAME``, and what its reader checks a
file against before its own semantic checks.

- ``plan``: the plan JSON (``kvopt.plan/1``) of ``kvopt plan/size --output``, read by
  ``kvopt export`` and ``kvopt validate --plan`` (:func:`kvopt.export.load_plan`);
- ``bench``: the bench result (``kvopt.bench/1``) of ``kvopt bench`` and ``kvopt
  import-bench``, read by ``validate`` and ``calibrate`` (:func:`kvopt.bench.result.load_bench`);
- ``fleet``: ``fleet.yaml`` of ``kvopt size`` (:func:`kvopt.fleet.fleetfile.load_fleet_file`);
- ``study``: ``study.yaml`` of ``kvopt study run`` (:func:`kvopt.study.load_study`).

A failed check is one line: an :class:`~kvopt.errors.InputError` naming the file, the field
path (``workloads[2].rate_rps``), the bad value, what is allowed and the fix; YAML files get
``FILE:LINE: path: problem`` from the node positions. ``jsonschema`` is imported only when a
file is checked (``kvopt --help`` stays light).

One annotation beyond the standard vocabulary: ``x-required`` marks the scenario keys of a
study that every scenario must set (in ``base`` or an axis: a merge no schema can express).
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from kvopt.errors import InputError

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

    from kvopt.fileio import LineError

NAMES = ("plan", "bench", "fleet", "study")
# what each schema describes (`kvopt schema --list`)
SUMMARY = {
    "plan": "kvopt.plan/1: the plan JSON of kvopt plan/size --output (read by export, "
            "validate --plan)",
    "bench": "kvopt.bench/1: a benchmark result (kvopt bench, import-bench; read by "
             "validate, calibrate)",
    "fleet": "fleet.yaml: workloads and constraints for kvopt size",
    "study": "study.yaml: a sweep of scenarios for kvopt study run",
}
_VALUE_CHARS = 60  # longest value repr in a message


def _unknown(name: str) -> InputError:
    return InputError("schema", name, f"unknown schema; allowed: {', '.join(NAMES)}",
                      "kvopt schema --list describes them")


@cache
def schema_text(name: str) -> str:
    """The schema file's text, as shipped."""
    if name not in NAMES:
        raise _unknown(name)
    return (resources.files(__name__) / f"{name}.schema.json").read_text(encoding="utf-8")


@cache
def _schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(name))
    return data


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of file format ``name`` (one of :data:`NAMES`), as a fresh dict."""
    return copy.deepcopy(_schema(name))


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema(name))


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One way a file breaks its schema. ``path`` leads to the field (its last step may be
    a key that is missing or unknown); ``at`` to the node whose line names it (the parent
    of a missing key, the key itself when ``key_line``)."""

    path: tuple[str | int, ...]
    at: tuple[str | int, ...]
    key_line: bool
    value: Any
    has_value: bool
    rule: str
    fix: str = ""

    @property
    def where(self) -> str:
        return field_path(self.path)

    @property
    def phrase(self) -> str:
        """``VALUE: RULE`` (``VALUE; allowed: ...`` for a choice), or the rule alone."""
        if not self.has_value:
            return self.rule
        sep = "; " if self.rule.startswith(("allowed:", "did you mean")) else ": "
        return f"{_short(self.value)}{sep}{self.rule}"

    @property
    def text(self) -> str:
        """The problem as one phrase with its fix: ``VALUE: RULE (FIX)``."""
        return self.phrase + (f" ({self.fix})" if self.fix else "")


def field_path(path: Sequence[str | int]) -> str:
    """``("workloads", 2, "rate_rps")`` -> ``workloads[2].rate_rps``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(file)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS - 3] + "..."


def problems(name: str, data: Any) -> list[Problem]:
    """Every way ``data`` breaks schema ``name``, in document order (empty: it is valid)."""
    found = [_problem(name, e) for e in _validator(name).iter_errors(data)]
    return sorted(found, key=lambda p: _position(data, p.at if not p.key_line else p.path))


def validate(name: str, data: Any, *, source: str, nodes: Any = None,
             error: type[LineError] | None = None) -> None:
    """Check ``data`` (parsed from file ``source``) against schema ``name``; the first
    problem in document order raises. With ``nodes`` (the YAML node tree of the file) the
    error is ``error`` (a :class:`~kvopt.fileio.LineError`) at the problem's line;
    otherwise an :class:`InputError` naming the file: ``NAME='FILE': field 'TOP': ...``."""
    found = problems(name, data)
    if not found:
        return
    p = found[0]
    if nodes is not None:
        from kvopt.fileio import LineError

        raise (error or LineError)(source, yaml_line(nodes, p.at if not p.key_line else p.path,
                                                     key=p.key_line), p.where, p.text)
    top = f"field '{p.path[0]}'" if p.path else "the file"
    if len(p.path) > 1:  # field 'load': load.value=0: must be > 0
        text = f"{top}: {p.where}{'=' if p.has_value else ' '}{p.phrase}"
    else:  # field 'input_len'=0: must be >= 1; field 'ttft_ms' is required
        text = f"{top}{'=' if p.has_value else ' '}{p.phrase}"
    see = f"kvopt schema {name} documents the format"
    raise InputError(name, source, text, f"{p.fix}; {see}" if p.fix else see)


def yaml_line(root: Any, path: Sequence[str | int], *, key: bool = False) -> int:
    """1-based line of the YAML node at ``path`` (of its key when ``key``); the deepest
    node that exists when the path runs out."""
    import yaml

    node, line = root, root.start_mark.line + 1
    for p in path:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(p):
                    nxt, line = v, (k if key else v).start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and \
                0 <= p < len(node.value):
            nxt = node.value[p]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return int(line)


def _position(data: Any, path: Sequence[str | int]) -> tuple[int, ...]:
    """Document order of the field at ``path``: its index in each parent."""
    out = []
    for p in path:
        if isinstance(data, dict):
            keys = list(data)
            out.append(keys.index(p) if p in keys else len(keys))
            data = data.get(p)
        elif isinstance(data, list) and isinstance(p, int):
            out.append(p)
            data = data[p] if 0 <= p < len(data) else None
        else:
            break
    return tuple(out)


_TYPES = {"integer": "an integer", "number": "a number", "string": "a string",
          "boolean": "true or false", "array": "a list", "object": "a mapping",
          "null": "null"}


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                    ("exclusiveMaximum", "<")):
        if key in schema:
            parts.append(f"{op} {schema[key]:g}")
    return " ".join(parts)


_PLURAL = {"integer": "integers", "number": "numbers", "string": "strings",
           "object": "mappings", "array": "lists"}


def _type_rule(schema: dict[str, Any]) -> str:
    types = schema.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    words = []
    for t in names:
        if t == "null":
            continue
        w = _TYPES.get(t, t)
        if t in ("integer", "number") and _bounds(schema):
            w += f" {_bounds(schema)}"
        items = schema.get("items")
        if t == "array" and isinstance(items, dict) and isinstance(items.get("type"), str):
            w += f" of {_PLURAL.get(items['type'], items['type'])}"
        words.append(w)
    return "must be " + " or ".join(words) if words else "must be null"


def _suggest(word: str, allowed: Sequence[Any], *, sort: bool) -> str:
    options = [str(a) for a in allowed if a is not None]
    near = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    if near:
        return f"did you mean: {', '.join(near)}?"
    return f"allowed: {', '.join(sorted(options) if sort else options)}"


def _example(schema: dict[str, Any]) -> str:
    ex = schema.get("examples")
    if isinstance(ex, list) and ex:
        return f"e.g. {json.dumps(ex[0])}"
    return ""


def _resolve(root: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema and str(schema["$ref"]).startswith("#/"):
        target: Any = root
        for part in str(schema["$ref"])[2:].split("/"):
            target = target[part]
        if not (set(schema) - {"$ref", "description", "default", "x-required"}):
            schema = target
        else:  # a $ref with siblings: both apply; the caller wants the properties
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _schema_at(root: dict[str, Any], path: Sequence[Any]) -> Any:
    node: Any = root
    for p in path:
        node = _resolve(root, node)
        if not ((isinstance(node, dict) and p in node)
                or (isinstance(node, list) and isinstance(p, int))):
            return None
        node = node[p]
    return _resolve(root, node)


def _property_schema(root: dict[str, Any], parent: Any, key: str) -> dict[str, Any]:
    parent = _resolve(root, parent)
    props = parent.get("properties", {}) if isinstance(parent, dict) else {}
    sub = _resolve(root, props.get(key, {}))
    return sub if isinstance(sub, dict) else {}


def _problem(name: str, err: ValidationError) -> Problem:
    root = _schema(name)
    path = tuple(err.absolute_path)
    v, sch = err.validator, err.schema
    inst: Any = err.instance
    vv: Any = err.validator_value
    if not isinstance(sch, dict):
        sch = {}

    def make(rule: str, fix: str = "", *, at: tuple[str | int, ...] = path,
             field: tuple[str | int, ...] = path, key_line: bool = False,
             value: bool = True) -> Problem:
        return Problem(path=field, at=at, key_line=key_line, value=inst, has_value=value,
                       rule=rule, fix=fix)

    if v in ("oneOf", "anyOf"):
        subs = vv
        if all(isinstance(s, dict) and set(s) == {"required"} for s in subs):
            keys = [s["required"][0] for s in subs]
            return make(f"give {'exactly ' if v == 'oneOf' else ''}one of "
                        + " and ".join(keys), field=(*path, keys[0]), value=False)
        from jsonschema.exceptions import best_match

        best = best_match(err.context) if err.context else None
        if best is not None:
            return _problem(name, best)
    if v == "type":
        abs_schema = list(err.absolute_schema_path)
        if "additionalProperties" in abs_schema and path:
            i = len(abs_schema) - 1 - abs_schema[::-1].index("additionalProperties")
            tail = abs_schema[i + 1:]
            if tail in (["type"], ["$ref", "type"]):  # the value itself: an unknown key
                parent = _schema_at(root, abs_schema[:i])
                props = parent.get("properties") if isinstance(parent, dict) else None
                if props:
                    return make("unknown key; " + _suggest(str(path[-1]), list(props),
                                                            sort=True),
                                key_line=True, value=False)
        return make(_type_rule(sch), _example(sch))
    if v == "additionalProperties":
        props = sch.get("properties", {})
        extras = [k for k in inst if k not in props]
        key = extras[0] if extras else "?"
        return make("unknown key; " + _suggest(str(key), list(props), sort=True),
                    field=(*path, key), key_line=True, value=False)
    if v == "required":
        missing = next((k for k in vv if k not in inst), "?")
        prop = _property_schema(root, sch, missing)
        allowed = [str(x) for x in prop.get("enum", []) if x is not None]
        hint = _example(prop) or (f"allowed: {', '.join(allowed)}" if allowed else _unit(prop))
        return make("is required", hint,
                    field=(*path, missing), value=False)
    if v == "enum":
        return make(_suggest(str(inst), vv, sort=False))
    if v == "const":
        return make(f"must be {vv!r}")
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
              "exclusiveMaximum": "<"}[str(v)]
        return make(f"must be {op} {vv:g}", _unit(sch))
    if v == "minItems":
        return make("must be a non-empty list" if vv == 1
                    else f"needs at least {vv} items", _example(sch))
    if v == "maxItems":
        return make(f"has more than {vv} items")
    if v in ("minLength", "pattern"):
        return make("must be a non-empty string", _example(sch))
    if v == "minProperties":
        return make("must be a non-empty mapping", _example(sch))
    return make(err.message)


def _unit(schema: dict[str, Any]) -> str:
    """A short description as a hint (its units), first letter lowered unless an acronym."""
    desc = str(schema.get("description", "")).rstrip(".")
    if not 0 < len(desc) <= 80:
        return ""
    return desc[0].lower() + desc[1:] if desc[1:2].islower() else desc
