"""The result store of a study: one SQLite file, ``OUT_DIR/study.sqlite``.

Why SQLite (stdlib ``sqlite3``) rather than files per scenario or Parquet appends:

* **Atomic rows.** Each finished scenario is one transaction (its result row and its attempt
  row together). A run killed at any instant (Ctrl-C, SIGKILL, power loss) leaves every
  committed scenario whole and no partial one: SQLite's journal guarantees it, where a
  half-written JSON or Parquet file would need its own recovery.
* **No duplicates by construction.** ``results.key`` is the PRIMARY KEY (sha256 of the
  scenario, its solve and the kvopt version), so a re-run can skip what is done with one
  query and can never store a scenario twice.
* **WAL mode** lets ``kvopt study status`` (or a notebook) read while a run writes;
  ``synchronous=NORMAL`` in WAL mode survives a killed process (only an OS crash can drop the
  last commits, never corrupt the file), at ~0.1 ms per commit instead of an fsync.
* **One writer.** Only the parent process writes; workers return plain dicts. That avoids
  lock contention and makes a remote Dask worker need no access to the folder.
* Parquet (columnar, for analysis) is an export on demand: :func:`export`.

Tables: ``results`` (one row per finished scenario), ``attempts`` (one row per computation a
worker returned: the count of solver calls), ``current`` (the scenarios of the study last
run here, in sweep order), ``runs`` and ``meta``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kvopt._version import __version__
from kvopt.errors import InputError, KvoptError
from kvopt.study.scenarios import Scenario, canonical_json

SCHEMA_VERSION = "1"
FILE = "study.sqlite"
_DDL = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
  key TEXT PRIMARY KEY, solve TEXT NOT NULL, scenario TEXT NOT NULL, status TEXT NOT NULL,
  error TEXT, outputs TEXT NOT NULL, result TEXT, seconds REAL, kvopt_version TEXT,
  run INTEGER, finished_at REAL);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, run INTEGER, status TEXT,
  seconds REAL, pid INTEGER, host TEXT, finished_at REAL);
CREATE TABLE IF NOT EXISTS current (
  key TEXT PRIMARY KEY, idx INTEGER NOT NULL, solve TEXT NOT NULL, scenario TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL, finished_at REAL, runner TEXT,
  total INTEGER, skipped INTEGER, done INTEGER DEFAULT 0, failed INTEGER DEFAULT 0,
  state TEXT);
"""


def make_folder(path: str | Path) -> Path:
    """The study folder ``path``, created if its parent exists (never a chain of folders:
    a typo in the path is an error, not a new tree)."""
    p = Path(path)
    if p.is_dir():
        return p
    if not p.parent.is_dir():
        raise InputError("--out", str(p), f"its folder {p.parent} does not exist",
                         "create it first, or check the path")
    try:
        p.mkdir()
    except OSError as exc:
        raise InputError("--out", str(p), f"cannot create it ({exc.strerror})",
                         "choose a writable folder") from None
    return p


class Store:
    """The SQLite store of ``out_dir`` (created on first use unless ``create=False``)."""

    def __init__(self, out_dir: str | Path, *, create: bool = True) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / FILE
        if not self.path.is_file():
            if not create:
                raise InputError("OUT_DIR", str(self.dir), f"no study store ({FILE}) here",
                                 "run `kvopt study run STUDY.yaml --out OUT_DIR` first")
            make_folder(self.dir)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_DDL)
        except sqlite3.DatabaseError as exc:
            raise InputError("OUT_DIR", str(self.path), f"not a kvopt study store ({exc})"
                             ) from None
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_run(self, scenarios: list[Scenario], *, runner: str, name: str,
                  outputs: tuple[str, ...]) -> tuple[int, set[str]]:
        """Record the study's scenarios as current; return the run id and the keys done."""
        with self._tx():
            self.db.execute("DELETE FROM current")
            self.db.executemany(
                "INSERT OR IGNORE INTO current VALUES (?, ?, ?, ?)",
                [(s.key, i, s.solve, canonical_json(s.params)) for i, s in enumerate(scenarios)])
            for k, v in (("name", name), ("outputs", json.dumps(list(outputs))),
                         ("kvopt_version", __version__)):
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))
            done = {r[0] for r in self.db.execute(
                "SELECT r.key FROM results r JOIN current c ON c.key = r.key")}
            cur = self.db.execute(
                "INSERT INTO runs (started_at, runner, total, skipped, state) "
                "VALUES (?, ?, ?, ?, 'running')", (time.time(), runner, len(scenarios),
                                                   len(done)))
        return int(cur.lastrowid or 0), done

    def record(self, run: int, scenario: Scenario, row: dict[str, Any]) -> None:
        """Store one finished scenario: result and attempt in one transaction."""
        now = time.time()
        result = None if row.get("result") is None else json.dumps(row["result"],
                                                                   allow_nan=False)
        with self._tx():
            self.db.execute(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE "
                "SET status=excluded.status, error=excluded.error, outputs=excluded.outputs, "
                "result=excluded.result, seconds=excluded.seconds, run=excluded.run, "
                "finished_at=excluded.finished_at",
                (scenario.key, scenario.solve, canonical_json(scenario.params), row["status"],
                 row.get("error"), json.dumps(row.get("outputs") or {}, allow_nan=False),
                 result, row.get("seconds"), row.get("kvopt_version"), run, now))
            self.db.execute(
                "INSERT INTO attempts (key, run, status, seconds, pid, host, finished_at) "
                "VALUES (?,?,?,?,?,?,?)", (scenario.key, run, row["status"], row.get("seconds"),
                                           row.get("pid"), row.get("host"), now))
            self.db.execute("UPDATE runs SET done = done + 1, failed = failed + ? WHERE id = ?",
                            (int(row["status"] != "ok"), run))

    def end_run(self, run: int, state: str) -> None:
        with self._tx():
            self.db.execute("UPDATE runs SET finished_at = ?, state = ? WHERE id = ?",
                            (time.time(), state, run))

    def forget(self, keys: Iterable[str]) -> None:
        """Drop results so they run again (``--retry-errors``)."""
        with self._tx():
            self.db.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in keys])

    def status(self) -> dict[str, Any]:
        q = self.db.execute
        by = dict(q("SELECT r.status, COUNT(*) FROM results r JOIN current c ON c.key = r.key "
                    "GROUP BY r.status").fetchall())
        total = q("SELECT COUNT(*) FROM current").fetchone()[0]
        last = q("SELECT id, runner, state, started_at, finished_at, done, failed, total, "
                 "skipped FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        cols = ("id", "runner", "state", "started_at", "finished_at", "done", "failed",
                "total", "skipped")
        return {"name": self.meta("name"), "total": total, "finished": sum(by.values()),
                "pending": total - sum(by.values()), "by_status": by,
                "attempts": q("SELECT COUNT(*) FROM attempts").fetchone()[0],
                "stored_results": q("SELECT COUNT(*) FROM results").fetchone()[0],
                "last_run": dict(zip(cols, last, strict=True)) if last else None,
                "kvopt_version": self.meta("kvopt_version")}

    def meta(self, k: str) -> str | None:
        r = self.db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if r is None else str(r[0])

    def rows(self, *, everything: bool = False) -> list[dict[str, Any]]:
        """Finished rows of the current study in sweep order (``everything``: every stored
        result), with scenario, outputs and result decoded."""
        sql = ("SELECT c.idx, r.key, r.solve, r.scenario, r.status, r.error, r.outputs, "
               "r.result, r.seconds, r.kvopt_version, r.finished_at FROM results r "
               + ("LEFT " if everything else "") + "JOIN current c ON c.key = r.key "
               "ORDER BY c.idx IS NULL, c.idx, r.finished_at")
        out = []
        for idx, key, solve, sc, status, err, outs, res, sec, ver, at in self.db.execute(sql):
            out.append({"idx": idx, "key": key, "solve": solve, "scenario": json.loads(sc),
                        "status": status, "error": err, "outputs": json.loads(outs),
                        "result": None if res is None else json.loads(res), "seconds": sec,
                        "kvopt_version": ver, "finished_at": at})
        return out

    def _tx(self) -> Any:
        return _Tx(self.db)


