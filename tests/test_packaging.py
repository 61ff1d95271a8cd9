"""The wheel ships every subpackage and the data folders (setup.cfg lists them explicitly)."""

from __future__ import annotations

import configparser

from tests.paths import ROOT


def test_every_subpackage_is_listed_in_setup_cfg() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "kvopt").rglob("__init__.py")}
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
    assert {"kvopt.data.models", "kvopt.data.solvers"} <= listed


def test_the_json_schemas_ship_as_package_data() -> None:
    """kvopt/schemas/*.schema.json are read at run time (readers, `kvopt schema`): the wheel
    must carry them, and jsonschema must be installed with kvopt."""
    from fnmatch import fnmatch

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    data = [g.strip() for g in cfg["options.package_data"]["kvopt"].split(",")]
    files = sorted(p.relative_to(ROOT / "kvopt").as_posix()
                   for p in (ROOT / "kvopt" / "schemas").glob("*.json"))
    assert files and all(any(fnmatch(f, g) for g in data) for f in files), (files, data)
    requires = cfg["options"]["install_requires"]
    assert any(line.strip().startswith("jsonschema") for line in requires.splitlines())
