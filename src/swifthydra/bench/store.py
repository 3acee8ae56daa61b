"""The results store: one SQLite file, one row per finished cell.

The file uses the standard library's :mod:`sqlite3` in WAL mode with ``synchronous=FULL``; every
finished cell is inserted and committed in its own transaction, so killing the writer at any
moment (SIGKILL included) loses at most the cell in progress. The table's primary key is the
cell's key, so a cell is never stored twice: running the same benchmark again reads the finished
keys, skips them and completes the rest.

A cell's key is ``(dataset, protocol, scenario, labeled_ratio, seed, model, config, generator)``;
``config`` is the canonical JSON of the user's parameter overrides (``"{}"`` for the defaults),
``generator`` the anomaly generator of the cell (``"none"``, ``"mixup"``, ``"nngmix"``, ``"cvae"``,
``"rl"``; followed by the canonical JSON of its parameters when some were given, e.g.
``nngmix{"k":5}``).

Files written before the ``generator`` column existed (schema 1) are migrated when opened for
writing (the table is rebuilt with the new key in one transaction) and read as if migrated when
opened read-only. Their rows get generator ``"none"``, except the rows of a model that owns its
generator (``swifthydra``, see :func:`swifthydra.bench.models.split_generator`): those get the
``generator`` of their config, or the model's current default, and lose it from their config.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from swifthydra.exceptions import InvalidInputError

SCHEMA_VERSION = 2
KEY_COLUMNS = ("dataset", "protocol", "scenario", "labeled_ratio", "seed", "model", "config",
               "generator")
STATUSES = ("ok", "skipped", "error", "timeout")

# (name, SQL type) of every non-key column, in table order.
VALUE_COLUMNS = (
    ("status", "TEXT NOT NULL"),
    ("auc_roc", "REAL"),
    ("auc_pr", "REAL"),
    ("fit_seconds", "REAL"),
    ("score_seconds", "REAL"),
    ("rows_per_second", "REAL"),
    ("peak_memory_mb", "REAL"),
    ("peak_rss_mb", "REAL"),
    ("n_train", "INTEGER"),
    ("n_test", "INTEGER"),
    ("n_features", "INTEGER"),
    ("n_labeled", "INTEGER"),
    ("n_test_anomalies", "INTEGER"),
    ("split_hash", "TEXT"),
    ("versions", "TEXT"),
    ("error", "TEXT"),
    ("traceback", "TEXT"),
    ("history", "TEXT"),
    ("extra", "TEXT"),
    ("backend", "TEXT"),
    ("host", "TEXT"),
    ("run_id", "TEXT"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
)
COLUMNS = KEY_COLUMNS + tuple(name for name, _ in VALUE_COLUMNS)

_CREATE = f"""
CREATE TABLE IF NOT EXISTS results (
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    scenario TEXT NOT NULL,
    labeled_ratio REAL NOT NULL,
    seed INTEGER NOT NULL,
    model TEXT NOT NULL,
    config TEXT NOT NULL,
    generator TEXT NOT NULL DEFAULT 'none',
    {", ".join(f"{n} {t}" for n, t in VALUE_COLUMNS)},
    PRIMARY KEY ({", ".join(KEY_COLUMNS)})
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT,
    finished_at TEXT,
    command TEXT,
    host TEXT,
    versions TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def canonical_config(params: Mapping[str, Any] | None) -> str:
    """Canonical JSON of a parameter mapping (sorted keys, no spaces): part of a cell's key."""
    return json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"), default=str)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


def cell_key(row: Mapping[str, Any]) -> tuple:
    """The key tuple of a result row or cell mapping, normalised for comparison."""
    return (
        str(row["dataset"]),
        str(row["protocol"]),
        str(row["scenario"]),
        float(row["labeled_ratio"]),
        int(row["seed"]),
        str(row["model"]),
        str(row["config"]),
        str(row.get("generator") or "none"),
    )


def _legacy_rows(conn: sqlite3.Connection) -> list[tuple]:
    """The rows of a schema-1 ``results`` table, in :data:`COLUMNS` order, with a generator.

    See the module docstring for how the generator of an old row is decided.
    """
    from swifthydra.bench.models import split_generator

    old_cols = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
    present = [c for c in COLUMNS if c in old_cols]
    out = []
    for values in conn.execute(f"SELECT {', '.join(present)} FROM results"):
        row = dict(zip(present, values, strict=True))
        row["generator"], row["config"] = split_generator(row["model"], row["config"])
        out.append(tuple(row.get(c) for c in COLUMNS))
    return out


def _has_generator_column(conn: sqlite3.Connection) -> bool:
    return "generator" in [r[1] for r in conn.execute("PRAGMA table_info(results)")]


def _migrate(conn: sqlite3.Connection) -> None:
    """Rebuild a schema-1 ``results`` table with the ``generator`` key column (one transaction)."""
    if _has_generator_column(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _has_generator_column(conn):  # another process migrated it meanwhile
            conn.rollback()
            return
        rows = _legacy_rows(conn)
        conn.execute("ALTER TABLE results RENAME TO results_schema1")
        conn.execute(_CREATE.split(";")[0])
        conn.executemany(
            f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        conn.execute("DROP TABLE results_schema1")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


class ResultStore:
    """An SQLite results file (created when missing).

    Parameters
    ----------
    path : path-like
        The ``.sqlite`` file.
    readonly : bool
        Open an existing file for reading only (``export`` and ``report``).

    Examples
    --------
    >>> store = ResultStore("results.sqlite")            # doctest: +SKIP
    >>> store.add({"dataset": "wine", ..., "status": "ok"})  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise InvalidInputError(f"results file {self.path} does not exist.")
            uri = f"file:{self.path.resolve()}?mode=ro"
            try:
                self._conn = sqlite3.connect(uri, uri=True, timeout=60)
                self._conn.execute("SELECT 1 FROM results LIMIT 1")
            except sqlite3.DatabaseError as exc:
                raise InvalidInputError(
                    f"{self.path} is not a swifthydra results file ({exc})."
                ) from None
            return
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=60)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_CREATE)
            _migrate(self._conn)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._conn.commit()
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(f"{self.path} is not a usable SQLite file ({exc}).") from None

    # ------------------------------------------------------------------ writing
    def add(self, row: Mapping[str, Any], *, replace: bool = False) -> bool:
        """Insert one finished cell and commit. Returns False if the key was already stored.

        With ``replace=True`` an existing row of the same key is overwritten (used to retry
        failed cells).
        """
        if row.get("status") not in STATUSES:
            raise InvalidInputError(f"status must be one of {STATUSES}, got {row.get('status')!r}.")
        values = []
        for col in COLUMNS:
            v = row.get(col)
            if col == "generator" and v is None:  # rows built without one: no generator
                v = "none"
            if isinstance(v, (dict, list)):
                v = json.dumps(v, default=str)
            values.append(v)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        sql = f"{verb} INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        with self._conn:  # one transaction, committed on exit
            cur = self._conn.execute(sql, values)
        return cur.rowcount > 0

    def start_run(self, run_id: str, command: str, versions: Mapping[str, Any]) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO runs(run_id, started_at, command, host, versions) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, now_iso(), command, socket.gethostname(), json.dumps(dict(versions))),
            )

    def finish_run(self, run_id: str) -> None:
        with self._conn:
            self._conn.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (now_iso(), run_id))

    # ------------------------------------------------------------------ reading
    def keys(self, statuses: Iterable[str] | None = None) -> set[tuple]:
        """Keys of the stored cells (optionally only those with one of ``statuses``)."""
        wanted = set(statuses) if statuses is not None else None
        out = set()
        for row in self._rows(KEY_COLUMNS + ("status",)):
            if wanted is None or row["status"] in wanted:
                out.add(cell_key(row))
        return out

    def _rows(self, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        """Rows as dicts (a schema-1 file opened read-only is read as if migrated)."""
        if _has_generator_column(self._conn):
            cur = self._conn.execute(f"SELECT {', '.join(columns)} FROM results")
            return [dict(zip(columns, values, strict=True)) for values in cur]
        return [{c: v for c, v in zip(COLUMNS, values, strict=True) if c in columns}
                for values in _legacy_rows(self._conn)]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def to_frame(self, *, history: bool = True):
        """All rows as a pandas DataFrame (``history`` column dropped when ``history=False``)."""
        import pandas as pd

        cols = [c for c in COLUMNS if history or c not in ("history",)]
        if _has_generator_column(self._conn):
            return pd.read_sql_query(f"SELECT {', '.join(cols)} FROM results", self._conn)
        return pd.DataFrame(self._rows(tuple(cols)), columns=cols)

    def runs(self):
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM runs ORDER BY started_at", self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
