"""The LLM catalog: ``models/llm/*.json`` (HF config.json + a ``kvopt`` block) and user files."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from kvopt.catalog.hf_config import spec_from_hf_config
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.paths import models_dir
from kvopt.catalog.resolve import NameIndex
from kvopt.errors import CatalogError


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object from ``path`` with an error that names the file and position."""
    from kvopt.errors import InputError
    from kvopt.fileio import read_text_input

    try:
        data = json.loads(read_text_input(path, "file"))
    except InputError as exc:
        raise CatalogError(f"{path}: {exc.rule}") from None
    except RecursionError:
        raise CatalogError(f"{path}: not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: "
                           f"{exc.msg}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a JSON object at the top level")
    return data


def load_model_file(path: str | Path) -> ModelSpec:
    """Load a config.json file (or a directory holding one). The ``kvopt`` block is optional."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise CatalogError(f"{p}: no such config.json file")
    cfg = read_json(p)
    meta = cfg.get("kvopt") or {}
    name = meta.get("name") or (p.parent.name if p.name == "config.json" else p.stem)
    return spec_from_hf_config(cfg, origin=str(p), name=str(name), meta=meta)


@cache
def _catalog() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for path in sorted((models_dir() / "llm").glob("*.json")):
        cfg = read_json(path)
        meta = cfg.get("kvopt")
        if not isinstance(meta, dict) or not meta.get("name") or not meta.get("source"):
            raise CatalogError(f"{path}: catalog cards need a 'kvopt' block with name and source")
        spec = spec_from_hf_config(cfg, origin=str(path), meta=meta)
        if spec.name in specs:
            raise CatalogError(f"{path}: duplicate model name '{spec.name}'")
        specs[spec.name] = spec
    return specs


@cache
def _index() -> NameIndex:
    return NameIndex("model", {n: (s.hf_id, *s.aliases) for n, s in _catalog().items()})


def list_models() -> list[ModelSpec]:
    """Every catalog model, sorted by name."""
    return [_catalog()[n] for n in sorted(_catalog())]


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A catalog model by name/alias (case-insensitive), or a config.json path."""
    text = str(name_or_path)
    found = _index().lookup(text)
    if found is not None:
        return _catalog()[found]
    p = Path(text).expanduser()
    if p.exists() or text.endswith(".json"):
        return load_model_file(p)
    return _catalog()[_index().resolve(text)]


def with_checkpoint_format(model: str, pairs: tuple[tuple[str, str], ...]
                           ) -> tuple[tuple[str, str], ...]:
    """``pairs`` of (weights, KV) precisions, led by the model's own checkpoint format with
    a bf16 KV cache when none of them has it (gpt-oss ships MXFP4: plan it as released)."""
    own = load_model(model).default_weights
    return pairs if any(w == own for w, _ in pairs) else ((own, "bf16"), *pairs)
