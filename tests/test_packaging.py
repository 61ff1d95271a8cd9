"""The wheel ships every subpackage and the data folders (setup.cfg lists them explicitly)."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_setup_cfg() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "kvopt").rglob("__init__.py")}
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
    assert {"kvopt.data.models", "kvopt.data.solvers"} <= listed
