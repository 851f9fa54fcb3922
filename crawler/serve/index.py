"""The search index of a mirror: SQLite (FTS5) under `STATE/serve/index.sqlite`, built from the manifest.

The index remembers the manifest byte offset it has read up to and, on `refresh`, reads only what was
appended after it (up to the last complete line, so a line a crawl is writing is read next time): a
million-image mirror is read once, then each refresh costs what was added. A manifest that shrank or was
replaced (compaction) is read again from the start. Deleting the file rebuilds it. The manifest itself
is only read. Not thread-safe: `Index` is used from one thread (the server's database thread).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from crawler import normalise as N
from crawler.export.rows import row
from crawler.state import exclusions
from crawler.state.manifest import MANIFEST_NAME, iter_records_at
from crawler.state.records import DONE, IMAGE, REF, RUN, key_of, status_of

INDEX_DIR = "serve"
_VERSION = "1"  # bump when the schema or what is indexed changes: an old index is rebuilt
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS states(key TEXT PRIMARY KEY, status TEXT, reason TEXT, t REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images(n INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, at INTEGER NOT NULL,
    created REAL NOT NULL, level INTEGER NOT NULL, type TEXT, base_model TEXT, username TEXT,
    reactions INTEGER NOT NULL, width INTEGER, height INTEGER, t REAL);
CREATE INDEX IF NOT EXISTS by_created ON images(created, n);
CREATE INDEX IF NOT EXISTS by_reactions ON images(reactions, n);
CREATE VIRTUAL TABLE IF NOT EXISTS text USING fts5(prompt, negative_prompt, username, base_model, tags,
    tokenize = 'unicode61');
CREATE TABLE IF NOT EXISTS sources(key TEXT, source TEXT, PRIMARY KEY(key, source)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs(at INTEGER PRIMARY KEY, event TEXT, t REAL, query TEXT, reason TEXT,
    message TEXT, exit_code INTEGER, counts TEXT, settings TEXT);
CREATE TABLE IF NOT EXISTS excluded(key TEXT PRIMARY KEY) WITHOUT ROWID;
"""
_BATCH = 50_000  # records per transaction while catching up
UNKNOWN_LEVEL = len(N.NSFW_LEVELS)  # sorts above X: an image of unknown level is blurred like the highest


