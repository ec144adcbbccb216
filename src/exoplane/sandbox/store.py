"""The sandbox's optional SQLite file: one JSON document per record, written as it changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
)
"""


class SqliteStore:
    """Small synchronous writes: the sandbox is a test peer, and each write is one row."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def put(self, kind: str, key: str, body: str) -> None:
        self._db.execute(
            "INSERT INTO records (kind, key, body) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
            (kind, key, body),
        )

    def load(self, kind: str) -> list[str]:
        rows = self._db.execute(
            "SELECT body FROM records WHERE kind = ? ORDER BY key", (kind,)
        ).fetchall()
        return [body for (body,) in rows]

    def delete_up_to(self, kind: str, key: str) -> None:
        self._db.execute("DELETE FROM records WHERE kind = ? AND key <= ?", (kind, key))

    def last_key(self, kind: str) -> int:
        """The largest numeric key of ``kind`` (0 when there is none)."""
        (key,) = self._db.execute("SELECT MAX(key) FROM records WHERE kind = ?", (kind,)).fetchone()
        return int(key) if key else 0

    def clear(self) -> None:
        self._db.execute("DELETE FROM records")

    def close(self) -> None:
        self._db.close()
