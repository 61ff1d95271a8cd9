"""File input/output shared by every writer and reader of user files: atomic writes (a
temporary file in the target folder, then a rename) and JSON inputs with clear errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kvopt.errors import InputError


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a
    half-written one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_input(path: str | Path, field: str) -> Any:
    """Parse a user's JSON file; unreadable or malformed files are InputErrors naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(field, str(p), f"cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(field, str(p), f"not JSON (line {exc.lineno}: {exc.msg})") from None