class Index:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.manifest = state_dir / MANIFEST_NAME
        folder = state_dir / INDEX_DIR
        folder.mkdir(exist_ok=True)
        self.path = folder / "index.sqlite"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a lost tail is re-read from the manifest
        self.db.executescript(_SCHEMA)
        if self._meta("version") != _VERSION:
            self._reset()
        self._exclusions_seen: tuple[int, int] | None = None
        self.base_models = {b for (b,) in self.db.execute("SELECT DISTINCT base_model FROM images") if b}

    def close(self) -> None:
        self.db.close()

    def _meta(self, k: str) -> str | None:
        found = self.db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if found is None else found[0]

    def _reset(self) -> None:
        with self.db:
            self.db.execute("BEGIN")
            for table in ("states", "images", "text", "sources", "runs"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("DELETE FROM meta")
            self.base_models = set()
            self.db.execute("INSERT INTO meta VALUES ('version', ?), ('offset', '0'), ('file', '')", (_VERSION,))

    def refresh(self) -> int:
        """Read what the manifest gained since the last refresh; the number of records read."""
        self.sync_exclusions()
        try:
            stat = self.manifest.stat()
        except FileNotFoundError:
            return 0
        offset = int(self._meta("offset") or 0)
        identity = f"{stat.st_dev}:{stat.st_ino}"
        if identity != self._meta("file") or stat.st_size < offset:
            self._reset()  # compacted or replaced: what we read is no longer what is there
            offset = 0
        end = _complete_end(self.manifest, stat.st_size)
        if end <= offset:
            return 0
        count = 0
        self.db.execute("BEGIN")
        self.db.execute("UPDATE meta SET v = ? WHERE k = 'file'", (identity,))
        try:
            for at, record in iter_records_at(self.manifest, start=offset):
                if at >= end:
                    break
                if count and count % _BATCH == 0:  # a first build of a big mirror keeps what it read if stopped
                    self._commit(at)
                self._add(at, record)
                count += 1
            self._commit(end, more=False)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return count

    def _commit(self, offset: int, more: bool = True) -> None:
        """Everything before byte `offset` is indexed."""
        self.db.execute("UPDATE meta SET v = ? WHERE k = 'offset'", (str(offset),))
        self.db.execute("COMMIT")
        if more:
            self.db.execute("BEGIN")

    def _add(self, at: int, record: dict[str, Any]) -> None:
        kind = record["kind"]
        if kind == RUN:
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)", (
                at, str(record.get("event")), _number(record.get("t")), _s(record.get("query")),
                _s(record.get("reason")), _s(record.get("message")), record.get("exit_code"),
                _json(record.get("counts")), _json(record.get("settings"))))
            return
        if kind not in (IMAGE, REF):
            return
        ident = key_of(record)
        if ident is None:
            return
        key = str(ident)
        if isinstance(record.get("source"), str):
            self.db.execute("INSERT OR IGNORE INTO sources VALUES (?, ?)", (key, record["source"]))
        if kind == REF:
            return
        status = str(status_of(record))
        reason = str(record.get("reason") or record.get("error") or "")
        self.db.execute("INSERT OR REPLACE INTO states VALUES (?,?,?,?)", (key, status, reason, _number(record.get("t"))))
        old = self.db.execute("SELECT n FROM images WHERE key = ?", (key,)).fetchone()
        if old is not None:
            self.db.execute("DELETE FROM images WHERE n = ?", old)
            self.db.execute("DELETE FROM text WHERE rowid = ?", old)
        if status != DONE:
            return
        data = row(record)
        if data["base_model"]:
            self.base_models.add(data["base_model"])
        item = item_of(record)
        when = N.created_at(item)
        rank = N.nsfw_rank(item)
        cursor = self.db.execute("INSERT INTO images VALUES (NULL,?,?,?,?,?,?,?,?,?,?,?)", (
            key, at, when.timestamp() if when else (_number(record.get("t")) or 0.0),
            UNKNOWN_LEVEL if rank is None else rank, data["type"], data["base_model"], data["username"],
            data["reactions"], data["width"], data["height"], _number(record.get("t"))))
        self.db.execute("INSERT INTO text(rowid, prompt, negative_prompt, username, base_model, tags) "
                        "VALUES (?,?,?,?,?,?)", (cursor.lastrowid, data["prompt"] or "", data["negative_prompt"] or "",
                                                 data["username"] or "", data["base_model"] or "", _tags(item)))

    def sync_exclusions(self) -> None:
        """Mirror the exclusion file into a table (for filtering in SQL) whenever the file changed."""
        try:
            stat = exclusions.path_of(self.state_dir).stat()
            seen = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            seen = (0, 0)
        if seen == self._exclusions_seen:
            return
        keys = exclusions.load(self.state_dir)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM excluded")
            self.db.executemany("INSERT INTO excluded VALUES (?)", ((k,) for k in keys))
        self._exclusions_seen = seen

    def record(self, key: str) -> dict[str, Any] | None:
        """The done record of `key`, read from the manifest at the offset the index keeps."""
        found = self.db.execute("SELECT at FROM images WHERE key = ?", (key,)).fetchone()
        return None if found is None else self.record_at(found[0])

    def record_at(self, at: int) -> dict[str, Any] | None:
        for _at, record in iter_records_at(self.manifest, start=at):
            return record
        return None

    def sources(self, key: str) -> list[str]:
        return [s for (s,) in self.db.execute("SELECT source FROM sources WHERE key = ? ORDER BY source", (key,))]


def _complete_end(path: Path, size: int) -> int:
    """The offset just past the last newline before `size`: the end of the last complete line."""
    with open(path, "rb") as f:
        position = size
        while position > 0:
            step = min(65536, position)
            f.seek(position - step)
            chunk = f.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                return position - step + cut + 1
            position -= step
    return 0


def item_of(record: dict[str, Any]) -> dict[str, Any]:
    item = record.get("item")
    return item if isinstance(item, dict) else {}


def _tags(item: dict[str, Any]) -> str:
    tags = item.get("tags")
    if not isinstance(tags, list):
        return ""
    names = [t.get("name") if isinstance(t, dict) else t for t in tags]
    return " ".join(n for n in names if isinstance(n, str))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