@contextmanager
def writer_lock(out_dir: str | Path) -> Iterator[None]:
    """One run writes to a folder at a time (an advisory lock the OS drops when the process
    dies, so a killed run leaves none behind)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows: no lock)
        yield
        return
    folder = make_folder(out_dir)
    try:
        lock = open(folder / "study.lock", "a+")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise InputError("--out", str(folder), f"cannot write there ({exc.strerror})",
                         "choose a writable folder") from None
    with lock as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KvoptError(f"another `kvopt study run` is writing to {folder}; wait for it "
                             "to finish or stop it") from None
        yield


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt too).

    A ctrl-C can land between two bytecodes anywhere: after BEGIN but before ``__enter__``
    returns (``__exit__`` then never runs), or in ``__exit__`` before COMMIT/ROLLBACK. Either
    leaves a transaction open that never committed, so the next one rolls it back first
    (the run's closing ``end_run`` must still be able to write)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        if self.db.in_transaction:  # an interrupted one: it never committed
            self.db.execute("ROLLBACK")
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")


def load_results(out_dir: str | Path, *, everything: bool = False,
                 with_result: bool = False, all_outputs: bool = False) -> Any:
    """The results of ``out_dir`` as a pandas DataFrame: scenario keys (lists joined with
    commas, mappings as JSON), label columns, status, error, the output columns the study
    kept (``all_outputs``: every one), seconds, and the full result JSON when
    ``with_result``. ``everything``: also results of earlier studies in the folder."""
    import pandas as pd

    with Store(out_dir, create=False) as store:
        rows = store.rows(everything=everything)
        picked = [] if all_outputs else json.loads(store.meta("outputs") or "[]")
    flat = []
    for r in rows:
        sc = dict(r["scenario"])
        labels = sc.pop("labels", {}) or {}
        d: dict[str, Any] = {"idx": r["idx"], "key": r["key"], "solve": r["solve"]}
        d.update({k: _cell(v) for k, v in sc.items()})
        d.update(labels)
        d.update(status=r["status"], error=r["error"])
        outs = r["outputs"]
        d.update({k: v for k, v in outs.items() if not picked or k in picked})
        d["seconds"] = r["seconds"]
        if with_result:
            d["result"] = None if r["result"] is None else json.dumps(r["result"])
        flat.append(d)
    return pd.DataFrame(flat)


def load_arrow(out_dir: str | Path, **kw: Any) -> Any:
    """:func:`load_results` as a ``pyarrow.Table``."""
    import pyarrow as pa

    return pa.Table.from_pandas(load_results(out_dir, **kw), preserve_index=False)


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True) if v else ""
    return v


def export(out_dir: str | Path, path: str | Path, *, everything: bool = False) -> int:
    """Write the results table to ``path`` (.parquet, .csv or .json); returns the rows."""
    from kvopt.fileio import write_atomic

    df = load_results(out_dir, everything=everything, with_result=True)
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        write_atomic(p, buf.getvalue())
    elif suffix == ".csv":
        write_atomic(p, df.to_csv(index=False))
    elif suffix == ".json":
        write_atomic(p, df.to_json(orient="records", indent=1))
    else:
        raise InputError("--output", str(p), "unknown format", "use .parquet, .csv or .json")
    return len(df)
