"""Run a study: skip what the store has, compute the rest, store each result as it finishes.

Runners (no home-made scheduler): in-process by default; ``workers=N`` local processes
(``concurrent.futures.ProcessPoolExecutor``, spawn context); ``dask="local"`` a
``dask.distributed.LocalCluster`` or ``dask="tcp://host:8786"`` an existing cluster. Pools
and Dask are drained with their ``as_completed``, so each result is committed the moment it
arrives. Ctrl-C cancels what has not started, stops the workers and keeps what finished:
at most the scenarios in flight are lost.

Pools and Dask receive chunks: ``plan`` scenarios that differ only in what the MILP reads
(rate, redundancy, budget, power cap, inventory, goal, solver settings) share a candidate
evaluation, so they travel together, at most :data:`MAX_CHUNK` per chunk, and one worker
evaluates them once instead of every worker evaluating every (model, lengths, SLO) it meets.
Other scenarios go one per chunk. A chunk's rows are stored as it returns; an interrupted
run loses the chunks in flight.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvopt import limits
from kvopt.errors import KvoptError
from kvopt.study.scenarios import Scenario
from kvopt.study.store import Store, writer_lock
from kvopt.study.worker import init_worker, plan_evaluation_key, run_chunk, run_task

if TYPE_CHECKING:
    from kvopt.study.spec import Study

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    total: int
    skipped: int  # already in the store
    done: int  # computed by this run
    failed: int  # of those, infeasible or error
    seconds: float
    runner: str
    interrupted: bool = False


def run_study(study: Study | Sequence[Scenario], out_dir: str | Path, *,
              workers: int | None = None, dask: str | None = None,
              dask_timeout_s: float = 10.0, progress: bool | Progress = False,
              retry_errors: bool = False, cache: bool = True) -> RunSummary:
    """Run (or resume) ``study`` into ``out_dir``. ``workers``: local processes (with
    ``dask="local"``: Dask workers); ``progress``: True for a rich bar with ETA, or a
    callback per result row; ``retry_errors``: run again scenarios stored as ``error``;
    ``cache``: the per-process candidate cache (see :mod:`kvopt.study.worker`)."""
    if workers is not None:
        workers = int(limits.workers().check("workers", workers))
    outputs: tuple[str, ...] = ()
    if isinstance(study, Sequence):  # plain scenarios
        scenarios, keep, name = list(study), True, "study"
    else:
        scenarios, keep = study.scenarios(), study.keep_result
        outputs, name = study.outputs, study.name
    runner = f"dask {dask}" if dask else (f"{workers} processes" if workers else "in-process")
    t0 = time.perf_counter()
    with _backend(workers, dask, dask_timeout_s) as submit, writer_lock(out_dir), \
            Store(out_dir) as store:
        if retry_errors:
            store.forget(r["key"] for r in store.rows() if r["status"] == "error")
        run, done = store.begin_run(scenarios, runner=runner, name=name, outputs=outputs)
        todo = {s.key: s for s in scenarios if s.key not in done}
        tasks = [{**s.task(), "cache": cache, "keep_result": keep} for s in todo.values()]
        counts = {"done": 0, "failed": 0}
        bar = _bar(progress, len(scenarios), len(done))
        state = "failed"
        try:
            with closing(submit(tasks)) as rows:
                for row in rows:
                    store.record(run, todo[row["key"]], row)
                    counts["done"] += 1
                    counts["failed"] += row["status"] != "ok"
                    bar(row)
            state = "finished"
        except KeyboardInterrupt:
            state = "interrupted"
            raise
        finally:
            store.end_run(run, state)
            bar(None)
    return RunSummary(total=len(scenarios), skipped=len(done), done=counts["done"],
                      failed=counts["failed"], seconds=time.perf_counter() - t0,
                      runner=runner, interrupted=state != "finished")


Submit = Callable[[list[dict[str, Any]]], Generator[dict[str, Any], None, None]]

MAX_CHUNK = 64  # scenarios sharing a candidate evaluation sent to a worker at once


def _evaluation_key(task: dict[str, Any]) -> str:
    """Plan scenarios with the same candidate evaluation share a key (the one the workers'
    candidate cache uses); a scenario that cannot be built keeps its own."""
    if task["solve"] != "plan":
        return str(task["key"])
    try:
        return plan_evaluation_key(task["scenario"])
    except KvoptError:
        return str(task["key"])


def chunks(tasks: list[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """Tasks grouped by the candidate evaluation they share, in chunks of at most
    ``min(MAX_CHUNK, tasks / (4 x workers))`` (so every worker still gets several)."""
    size = max(1, min(MAX_CHUNK, math.ceil(len(tasks) / (4 * max(1, workers)))))
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        groups.setdefault(_evaluation_key(t), []).append(t)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


@contextmanager
def _backend(workers: int | None, dask: str | None, timeout: float) -> Iterator[Submit]:
    """The runner: a function from tasks to result rows as they finish. A Dask scheduler is
    reached here, before the store is touched, so a bad address changes nothing."""
    if dask:
        with _dask_client(dask, workers, timeout) as client:
            n = len(client.scheduler_info().get("workers", {})) or workers or 2
            yield lambda tasks: _dask(client, chunks(tasks, n))
    elif workers:
        yield lambda tasks: _pool(tasks, workers)
    else:
        yield lambda tasks: (run_task(t) for t in tasks)


def _pool(tasks: list[dict[str, Any]], workers: int) -> Generator[dict[str, Any], None, None]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    if not tasks:
        return
    parts = chunks(tasks, workers)
    ex = ProcessPoolExecutor(max_workers=min(workers, len(parts)),
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(os.getpid(),))
    try:
        futures = [ex.submit(run_chunk, c) for c in parts]
        for fut in as_completed(futures):
            try:
                yield from fut.result()
            except BrokenProcessPool:
                raise KvoptError("a worker process died (killed, out of memory, or a script "
                                 "without `if __name__ == '__main__':`); finished scenarios "
                                 "are stored: run again to continue") from None
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        _stop(ex)
        raise
    ex.shutdown(wait=True)


def _stop(ex: Any) -> None:
    """Stop the pool's workers now (their in-flight scenarios are dropped)."""
    terminate = getattr(ex, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for p in list((getattr(ex, "_processes", None) or {}).values()):
        p.terminate()


@contextmanager
def _dask_client(address: str, workers: int | None, timeout: float) -> Iterator[Any]:
    import importlib

    try:  # typed as Any: distributed's API is untyped
        dd: Any = importlib.import_module("dask.distributed")
    except ImportError:
        raise KvoptError("--dask needs dask.distributed: pip install 'kvopt[dask]'") from None
    cluster = None
    if address == "local":
        cluster = dd.LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1",
                                  silence_logs=logging.ERROR)
        client = dd.Client(cluster)
    else:
        if workers:
            raise KvoptError("--workers sizes local pools; an existing Dask cluster has its "
                             "own workers (drop --workers)")
        if not address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
            raise KvoptError(f"--dask {address!r}: give 'local' or a scheduler address such "
                             "as tcp://host:8786")
        if address.startswith("tcp://"):
            probe_scheduler(address, timeout)
        try:
            client = dd.Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise KvoptError(f"cannot reach the Dask scheduler at {address} within "
                             f"{timeout:g} s ({type(exc).__name__}); start it with "
                             "`dask scheduler` or check the address") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


