"""Paths the tests read: the repository root, test data and golden files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
GOLDEN = ROOT / "tests" / "golden"
BENCHMARKS = ROOT / "benchmarks"
