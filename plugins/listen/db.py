"""The ratings database: SQLite in the study folder (``ratings.sqlite``).

WAL journal, ``synchronous=FULL`` and one ``BEGIN IMMEDIATE ... COMMIT`` transaction per rating:
once the server has answered a rating, it is on disk, and killing the server (even with
SIGKILL) loses nothing already answered.  A connection is opened per request (the server's
worker threads never share one).

Tables::

    meta(key PRIMARY KEY, value)                    study_id, schema version
    raters(id PRIMARY KEY, created, expertise, environment)
    sequence(rater, pos, item, clip_a, clip_b, shown_at, conditions)   the rater's blinded order
        PRIMARY KEY (rater, pos), UNIQUE (rater, item); conditions: a MUSHRA item's clips in
        the rater's order (JSON)
    ratings(rater, item, kind, score, choice, created, elapsed)
        UNIQUE (rater, item), CHECK (score BETWEEN 1 AND 5); a MUSHRA answer is one row here
        (no score, no choice) and one row per condition in
    mushra_scores(rater, item, clip, score)   PRIMARY KEY (rater, item, clip), CHECK (score BETWEEN 0 AND 100)

A database made by an older musicfw (schema 1: no ``environment`` or ``conditions`` column, no
MUSHRA) gets the two columns and the new table added when it is served; its rows are kept.

``UNIQUE (rater, item)`` makes a replayed submission impossible to count twice; the server
answers an identical replay idempotently and a changed one with 409.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from musicfw.core.errors import DataError

SCHEMA_VERSION = "2"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    expertise TEXT,
    environment TEXT
);
CREATE TABLE IF NOT EXISTS sequence (
    rater TEXT NOT NULL REFERENCES raters(id),
    pos INTEGER NOT NULL,
    item TEXT NOT NULL,
    clip_a TEXT NOT NULL,
    clip_b TEXT,
    shown_at REAL,
    conditions TEXT,
    PRIMARY KEY (rater, pos),
    UNIQUE (rater, item)
);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(id),
    item TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('mos', 'ab', 'mushra')),
    score INTEGER CHECK (score BETWEEN 1 AND 5),
    choice TEXT,
    created REAL NOT NULL,
    elapsed REAL NOT NULL,
    UNIQUE (rater, item),
    CHECK ((kind = 'mos' AND score IS NOT NULL AND choice IS NULL) OR
           (kind = 'ab' AND score IS NULL AND choice IS NOT NULL) OR
           (kind = 'mushra' AND score IS NULL AND choice IS NULL))
);
CREATE TABLE IF NOT EXISTS mushra_scores (
    rater TEXT NOT NULL REFERENCES raters(id),
    item TEXT NOT NULL,
    clip TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    PRIMARY KEY (rater, item, clip)
);
"""
#: columns added after schema 1 (table, column, type)
ADDED_COLUMNS = (("raters", "environment", "TEXT"), ("sequence", "conditions", "TEXT"))


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def init_db(path: Path, study_id: str) -> None:
    """Create the schema (idempotent) and check that the database belongs to this study."""
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)  # CREATE ... IF NOT EXISTS: idempotent
        conn.execute("BEGIN IMMEDIATE")
        for table, column, kind in ADDED_COLUMNS:
            if column not in {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        row = conn.execute("SELECT value FROM meta WHERE key = 'study_id'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('study_id', ?), ('schema', ?)", (study_id, SCHEMA_VERSION))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    if row is not None and row["value"] != study_id:
        raise DataError(
            f"{path} holds the ratings of another study (study id {row['value']}, the manifest says {study_id}); "
            "move it away or serve the study it belongs to."
        )


def open_existing(path: Path, study_id: str) -> sqlite3.Connection:
    """A connection to the study's existing database (for ``listen results``)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist: no rating was collected yet (serve the study with `musicfw listen serve`).")
    try:
        conn = connect(path)
        row = conn.execute("SELECT value FROM meta WHERE key = 'study_id'").fetchone()
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path} is not a readable ratings database ({exc}).") from None
    if ok != "ok":
        conn.close()
        raise DataError(f"{path} failed SQLite's integrity check ({ok}).")
    if row is None or row["value"] != study_id:
        conn.close()
        raise DataError(f"{path} does not hold the ratings of this study (study id mismatch).")
    return conn


def _has(conn: sqlite3.Connection, table: str, column: str | None = None) -> bool:
    if column is None:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None
    return column in {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}


def fetch_ratings(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every answer; a MUSHRA answer carries ``scores``: ``{clip: 0..100}``."""
    rows = [dict(r) for r in conn.execute(
        "SELECT r.rater, r.item, r.kind, r.score, r.choice, r.created, r.elapsed, ra.expertise "
        "FROM ratings r JOIN raters ra ON ra.id = r.rater ORDER BY r.rater, r.created"
    )]
    if _has(conn, "mushra_scores"):
        scores: dict[tuple[str, str], dict[str, int]] = {}
        for r in conn.execute("SELECT rater, item, clip, score FROM mushra_scores"):
            scores.setdefault((r["rater"], r["item"]), {})[r["clip"]] = int(r["score"])
        for row in rows:
            if row["kind"] == "mushra":
                row["scores"] = scores.get((row["rater"], row["item"]), {})
    return rows


def fetch_raters(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    env = "environment" if _has(conn, "raters", "environment") else "NULL AS environment"
    return [dict(r) for r in conn.execute(f"SELECT id, created, expertise, {env} FROM raters ORDER BY created, id")]


def fetch_progress(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Per rater: created, expertise, environment, answered, total, last answer; per item: answers."""
    raters = [dict(r) for r in conn.execute(
        "SELECT ra.id, ra.created, ra.expertise, ra.environment, "
        "(SELECT COUNT(*) FROM sequence s WHERE s.rater = ra.id) AS total, "
        "(SELECT COUNT(*) FROM ratings r WHERE r.rater = ra.id) AS answered, "
        "(SELECT MAX(created) FROM ratings r WHERE r.rater = ra.id) AS last "
        "FROM raters ra ORDER BY ra.created, ra.id"
    )]
    per_item = {r["item"]: int(r["n"]) for r in conn.execute("SELECT item, COUNT(*) AS n FROM ratings GROUP BY item")}
    return raters, per_item
