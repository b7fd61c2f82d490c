"""The store: items with provenance, crawls and refusals, on SQLAlchemy 2.

One schema, two engines: SQLite by default (a file, WAL mode, safe for several
processes on one machine) and PostgreSQL when crawls run on several machines.
Only portable SQL is used here, so the same code serves both.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

SCHEMA_VERSION = 1

metadata = sa.MetaData()

crawls = sa.Table(
    "crawls",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("spider", sa.String(200), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("finish_reason", sa.String(200)),
    sa.Column("start_urls", sa.JSON, nullable=False, default=list),
    sa.Column("user_agent", sa.String(500), nullable=False, default=""),
    sa.Column("stats", sa.JSON),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crawl_id", sa.String(64), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False, index=True),
    sa.Column("title", sa.Text, nullable=False, default=""),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    # Every other field of the item, and provenance, as JSON.
    sa.Column("data", sa.JSON, nullable=False, default=dict),
    sa.Index("ix_items_host", "host"),
)

refusals = sa.Table(
    "refusals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crawl_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False, index=True),
    sa.Column("gate", sa.String(40), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("rule", sa.Text, nullable=False, default=""),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Index("ix_refusals_crawl_reason", "crawl_id", "reason"),
)

store_meta = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

ITEM_COLUMNS = ("url", "host", "domain", "title", "text", "fetched_at", "crawl_id")


class StoreError(RuntimeError):
    """The store URL is unusable; the message says which setting to fix."""


def _enable_sqlite_concurrency(engine: Engine) -> None:
    """WAL, a busy timeout and BEGIN IMMEDIATE for several processes.

    WAL lets readers run beside one writer. pysqlite's own transaction
    handling starts transactions lazily, so two processes can both read and
    then both try to write, and SQLite fails one with "database is locked"
    without waiting. Starting every transaction with BEGIN IMMEDIATE takes the
    write lock up front, where the busy timeout applies (SQLAlchemy's
    documented recipe for pysqlite).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def domain_filter(table: sa.Table, domain: str) -> sa.ColumnElement[bool]:
    """Rows whose host is ``domain`` or a subdomain of it.

    ``domain`` holds the registered domain, so a registered domain matches
    through its index; a subdomain such as ``blog.news.test`` matches on host.
    """
    domain = domain.strip().lower().rstrip(".")
    return sa.or_(
        table.c.domain == domain,
        table.c.host == domain,
        table.c.host.like("%." + _like_escape(domain), escape="\\"),
    )


