"""The ops extra's packages, checked before a command needs them: a missing one is a
one-line error with the install command, not an ImportError traceback."""

from __future__ import annotations

import importlib.util

from kvopt.errors import UnsupportedError

PACKAGES = {"prometheus_client": "prometheus-client", "fastapi": "fastapi",
            "uvicorn": "uvicorn", "plotly": "plotly"}


def require(command: str, *modules: str) -> None:
    missing = [PACKAGES.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UnsupportedError(f"kvopt {command} needs {', '.join(missing)}: "
                               "pip install 'kvopt[ops]'")