MAX_HANDSHAKE_BYTES = 1 << 20  # a Dask scheduler's greeting is a few kB


def probe_scheduler(address: str, timeout: float) -> None:
    """Check that a Dask scheduler listens at ``tcp://host:port`` before Dask's client
    connects: a scheduler greets every connection with its handshake, one message whose
    first 8 bytes are its length (little-endian). Something else (an HTTP or SSH server, a
    closed port) is a one-line error here; Dask itself would read its first bytes as a
    length and try to allocate that much."""
    import socket
    import struct
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise KvoptError(f"--dask {address!r}: give tcp://HOST:PORT (e.g. tcp://scheduler-host:8786)")
    wait = min(timeout, 5.0)
    try:
        with socket.create_connection((host, port), timeout=wait) as sock:
            sock.settimeout(wait)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        head = b""
    except OSError as exc:
        raise KvoptError(f"cannot reach the Dask scheduler at {address} "
                         f"({exc.strerror or type(exc).__name__}); start it with `dask "
                         "scheduler` or check the address") from None
    size = struct.unpack("<Q", head)[0] if len(head) == 8 else None
    if size is None or not 0 < size <= MAX_HANDSHAKE_BYTES:
        raise KvoptError(f"{address} is not a Dask scheduler (no Dask handshake in its "
                         f"first bytes within {wait:g} s); give the scheduler's address "
                         "(`dask scheduler` prints it)")


def _dask(client: Any, parts: list[list[dict[str, Any]]]
          ) -> Generator[dict[str, Any], None, None]:
    from dask.distributed import as_completed

    if not parts:
        return
    futures = client.map(run_chunk, parts, pure=False)
    scenarios_of = {f.key: [t["key"] for t in c] for f, c in zip(futures, parts, strict=True)}
    try:
        for fut in as_completed(futures):  # type: ignore[no-untyped-call]
            try:
                rows = fut.result()
            except Exception as exc:  # a worker died with the chunk (KilledWorker, ...)
                rows = [{"key": k, "status": "error", "outputs": {}, "result": None,
                         "error": f"Dask: {type(exc).__name__}: {exc}"}
                        for k in scenarios_of[fut.key]]
            yield from rows
    finally:
        client.cancel(futures)


def _bar(progress: bool | Progress, total: int, skipped: int) -> Callable[[Any], None]:
    """A callback per stored row (None at the end)."""
    if callable(progress):
        cb = progress
        return lambda row: None if row is None else cb(row)
    if not progress:
        return lambda row: None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task("scenarios", total=total - skipped, failed=0)
    failed = 0
    bar.start()

    def update(row: dict[str, Any] | None) -> None:
        nonlocal failed
        if row is None:
            bar.stop()
            return
        failed += row["status"] != "ok"
        bar.update(task, advance=1, failed=failed)

    return update