class Store:
    """The project's one database. Thread-compatible, not thread-safe."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"COMPLIANCE_STORE: {url!r} is not a SQLAlchemy URL ({exc})") from None
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = parsed.database or ""
            if database in ("", ":memory:"):
                raise StoreError(
                    "COMPLIANCE_STORE: an in-memory SQLite store would lose everything at exit and "
                    "cannot be shared between processes; use a file, e.g. sqlite:///var/compliance.sqlite3"
                )
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"timeout": 30})
            _enable_sqlite_concurrency(self.engine)
        else:
            try:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            except Exception as exc:  # noqa: BLE001 - report any driver problem as one line
                raise StoreError(f"COMPLIANCE_STORE: cannot use {url!r}: {exc}") from None
        self._create_schema()

    def _create_schema(self) -> None:
        # Two processes opening a new store at once can both see no table and
        # both run CREATE TABLE; the loser fails with "already exists" and
        # simply retries, finding the winner's tables.
        for attempt in range(5):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                with self.engine.begin() as conn:
                    found = conn.execute(
                        sa.select(store_meta.c.value).where(store_meta.c.key == "schema_version")
                    ).scalar()
                    if found is None:
                        conn.execute(store_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                    elif int(found) > SCHEMA_VERSION:
                        raise StoreError(
                            f"COMPLIANCE_STORE: the store at {self.url} has schema version {found}, "
                            f"newer than this program's {SCHEMA_VERSION}; upgrade the program"
                        )
                return
            except (OperationalError, ProgrammingError, sa.exc.IntegrityError) as exc:
                if attempt == 4:
                    raise StoreError(f"COMPLIANCE_STORE: cannot open {self.url}: {exc.orig}") from None
                time.sleep(0.05 * (attempt + 1))

    def dispose(self) -> None:
        self.engine.dispose()

    # -- crawls -------------------------------------------------------------

    def start_crawl(self, crawl_id: str, spider: str, start_urls: list[str], user_agent: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                crawls.insert().values(
                    id=crawl_id, spider=spider, started_at=utcnow(), start_urls=start_urls, user_agent=user_agent
                )
            )

    def finish_crawl(self, crawl_id: str, reason: str, stats: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                crawls.update()
                .where(crawls.c.id == crawl_id)
                .values(finished_at=utcnow(), finish_reason=reason, stats=json.loads(json.dumps(stats, default=str)))
            )

    def last_crawl_id(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(crawls.c.id).order_by(crawls.c.started_at.desc()).limit(1)).scalar()

    # -- writes -------------------------------------------------------------

    def write(self, item_rows: list[dict[str, Any]], refusal_rows: list[dict[str, Any]]) -> None:
        """Insert a batch in one transaction: all of it lands, or none."""
        if not item_rows and not refusal_rows:
            return
        with self.engine.begin() as conn:
            if item_rows:
                conn.execute(items.insert(), item_rows)
            if refusal_rows:
                conn.execute(refusals.insert(), refusal_rows)

    # -- reads --------------------------------------------------------------

    def count_items(self, domain: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(items)
        if domain:
            query = query.where(domain_filter(items, domain))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_items(self, domain: str | None = None, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every stored item as a flat dict (JSON-ready), oldest first."""
        last_id = 0
        while True:
            query = sa.select(items).where(items.c.id > last_id).order_by(items.c.id).limit(batch)
            if domain:
                query = query.where(domain_filter(items, domain))
            with self.engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
            if not rows:
                return
            for row in rows:
                last_id = row["id"]
                yield item_record(row)

    def last_seen(self, url: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The newest stored item for ``url`` (or None) and the refusals recorded for it, newest first."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(items).where(items.c.url == url).order_by(items.c.id.desc()).limit(1)).mappings().first()
            refused = conn.execute(
                sa.select(refusals).where(refusals.c.url == url).order_by(refusals.c.id.desc()).limit(20)
            ).mappings().all()
        return (item_record(row) if row is not None else None), [dict(r) for r in refused]

    def refusal_counts(self, crawl_id: str | None = None) -> list[tuple[str, int]]:
        query = sa.select(refusals.c.reason, sa.func.count()).group_by(refusals.c.reason)
        if crawl_id:
            query = query.where(refusals.c.crawl_id == crawl_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return sorted(((r, int(n)) for r, n in rows), key=lambda p: (-p[1], p[0]))

    def refusals(self, crawl_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(refusals).order_by(refusals.c.id)
        if crawl_id:
            query = query.where(refusals.c.crawl_id == crawl_id)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]

    def items_per_host(self, crawl_id: str | None = None) -> list[tuple[str, int]]:
        query = sa.select(items.c.host, sa.func.count()).group_by(items.c.host).order_by(items.c.host)
        if crawl_id:
            query = query.where(items.c.crawl_id == crawl_id)
        with self.engine.connect() as conn:
            return [(h, int(n)) for h, n in conn.execute(query).all()]


def utcnow() -> datetime:
    return datetime.now(UTC)


def item_record(row: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name in ITEM_COLUMNS:
        value = row[name]
        if isinstance(value, datetime):
            if value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
                value = value.replace(tzinfo=UTC)
            value = value.isoformat()
        record[name] = value
    extra = row["data"] or {}
    for key, value in extra.items():
        record.setdefault(key, value)
    return record


def item_row(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Split an item's fields into the store's columns and its JSON ``data``."""
    row: dict[str, Any] = {name: fields.get(name) for name in ITEM_COLUMNS}
    row["title"] = row["title"] or ""
    row["text"] = row["text"] or ""
    fetched = row["fetched_at"]
    if isinstance(fetched, str):
        fetched = datetime.fromisoformat(fetched)
    row["fetched_at"] = fetched or utcnow()
    row["data"] = json.loads(json.dumps({k: v for k, v in fields.items() if k not in ITEM_COLUMNS}, default=str))
    return row


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str) -> int:
    """Write records as JSON lines atomically (a new file, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return count
