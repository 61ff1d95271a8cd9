"""File input/output shared by every writer and reader of user files.

Reads: UTF-8 text with one-line errors (unreadable, not UTF-8, not JSON/YAML). Writes: into
an existing folder only (never created), atomically (a temporary file in the target folder,
then a rename), and all or nothing when one command writes several files
(:func:`write_all`): every target is checked and every temporary file written before the
first rename. :func:`check_writable` lets a command refuse a bad output path before it
computes anything."""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvopt.errors import InputError, KvoptError


def _cannot_write(p: Path, why: str, field: str) -> InputError:
    return InputError(field, str(p), f"cannot write it ({why})",
                      "choose a writable file in an existing folder")


def check_writable(path: str | Path, field: str = "output") -> Path:
    """``path`` if a file can be written there: its folder exists and takes a new file, and
    it is not a folder itself. Probes with a temporary file (removed at once), so paths
    such as ``/proc/x`` or a read-only mount fail here, before any work is done."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _cannot_write(p, f"the folder {parent} does not exist; create it first", field)
    if p.is_dir():
        raise _cannot_write(p, "it is a folder", field)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=parent)
    except OSError as exc:
        raise _cannot_write(p, exc.strerror or type(exc).__name__, field) from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return p


def _stage(p: Path, raw: bytes, field: str) -> str:
    """A temporary file next to ``p`` holding ``raw`` (its name)."""
    check_writable(p, field)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    except OSError as exc:
        raise _cannot_write(p, exc.strerror or type(exc).__name__, field) from None
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would (the
        # replaced file's, else 0666 less the umask) so a plan or report is as readable as
        # any other file the user writes
        os.fchmod(fd, _mode_for(p))
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _cannot_write(p, exc.strerror or type(exc).__name__, field) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_all(files: Sequence[tuple[str | Path, bytes | str]], field: str = "output") -> None:
    """Write several files all or nothing: every one is staged next to its target before
    the first is renamed into place, so a failure leaves every target as it was."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            p = Path(path)
            raw = data.encode("utf-8") if isinstance(data, str) else data
            staged.append((_stage(p, raw, field), p))
        for tmp, p in staged:
            os.replace(tmp, p)
    except OSError as exc:
        raise _cannot_write(staged[-1][1] if staged else Path("."),
                            exc.strerror or type(exc).__name__, field) from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str, field: str = "output") -> None:
    """Write ``data`` to ``path`` (in an existing folder) so that readers see the old file
    or the new one, never a half-written one."""
    write_all([(path, data)], field)


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinity replaced by None (JSON has neither: a saturated
    or unmeasured figure is null)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON with one trailing newline: non-finite floats become null, never the
    bare ``NaN`` or ``Infinity`` no JSON reader accepts."""
    return json.dumps(finite_json(data), indent=indent, allow_nan=False) + "\n"


def write_json_atomic(data: Any, path: str | Path, field: str = "output") -> None:
    """Write JSON to ``path`` atomically (indented, one trailing newline)."""
    write_atomic(path, json_text(data), field)


def _mode_for(p: Path) -> int:
    try:
        return stat.S_IMODE(p.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


MAX_INPUT_BYTES = 256 * 2**20  # a user file larger than this is not a kvopt input


def read_text_input(path: str | Path, field: str) -> str:
    """A user's text file, decoded as UTF-8: an unreadable, oversized or non-UTF-8 file is
    an InputError naming it (and the first bad byte)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(field, str(p), "is a folder", "give a file")
        size = p.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError(field, str(p), f"is {size / 2**20:.0f} MiB; kvopt reads files "
                             f"of at most {MAX_INPUT_BYTES // 2**20} MiB", "give the right file")
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(field, str(p), f"cannot read it ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(field, str(p), f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                         f"offset {exc.start})", "give a text file saved as UTF-8") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json_input(path: str | Path, field: str, *, constants: bool = False) -> Any:
    """Parse a user's JSON file; unreadable or malformed files (NaN and Infinity are not
    JSON, unless ``constants``: another tool's output may hold them) are InputErrors
    naming it."""
    p = Path(path)
    text = read_text_input(p, field)
    try:
        if constants:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InputError(field, str(p), f"not JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise InputError(field, str(p), f"not JSON ({exc})", "write null for a value that "
                         "was not measured") from None
    except RecursionError:
        raise InputError(field, str(p), "not JSON (nested too deeply)") from None


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
    text = read_text_input(p, what)
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except RecursionError:
        raise error(str(p), 1, "(file)", "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise error(str(p), (mark.line + 1) if mark else 1, "(file)",
                    f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None or not isinstance(data, dict):
        raise error(str(p), 1, "(file)", expected)
    return root, data
