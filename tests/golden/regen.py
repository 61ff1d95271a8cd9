"""Regenerate the engine-config golden files (run explicitly; tests never rewrite them):
``python tests/golden/regen.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.export.test_export import CASES, render_case

HERE = Path(__file__).resolve().parent


def main() -> int:
    for name in CASES:
        for engine in ("vllm", "sglang", "trtllm"):
            (HERE / f"{name}.{engine}.txt").write_text(render_case(name, engine))
    print(f"wrote {len(CASES) * 3} golden files to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
