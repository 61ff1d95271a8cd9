"""File input/output shared by every writer and reader of user files: atomic writes (a
temporary file in the target folder, then a rename) and JSON inputs with clear errors."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from kvopt.errors import InputError, KvoptError


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a
    half-written one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would (the
        # replaced file's, else 0666 less the umask) so a plan or report is as readable as
        # any other file the user writes
        os.fchmod(fd, _mode_for(p))
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(p: Path) -> int:
    try:
        return stat.S_IMODE(p.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def read_json_input(path: str | Path, field: str) -> Any:
    """Parse a user's JSON file; unreadable or malformed files are InputErrors naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(field, str(p), f"cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(field, str(p), f"not JSON (line {exc.lineno}: {exc.msg})") from None


class LineError(InputError):
    """An error at a line of a user's YAML file: ``FILE:LINE: path: problem``."""

    def __init__(self, origin: str, line: int, path: str, problem: str) -> None:
        KvoptError.__init__(self, f"{origin}:{line}: {path}: {problem}")
        self.field, self.value, self.rule, self.fix = path, None, problem, ""


def read_yaml_mapping(path: str | Path, what: str, error: type[LineError],
                      expected: str) -> tuple[Any, dict[str, Any]]:
    """(YAML node tree, data) of a user's YAML file whose top level must be a mapping; an
    unreadable file is an InputError naming ``what``, bad YAML or another top level an
    ``error`` at its line (``expected`` says what the mapping needs)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(what, str(p), f"cannot read it ({exc.strerror})") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise error(str(p), (mark.line + 1) if mark else 1, "(file)",
                    f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None or not isinstance(data, dict):
        raise error(str(p), 1, "(file)", expected)
    return root, data
