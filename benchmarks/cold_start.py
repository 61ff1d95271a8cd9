"""Cold-start wall time of the CLI (target: under 1 s for `--help` and `estimate --json`).

Each command runs in a fresh interpreter, several times; prints the median and the ratio to
the 1 s target. Run: ``python benchmarks/cold_start.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COMMANDS = {
    "kvopt --help": ["--help"],
    "kvopt estimate --json": ["estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM",
                              "--input-len", "1024", "--output-len", "256", "--batch", "32",
                              "--json"],
    "kvopt list-gpus": ["list-gpus"],
}
TARGET_S = 1.0
RUNS = 5


def main() -> int:
    for label, args in COMMANDS.items():
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kvopt.cli.main", *args], check=True,
                           capture_output=True)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{label:28s} median {med * 1000:7.1f} ms over {RUNS} runs  "
              f"ratio to {TARGET_S:.0f} s target {med / TARGET_S:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
