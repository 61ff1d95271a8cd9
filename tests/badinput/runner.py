"""Run many ``kvopt`` command lines, each in its own process under a memory cap and a time
limit, fast: this process imports kvopt and warms its catalogs once, then forks one child
per case (``resource.setrlimit(RLIMIT_AS)`` in the child, killed at its time limit).

stdin: a JSON list of cases ``{"id", "argv", "cwd", "env"?, "timeout_s"?}`` (a case with
``env`` runs in a fresh interpreter, still under the cap); stdout: a JSON
list of ``{"id", "code", "stdout", "stderr", "seconds"}`` (code "timeout" when killed).
Run as ``python -m tests.badinput.runner``; ``KVOPT_BAD_INPUT_CAP_MIB`` is the memory the
child may add to what this process has mapped.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time


def _mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _warm() -> None:
    """Import what the commands import and load the catalogs, so children start warm."""
    import kvopt.api
    import kvopt.cli.main
    from kvopt.catalog.engines import engine_names, load_engine
    from kvopt.catalog.gpus import list_gpus
    from kvopt.catalog.models import list_models
    from kvopt.catalog.prices import all_prices

    list_models()
    list_gpus(None)
    all_prices()
    for name in engine_names():
        load_engine(name)
    import kvopt.fleet.plan
    import kvopt.schemas
    import kvopt.serving.estimate
    import kvopt.study.run  # noqa: F401


def _child(case: dict[str, object], cap: int, out: int, err: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(str(case["cwd"]))
    env = dict(case.get("env") or {})  # type: ignore[call-overload]
    if env:  # the catalogs are cached here: a fresh interpreter sees the environment
        import subprocess

        proc = subprocess.run([sys.executable, "-m", "kvopt.cli.main",
                               *case["argv"]],  # type: ignore[misc]
                              env={**os.environ, **env}, stdout=out, stderr=err)
        os._exit(proc.returncode)
    code = 0
    try:
        from kvopt.cli.main import main

        main(list(case["argv"]))  # type: ignore[call-overload]
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # a traceback is a failure of the suite, not a crash here
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"UNCAUGHT {type(exc).__name__}\n")
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    cases = json.load(sys.stdin)
    _warm()
    cap = _mapped_bytes() + int(os.environ.get("KVOPT_BAD_INPUT_CAP_MIB", "1536")) * 2**20
    results = []
    for case in cases:
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
            t0 = time.monotonic()
            pid = os.fork()
            if pid == 0:
                _child(case, cap, fo.fileno(), fe.fileno())
            limit = float(case.get("timeout_s", 20.0))
            code: object = "timeout"
            while time.monotonic() - t0 < limit:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.005)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            seconds = time.monotonic() - t0
            fo.seek(0)
            fe.seek(0)
            results.append({"id": case["id"], "code": code, "seconds": seconds,
                            "stdout": fo.read().decode("utf-8", "replace")[-4000:],
                            "stderr": fe.read().decode("utf-8", "replace")[-4000:]})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
