"""Where the packaged data lives.

In a wheel, ``models/`` and ``solvers/`` are installed as ``kvopt/data/models`` and
``kvopt/data/solvers``. In a source checkout (or an editable install) they sit at the
repository root next to ``kvopt/``. ``KVOPT_MODELS_DIR`` / ``KVOPT_SOLVERS_DIR`` point
elsewhere (a whole replacement catalog, e.g. a private fork of the data).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from kvopt.errors import CatalogError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _find(name: str) -> Path:
    override = os.environ.get(f"KVOPT_{name.upper()}_DIR")
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise CatalogError(f"KVOPT_{name.upper()}_DIR={override!r} is not a directory "
                               f"(point it at a folder laid out like kvopt's {name}/, or "
                               "unset it for the shipped catalog)")
        return path
    for candidate in (_PACKAGE_DIR / "data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise CatalogError(
        f"kvopt data folder '{name}/' not found next to the package ({_PACKAGE_DIR}); "
        "reinstall kvopt (pip install .) so the catalogs ship with it"
    )


@cache
def models_dir() -> Path:
    """The ``models/`` data folder (LLM cards, GPU cards, prices, engine profiles)."""
    return _find("models")


@cache
def solvers_dir() -> Path:
    """The ``solvers/`` data folder (solver profiles)."""
    return _find("solvers")
