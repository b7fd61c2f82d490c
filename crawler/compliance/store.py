"""The store: items with provenance, crawls and refusals, on SQLAlchemy 2.

One schema, two engines: SQLite by default (a file, WAL mode, safe for several
processes on one machine) and PostgreSQL when crawls run on several machines.
Only portable SQL is used here, so the same code serves both.
"""

from __future__ import annotations

import hashlib
import json
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from crawler.compliance.files import replaced_atomically
from crawler.compliance.ledger import GENESIS, Entry, canonical_json, entry_hash
from crawler.compliance.registry import NOTICE_KINDS, SCHEMA_VERSION, StoreError, LedgerRow, NoticeRow, ledger_notice_states, notice_rows, utcnow

if TYPE_CHECKING:
    from crawler.identity.signing import SigningKey

#: 1: crawls, items, refusals. 2: notices, the ledger, purges, crawl outputs and presence
#: (new tables only, so a version-1 store is upgraded by creating them).
#: 3: items.item_key, unique per crawl (a page is stored once per crawl whatever
#: happens to workers), and purge_marks (what each purge step has counted).
#: A store of version 2 is migrated in place (see :meth:`Store._migrate_items`).
#: 4: the ledger is also a Merkle tree (ledger_nodes) with signed heads
#: (ledger_heads); a store of version 3 gets its existing entries as the
#: first leaves, in order (see :meth:`Store._migrate_ledger_tree`).

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
    # Which item of which page this is (see item_key): unique per crawl, so a
    # page a killed worker stored and another worker fetched again is stored once.
    sa.Column("item_key", sa.String(80), nullable=False, default=""),
    sa.Index("ix_items_host", "host"),
    sa.Index("ux_items_crawl_item_key", "crawl_id", "item_key", unique=True),
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

notices = sa.Table(
    "notices",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The notice as filed (Lumen fields and ours), and the domains its
    # platform covered when it was filed (kept even if the policy changes).
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("resolved_domains", sa.JSON, nullable=False, default=list),
    sa.Column("file", sa.Text, nullable=False, default=""),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(60), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # The notice registry is checked against the ledger's notice entries (every
    # `notice list`, every registry change a crawl adopts, every objection
    # decided): found through this index, not by reading a million entries.
    sa.Index("ix_ledger_kind_seq", "kind", "seq"),
)

ledger_nodes = sa.Table(
    "ledger_nodes",
    metadata,
    # The hash of each complete subtree of the ledger's Merkle tree: (level,
    # idx) covers leaves idx * 2**level .. (idx + 1) * 2**level - 1; level 0
    # are the entries' leaf hashes (see crawler/transparency/tree.py).
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

ledger_heads = sa.Table(
    "ledger_heads",
    metadata,
    # Every signed tree head, kept (RFC 9162 TreeHeadDataV2 signed with the identity key).
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(100), nullable=False),
)

purges = sa.Table(
    "purges",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("notice_id", sa.String(128), index=True),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("operator", sa.Text, nullable=False, default=""),
    sa.Column("scope", sa.JSON, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(20), nullable=False),  # running, done
    sa.Column("receipt", sa.JSON),
    sa.Column("ledger_seq", sa.Integer),
    sa.Column("ledger_hash", sa.String(64)),
)

purge_steps = sa.Table(
    "purge_steps",
    metadata,
    sa.Column("purge_id", sa.String(40), primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    # done, manual_action_required, deferred (a running crawl owns it), pending
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("count", sa.Integer, nullable=False, default=0),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

purge_marks = sa.Table(
    "purge_marks",
    metadata,
    # A change a purge prepared (a trash folder, a rewritten file) whose count
    # was added to its step: committed in the same transaction as the count,
    # so a purge killed at any point and run again counts each change once.
    sa.Column("purge_id", sa.String(40), primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("mark", sa.String(200), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

crawl_outputs = sa.Table(
    "crawl_outputs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crawl_id", sa.String(64), nullable=False, index=True),
    sa.Column("machine", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),  # feed, httpcache, jobdir
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("options", sa.JSON, nullable=False, default=dict),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

crawl_presence = sa.Table(
    "crawl_presence",
    metadata,
    sa.Column("crawl_id", sa.String(64), primary_key=True),
    sa.Column("machine", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed", sa.Boolean, nullable=False, default=False),
)

def _head(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"tree_size": int(row["tree_size"]), "root_hash": row["root_hash"], "timestamp": int(row["timestamp"]),
            "key_id": row["key_id"], "signature": row["signature"]}  # fmt: skip


#: A crawl whose heartbeat is older than this is taken for dead (killed, crashed).
PRESENCE_TIMEOUT = 10.0

ITEM_COLUMNS = ("url", "host", "domain", "title", "text", "fetched_at", "crawl_id")



#: Install hint for the PostgreSQL driver (the cluster extra includes it).
POSTGRES_EXTRA = "pip install 'ethical-crawler[postgres]' (or 'ethical-crawler[cluster]', which includes it)"


def database_url(url: str) -> URL:
    """``url`` as SQLAlchemy's URL, its database driver importable; StoreError otherwise.

    A PostgreSQL URL that names no driver gets psycopg (3), the one the
    ``postgres`` extra installs, rather than SQLAlchemy's default psycopg2.
    The driver is imported, not connected: a missing one is reported before a
    crawl starts, with the extra that brings it.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"COMPLIANCE_STORE: {url!r} is not a SQLAlchemy URL ({exc})") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        hint = f" Fix: {POSTGRES_EXTRA}." if parsed.drivername == "postgresql+psycopg" else ""
        raise StoreError(f"COMPLIANCE_STORE: cannot use {url!r}: its database driver is not installed ({exc}).{hint}") from None
    except ArgumentError as exc:  # an unknown database or driver name
        raise StoreError(f"COMPLIANCE_STORE: cannot use {url!r}: {exc}") from None
    return parsed


#: Written in a purge's store note when the scrub of deleted text could not finish; the next purge retries it.
SCRUB_INCOMPLETE = "scrub incomplete"
#: How long the scrub's checkpoint waits for readers (ms) before it leaves the log for later.
CHECKPOINT_WAIT_MS = 1000

#: The SQL function (SQLite) that returns a text's NFKC form, or NULL when NFKC leaves it unchanged.
NFKC_FUNCTION = "compliance_nfkc"


def nfkc_if_changed(text: str | None) -> str | None:
    """``text`` in Unicode NFKC (full-width letters, ligatures, ...: ``ｊａｎｅ`` -> ``jane``), or None if that changes nothing."""
    if not text or unicodedata.is_normalized("NFKC", text):
        return None
    return unicodedata.normalize("NFKC", text)


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
        # A deleted row's bytes are overwritten with zeros, not left in a free
        # page for anyone who reads the file (a purge must leave nothing
        # behind; no measurable cost on the crawl's writes, see bench/README.md).
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.close()
        # The erasure search's second index holds items whose text changes under
        # Unicode NFKC (crawler/dataprotection/tables.py): its triggers call this.
        dbapi_connection.create_function(NFKC_FUNCTION, 1, nfkc_if_changed, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Reads (Store._read) start a deferred transaction: in WAL mode they
        # never wait for a writer, so a crawl polling the notice registry is
        # not held up by a purge deleting a large chunk.
        read_only = connection.get_execution_options().get("compliance_read", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


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

    def __init__(self, url: str, head_key: SigningKey | None = None) -> None:
        parsed = database_url(url)
        self.url = url
        #: Signs a tree head after every append (the identity key); None: appends are left unsigned
        #: until a process with the key signs a head that covers them.
        self.head_key = head_key
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
                self.engine = sa.create_engine(parsed, pool_pre_ping=True)
            except Exception as exc:  # noqa: BLE001 - report any driver problem as one line
                raise StoreError(f"COMPLIANCE_STORE: cannot use {url!r}: {exc}") from None
        #: The registry poll's own connection (PostgreSQL; see :meth:`registry_version`).
        self._poll: sa.Connection | None = None
        self._create_schema()

    def _create_schema(self) -> None:
        if self._schema_is_current():
            return
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
                    elif int(found) < SCHEMA_VERSION:
                        self._migrate_items(conn)
                        self._migrate_ledger_tree(conn)
                        self._migrate_indexes(conn)
                        conn.execute(
                            store_meta.update().where(store_meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
                        )
                    elif int(found) > SCHEMA_VERSION:
                        raise StoreError(
                            f"COMPLIANCE_STORE: the store at {self.url} has schema version {found}, "
                            f"newer than this program's {SCHEMA_VERSION}; upgrade the program"
                        )
                    for key in ("registry_version", "ledger_head"):
                        if conn.execute(sa.select(store_meta.c.key).where(store_meta.c.key == key)).first() is None:
                            conn.execute(store_meta.insert().values(key=key, value="0" if key == "registry_version" else ""))
                return
            except (OperationalError, ProgrammingError, sa.exc.IntegrityError) as exc:
                if attempt == 4:
                    raise StoreError(f"COMPLIANCE_STORE: cannot open {self.url}: {exc.orig}") from None
                time.sleep(0.05 * (attempt + 1))

    @staticmethod
    def _migrate_items(conn: sa.Connection) -> None:
        """Version 2 to 3: add ``items.item_key`` and its unique index, in the caller's transaction.

        Rows already stored get ``row:<id>``, unique by construction: a store
        that already holds duplicates (from a worker killed before version 3)
        is migrated without deleting or merging anything; only rows written
        from now on are deduplicated. (Deleting data is for a purge, with a
        receipt, not for an upgrade.)
        """
        columns = {c["name"] for c in sa.inspect(conn).get_columns("items")}
        if "item_key" not in columns:
            conn.execute(sa.text("ALTER TABLE items ADD COLUMN item_key VARCHAR(80) NOT NULL DEFAULT ''"))
        conn.execute(
            items.update().where(items.c.item_key == "").values(item_key=sa.literal("row:") + sa.cast(items.c.id, sa.String))
        )
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("items")}
        if "ux_items_crawl_item_key" not in indexes:
            next(i for i in items.indexes if i.name == "ux_items_crawl_item_key").create(conn)

    @staticmethod
    def _migrate_indexes(conn: sa.Connection) -> None:
        """Version 4 to 5: create the indexes a table of an older store lacks (CREATE TABLE made the rest)."""
        for table in (ledger,):
            present = {i["name"] for i in sa.inspect(conn).get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in present:
                    index.create(conn)

    @staticmethod
    def _migrate_ledger_tree(conn: sa.Connection) -> None:
        """Version 3 to 4: the existing entries become the tree's first leaves, in order (one pass, once).

        The hash chain stays as it was (and ``ledger verify`` still checks it);
        no head is signed here (the store has no key): the next append, or
        ``scrapy ledger head``, signs one that covers them.
        """
        from crawler.transparency.tree import CompactRange

        if conn.execute(sa.select(ledger_nodes.c.level).limit(1)).first() is not None:
            return
        tree = CompactRange()
        last = 0
        while True:
            rows = conn.execute(sa.select(ledger).where(ledger.c.seq > last).order_by(ledger.c.seq).limit(5000)).all()
            if not rows:
                return
            written = []
            for row in rows:
                last = row.seq
                entry = Entry(row.seq, row.at, row.kind, row.payload, row.prev_hash, row.hash)
                written += tree.append(entry.leaf_hash())
            conn.execute(ledger_nodes.insert(), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in written])

    def _schema_is_current(self) -> bool:
        """One read: a store at this schema version with its registry and ledger keys needs no DDL.

        (Every command opens the store; checking each table on every open cost
        more than the rest of ``scrapy notice list``.) The version row is
        written only after every table was created.
        """
        try:
            with self._read() as conn:
                rows = dict(conn.execute(sa.select(store_meta.c.key, store_meta.c.value).where(
                    store_meta.c.key.in_(("schema_version", "registry_version", "ledger_head")))).all())  # fmt: skip
        except sa.exc.DBAPIError:
            return False  # no store yet (or unreadable): the full path below creates it or reports why
        return rows.get("schema_version") == str(SCHEMA_VERSION) and {"registry_version", "ledger_head"} <= set(rows)

    def _read(self) -> sa.Connection:
        """A connection for reading only (on SQLite it never takes the write lock)."""
        return self.engine.connect().execution_options(compliance_read=True)

    def dispose(self) -> None:
        self._drop_poll_connection()
        self.engine.dispose()

    # -- crawls -------------------------------------------------------------

    def start_crawl(self, crawl_id: str, spider: str, start_urls: list[str], user_agent: str) -> None:
        """Record a crawl (once: the workers of a distributed crawl share its id)."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(crawls.c.id).where(crawls.c.id == crawl_id)).first() is not None:
                return
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

    def crawl(self, crawl_id: str) -> dict[str, Any] | None:
        """One crawl's record (times, reason, start URLs), JSON-ready; None if unknown."""
        with self._read() as conn:
            row = conn.execute(sa.select(crawls).where(crawls.c.id == crawl_id)).mappings().first()
        if row is None:
            return None
        record = {k: row[k] for k in ("id", "spider", "started_at", "finished_at", "finish_reason", "start_urls", "user_agent")}
        for key in ("started_at", "finished_at"):
            if isinstance(record[key], datetime):
                record[key] = (record[key] if record[key].tzinfo else record[key].replace(tzinfo=UTC)).isoformat(timespec="seconds")
        return record

    def last_crawl_id(self) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(crawls.c.id).order_by(crawls.c.started_at.desc()).limit(1)).scalar()

    # -- writes -------------------------------------------------------------

    def write(
        self,
        item_rows: list[dict[str, Any]],
        refusal_rows: list[dict[str, Any]],
        known_registry: int | None = None,
        on_new_registry: Callable[[int, list[NoticeRow]], tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None,
    ) -> int:
        """Insert a batch in one transaction: all of it lands, or none. Returns the items written.

        With ``known_registry`` (the notice registry version the writer has
        seen), the registry version is read inside the same transaction,
        under a lock that ``notice add`` must wait for (SQLite: BEGIN
        IMMEDIATE; PostgreSQL: FOR SHARE on the row it updates). If a notice
        arrived since, ``on_new_registry`` gets the new version and the
        notices and returns the rows still allowed. So a batch either lands
        before the notice (and its purge, which runs after, deletes it) or is
        filtered by it: after ``notice add`` returns, nothing in scope lands.
        """
        if not item_rows and not refusal_rows:
            return 0
        with self.engine.begin() as conn:
            if item_rows and known_registry is not None and on_new_registry is not None:
                version = self._registry_version(conn, lock=True)
                if version != known_registry:
                    item_rows, refused = on_new_registry(version, self._notice_rows(conn))
                    refusal_rows = [*refusal_rows, *refused]
            written = 0
            if item_rows:
                for row in item_rows:
                    if not row.get("item_key"):
                        row["item_key"] = item_key(row)
                # Idempotent: a row whose (crawl, item key) is already stored
                # is skipped, so a page stored by a worker that was killed
                # before releasing its lease, then fetched again, lands once.
                insert = self._insert_ignoring_duplicates().returning(items.c.id)
                written = len(conn.execute(insert, item_rows).all())
            if refusal_rows:
                conn.execute(refusals.insert(), refusal_rows)
        return written

    def _insert_ignoring_duplicates(self) -> Any:
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(items).on_conflict_do_nothing(index_elements=["crawl_id", "item_key"])

    # -- notice registry ------------------------------------------------------

    def _registry_version(self, conn: sa.Connection, *, lock: bool = False) -> int:
        query = sa.select(store_meta.c.value).where(store_meta.c.key == "registry_version")
        if lock:
            query = query.with_for_update(read=True)
        return int(conn.execute(query).scalar() or 0)

    def registry_version(self) -> int:
        """Bumped by every notice added or withdrawn; crawls poll it (one indexed row).

        On PostgreSQL, where each call is a network round trip and crawls poll
        every 0.25 s, the poll keeps a connection of its own in autocommit: one
        round trip per poll, where a pooled connection adds a ping, a BEGIN and
        a ROLLBACK. A connection the server dropped is replaced once at once,
        as the pool's ping would; a second failure is the caller's.
        """
        if self.is_sqlite:
            with self._read() as conn:
                return self._registry_version(conn)
        for attempt in (1, 2):
            if self._poll is None:
                self._poll = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                return self._registry_version(self._poll)
            except sa.exc.DBAPIError:
                self._drop_poll_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _drop_poll_connection(self) -> None:
        conn, self._poll = self._poll, None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:  # noqa: BLE001, S110 - a broken connection is being thrown away
                pass

    def _bump_registry(self, conn: sa.Connection) -> int:
        current = int(
            conn.execute(
                sa.select(store_meta.c.value).where(store_meta.c.key == "registry_version").with_for_update()
            ).scalar()
            or 0
        )
        conn.execute(store_meta.update().where(store_meta.c.key == "registry_version").values(value=str(current + 1)))
        return current + 1

    def _notice_rows(self, conn: sa.Connection) -> list[NoticeRow]:
        """The registry, each row checked against the ledger (see :class:`NoticeRow`)."""
        rows = conn.execute(sa.select(notices).order_by(notices.c.recorded_at, notices.c.id)).mappings().all()
        return notice_rows(rows, self._ledger_notice_entries(conn))

    def _ledger_notices(self, conn: sa.Connection) -> dict[str, Any]:
        """Each notice's state as the ledger holds it (see :func:`crawler.compliance.registry.ledger_notice_states`)."""
        return ledger_notice_states(self._ledger_notice_entries(conn))

    @staticmethod
    def _ledger_notice_entries(conn: sa.Connection) -> list[LedgerRow]:
        query = sa.select(ledger.c.seq, ledger.c.at, ledger.c.kind, ledger.c.payload, ledger.c.prev_hash, ledger.c.hash)
        return [LedgerRow(*row) for row in conn.execute(query.where(ledger.c.kind.in_(NOTICE_KINDS)).order_by(ledger.c.seq))]

    def notice_disagreements(self) -> list[str]:
        """Every way the registry disagrees with the ledger, one line per notice (empty when they agree)."""
        return [f"notice {row.id}: {'; '.join(row.disagreements)}" for row in self.notice_rows() if row.disagreements]

    def notice_rows(self) -> list[NoticeRow]:
        with self._read() as conn:
            return self._notice_rows(conn)

    def notice_row(self, notice_id: str) -> NoticeRow | None:
        return next((r for r in self.notice_rows() if r.id == notice_id), None)

    def add_notice(
        self, record: dict[str, Any], resolved_domains: list[str], file: str, operator: str
    ) -> tuple[bool, Entry | None]:
        """Record a notice, bump the registry and append ``notice.added`` to the ledger, atomically.

        Adding the same notice again (same id, same content) changes nothing
        and returns ``(False, None)``, so a killed ``notice add`` can be run
        again; the same id with other content is refused.
        """
        with self.engine.begin() as conn:
            existing = conn.execute(sa.select(notices.c.data).where(notices.c.id == record["id"])).scalar()
            if existing is not None:
                if canonical_json(existing) == canonical_json(record):
                    return False, None
                raise StoreError(f"notice {record['id']!r} is already recorded with other content; choose another --id")
            now = utcnow()
            conn.execute(
                notices.insert().values(
                    id=record["id"], status=record["status"], effective_at=datetime.fromisoformat(record["effective_at"]),
                    recorded_at=now, updated_at=now, data=record, resolved_domains=resolved_domains, file=file,
                )
            )  # fmt: skip
            version = self._bump_registry(conn)
            entry = self._append_ledger(
                conn, "notice.added",
                {"notice": record, "resolved_domains": resolved_domains, "operator": operator, "registry_version": version},
            )  # fmt: skip
        return True, entry

    def withdraw_notice(self, notice_id: str, record: dict[str, Any], operator: str, reason: str) -> Entry:
        with self.engine.begin() as conn:
            # Active or withdrawn is the ledger's to say, not the row's (which may have been edited).
            state = self._ledger_notices(conn).get(notice_id)
            if state is not None and state.record is not None and state.withdrawn_at is not None:
                raise StoreError(f"notice {notice_id!r} is already withdrawn (ledger entry says so, at {state.withdrawn_at})")
            updated = conn.execute(
                notices.update().where(notices.c.id == notice_id).values(status="withdrawn", data=record, updated_at=utcnow())
            ).rowcount
            if not updated:
                raise StoreError(f"notice {notice_id!r} is not an active notice in the store")
            version = self._bump_registry(conn)
            return self._append_ledger(
                conn, "notice.withdrawn",
                {"notice_id": notice_id, "withdrawn_at": record.get("withdrawn_at"), "operator": operator,
                 "reason": reason, "registry_version": version, "purged_data_restored": False},
            )  # fmt: skip

    # -- ledger ---------------------------------------------------------------

    def _append_ledger(self, conn: sa.Connection, kind: str, payload: Any) -> Entry:
        """Append one entry inside the caller's transaction (serialised by the head row's lock), and sign a head."""
        return self._append_ledger_batch(conn, [(kind, payload)])[0]

    def _append_ledger_batch(self, conn: sa.Connection, records: list[tuple[str, Any]]) -> list[Entry]:
        """Append entries in order: chain, tree nodes, then one signed tree head for the batch (if a key is set)."""
        from crawler.transparency.tree import CompactRange, MissingNode

        head = conn.execute(
            sa.select(store_meta.c.value).where(store_meta.c.key == "ledger_head").with_for_update()
        ).scalar()
        if head:
            seq_text, sep, prev_hash = head.partition(":")
            if not sep or not seq_text.isdigit() or not prev_hash:
                raise StoreError(f"the ledger head is damaged ({head[:80]!r}): nothing more is appended until it is "
                                 "repaired; `scrapy ledger verify` says where the chain breaks")  # fmt: skip
            seq = int(seq_text) + 1
        else:
            seq, prev_hash = 1, GENESIS
        # An entry at or past the next number was not written through the
        # head (inserted by hand, or the head was lost): refuse, do not fork.
        beyond = conn.execute(sa.select(sa.func.max(ledger.c.seq)).where(ledger.c.seq >= seq)).scalar()
        if beyond is not None:
            raise StoreError(f"the ledger holds entry {beyond} beyond its head ({seq - 1}): nothing more is appended "
                             "until this is explained; `scrapy ledger verify` names it")  # fmt: skip
        # The tree must hold exactly the entries so far: its leaves, and the
        # complete subtrees the next leaves hang from.
        size = seq - 1
        leaves = conn.execute(sa.select(sa.func.max(ledger_nodes.c.idx)).where(ledger_nodes.c.level == 0)).scalar()
        if (leaves if leaves is not None else -1) != size - 1:
            raise StoreError(f"the ledger's Merkle tree holds {0 if leaves is None else leaves + 1} leaves for {size} entries: "
                             "nothing more is appended until this is explained; `scrapy ledger verify` says where")  # fmt: skip
        try:
            tree = CompactRange.of(size, lambda keys: self._fetch_nodes(conn, keys))
        except MissingNode as exc:
            raise StoreError(f"the ledger's Merkle tree is damaged ({exc}): nothing more is appended; see `scrapy ledger verify`") from None
        entries, nodes = [], []
        for kind, payload in records:
            payload = json.loads(canonical_json(payload))
            at = utcnow().isoformat(timespec="microseconds")
            digest = entry_hash(seq, at, kind, payload, prev_hash)
            entry = Entry(seq, at, kind, canonical_json(payload), prev_hash, digest)
            entries.append(entry)
            nodes += tree.append(entry.leaf_hash())
            seq, prev_hash = seq + 1, digest
        conn.execute(ledger.insert(), [{"seq": e.seq, "at": e.at, "kind": e.kind, "payload": e.payload,
                                        "prev_hash": e.prev_hash, "hash": e.hash} for e in entries])  # fmt: skip
        conn.execute(ledger_nodes.insert(), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes])
        last = entries[-1]
        if not conn.execute(store_meta.update().where(store_meta.c.key == "ledger_head").values(value=f"{last.seq}:{last.hash}")).rowcount:
            conn.execute(store_meta.insert().values(key="ledger_head", value=f"{last.seq}:{last.hash}"))
        if self.head_key is not None:
            self._sign_head(conn, tree.size, tree.root())
        return entries

    def append_ledger(self, kind: str, payload: Any) -> Entry:
        with self.engine.begin() as conn:
            return self._append_ledger(conn, kind, payload)

    def append_ledger_batch(self, records: list[tuple[str, Any]]) -> list[Entry]:
        """Append several entries in one transaction, under one signed head."""
        if not records:
            return []
        with self.engine.begin() as conn:
            return self._append_ledger_batch(conn, records)

    # -- the Merkle tree and its signed heads ----------------------------------

    def _fetch_nodes(self, conn: sa.Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored nodes by (level, idx), in one query per 400 keys (a proof needs at most ~2 log2 n)."""
        wanted = sorted(set(keys))
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            by_level: dict[int, list[int]] = {}
            for level, idx in chunk:
                by_level.setdefault(level, []).append(idx)
            # One indexed lookup per level (a row-value IN is not planned as an
            # index search by SQLite: it scanned the table, seconds at a million).
            rows = conn.execute(
                sa.select(ledger_nodes.c.level, ledger_nodes.c.idx, ledger_nodes.c.hash).where(
                    sa.or_(*(sa.and_(ledger_nodes.c.level == level, ledger_nodes.c.idx.in_(idxs)) for level, idxs in by_level.items()))
                )
            ).all()
            found.update({(int(lv), int(ix)): bytes(h) for lv, ix, h in rows})
        return found

    def _sign_head(self, conn: sa.Connection, size: int, root: bytes) -> dict[str, Any]:
        from crawler.transparency.heads import sign_head

        assert self.head_key is not None
        if conn.execute(sa.select(ledger_heads.c.tree_size).where(ledger_heads.c.tree_size == size)).first() is not None:
            raise StoreError(f"a signed head of size {size} exists before the tree reached that size: the heads were "
                             "tampered with; nothing more is appended (see `scrapy ledger verify`)")  # fmt: skip
        # Never sign over a rewritten history: the tree must still have the
        # root the latest signed head committed to (about log2 n node reads).
        latest = conn.execute(sa.select(ledger_heads).where(ledger_heads.c.tree_size < size)
                              .order_by(ledger_heads.c.tree_size.desc()).limit(1)).mappings().first()  # fmt: skip
        if latest is not None:
            self._check_signed_root(conn, latest)
        signed = sign_head(self.head_key, size, root)
        conn.execute(ledger_heads.insert().values(**signed))
        return signed

    def _check_signed_root(self, conn: sa.Connection, head: Mapping[str, Any]) -> None:
        """StoreError unless the tree still has the root ``head`` (a stored signed head) committed to."""
        from crawler.transparency.tree import MissingNode
        from crawler.transparency.tree import root as tree_root

        try:
            now = tree_root(int(head["tree_size"]), lambda keys: self._fetch_nodes(conn, keys)).hex()
        except MissingNode as exc:
            now = f"(unreadable: {exc})"
        if now != str(head["root_hash"]):
            raise StoreError(f"the ledger no longer has the root its signed head of size {head['tree_size']} committed to: "
                             "its history was rewritten; nothing more is signed or appended (see `scrapy ledger verify`)")  # fmt: skip

    def ledger_tree_size(self) -> int:
        """How many leaves the tree holds (the largest level-0 index + 1: one index lookup)."""
        with self._read() as conn:
            last = conn.execute(sa.select(sa.func.max(ledger_nodes.c.idx)).where(ledger_nodes.c.level == 0)).scalar()
        return 0 if last is None else int(last) + 1

    def ledger_nodes(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        with self._read() as conn:
            return self._fetch_nodes(conn, keys)

    def tree_root(self, size: int) -> bytes:
        from crawler.transparency.tree import root

        return root(size, self.ledger_nodes)

    def latest_tree_head(self) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(ledger_heads).order_by(ledger_heads.c.tree_size.desc()).limit(1)).mappings().first()
        return _head(row) if row is not None else None

    def tree_head(self, size: int) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(ledger_heads).where(ledger_heads.c.tree_size == size)).mappings().first()
        return _head(row) if row is not None else None

    def tree_heads(self) -> Iterator[dict[str, Any]]:
        """Every signed head, oldest first, read in pages."""
        last = -1
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    sa.select(ledger_heads).where(ledger_heads.c.tree_size > last).order_by(ledger_heads.c.tree_size).limit(1000)
                ).mappings().all()
            if not rows:
                return
            for row in rows:
                last = int(row["tree_size"])
                yield _head(row)

    def sign_tree_head(self) -> dict[str, Any]:
        """The latest head, after signing one for the current tree if entries were appended without a key."""
        if self.head_key is None:
            raise StoreError("no signing key to sign a tree head with (COMPLIANCE_SIGNING_KEY; `scrapy identity init`)")
        with self.engine.begin() as conn:
            # The append lock: no entry lands between reading the size and signing it.
            conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == "ledger_head").with_for_update()).scalar()
            last = conn.execute(sa.select(sa.func.max(ledger_nodes.c.idx)).where(ledger_nodes.c.level == 0)).scalar()
            size = 0 if last is None else int(last) + 1
            row = conn.execute(sa.select(ledger_heads).order_by(ledger_heads.c.tree_size.desc()).limit(1)).mappings().first()
            if row is not None and int(row["tree_size"]) >= size:
                self._check_signed_root(conn, row)
                return _head(row)
            from crawler.transparency.tree import root

            return self._sign_head(conn, size, root(size, lambda keys: self._fetch_nodes(conn, keys)))

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        from crawler.transparency.tree import inclusion_proof

        return inclusion_proof(seq - 1, size, self.ledger_nodes)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        from crawler.transparency.tree import consistency_proof

        return consistency_proof(old, new, self.ledger_nodes)

    def ledger_entry(self, seq: int) -> Entry | None:
        with self._read() as conn:
            row = conn.execute(sa.select(ledger).where(ledger.c.seq == seq)).first()
        return None if row is None else Entry(row.seq, row.at, row.kind, row.payload, row.prev_hash, row.hash)

    def ledger_receipt(self, seq: int, head: dict[str, Any] | None = None) -> dict[str, Any]:
        """Entry ``seq``, its inclusion proof, and the signed head it is proved against (the latest, by default).

        Anyone can check it with crawler/verify_receipt.py and the crawler's
        published key directory, without trusting this store.
        """
        entry = self.ledger_entry(seq)
        if entry is None:
            raise StoreError(f"the ledger has no entry {seq}")
        head = head or (self.sign_tree_head() if self.head_key is not None else self.latest_tree_head())
        if head is None or head["tree_size"] < seq:
            raise StoreError(f"no signed tree head covers entry {seq} yet (`scrapy ledger head` signs one)")
        proof = self.inclusion_proof(seq, head["tree_size"])
        return {"entry": entry.as_dict(), "leaf_index": seq - 1, "inclusion_proof": [h.hex() for h in proof], "tree_head": head}

    def ledger_entries(self, after: int = 0, kinds: Iterable[str] | None = None) -> Iterator[Entry]:
        """Every entry after number ``after`` (of ``kinds``, if given) in sequence order, read in pages.

        The pages walk the primary key from ``after``: reading the entries a
        recent step appended costs what they are, not what the ledger is.
        """
        last = after
        wanted = None if kinds is None else sorted(set(kinds))
        while True:
            query = sa.select(ledger).where(ledger.c.seq > last)
            if wanted is not None:
                query = query.where(ledger.c.kind.in_(wanted))
            with self._read() as conn:
                rows = conn.execute(query.order_by(ledger.c.seq).limit(1000)).all()
            if not rows:
                return
            for row in rows:
                last = row.seq
                yield Entry(row.seq, row.at, row.kind, row.payload, row.prev_hash, row.hash)

    def ledger_head(self) -> tuple[int, str] | None:
        with self._read() as conn:
            head = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == "ledger_head")).scalar()
        if not head:
            return None
        seq, _, digest = head.partition(":")
        try:
            return int(seq), digest
        except ValueError:
            return -1, head  # an altered head: verify() reports it, nothing crashes

    def latest_ledger_payloads(self, kind: str, key: str) -> dict[Any, dict[str, Any]]:
        """The newest ``kind`` entry's payload per value of ``payload[key]`` (e.g. each platform's consents), in one scan."""
        latest: dict[Any, dict[str, Any]] = {}
        with self._read() as conn:
            for text in conn.execute(sa.select(ledger.c.payload).where(ledger.c.kind == kind).order_by(ledger.c.seq)).scalars():
                payload = json.loads(text)
                latest[payload.get(key)] = payload
        return latest

    # -- purges ---------------------------------------------------------------

    def start_purge(self, purge_id: str, notice_id: str | None, reason: str, operator: str, scope: dict[str, Any]) -> Entry:
        with self.engine.begin() as conn:
            conn.execute(
                purges.insert().values(
                    id=purge_id, notice_id=notice_id, reason=reason, operator=operator, scope=scope,
                    started_at=utcnow(), status="running",
                )
            )  # fmt: skip
            return self._append_ledger(
                conn, "purge.started",
                {"purge_id": purge_id, "notice_id": notice_id, "reason": reason, "operator": operator, "scope": scope},
            )  # fmt: skip

    def unfinished_purge(self, notice_id: str | None, scope: dict[str, Any]) -> dict[str, Any] | None:
        """A purge of the same notice (or the same scope) that was started and never completed."""
        with self._read() as conn:
            rows = conn.execute(sa.select(purges).where(purges.c.status == "running").order_by(purges.c.started_at)).mappings().all()
        for row in rows:
            if (notice_id and row["notice_id"] == notice_id) or (
                not notice_id and not row["notice_id"] and canonical_json(row["scope"]) == canonical_json(scope)
            ):
                return dict(row)
        return None

    def purge_record(self, purge_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(purges).where(purges.c.id == purge_id)).mappings().first()
        return dict(row) if row is not None else None

    def purges(self, notice_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(purges).order_by(purges.c.started_at)
        if notice_id:
            query = query.where(purges.c.notice_id == notice_id)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]

    def _add_to_step(
        self, conn: sa.Connection, purge_id: str, location: str, kind: str, count: int, status: str, detail: str = ""
    ) -> None:
        where = (purge_steps.c.purge_id == purge_id) & (purge_steps.c.location == location)
        # A location already purged stays "done": a late "deferred" (from a
        # stale view of running crawls) must not hide what was deleted.
        new_status = status if status == "done" else sa.case((purge_steps.c.status == "done", "done"), else_=status)
        new_detail = detail if status == "done" else sa.case((purge_steps.c.status == "done", purge_steps.c.detail), else_=detail)
        updated = conn.execute(
            purge_steps.update().where(where).values(
                count=purge_steps.c.count + count, status=new_status, detail=new_detail, updated_at=utcnow()
            )
        ).rowcount
        if not updated:
            conn.execute(
                purge_steps.insert().values(
                    purge_id=purge_id, location=location, kind=kind, count=count, status=status, detail=detail, updated_at=utcnow()
                )
            )

    def record_step(self, purge_id: str, location: str, kind: str, count: int, status: str, detail: str = "") -> None:
        """Add ``count`` to a location's tally (committed right after the location changed)."""
        with self.engine.begin() as conn:
            self._add_to_step(conn, purge_id, location, kind, count, status, detail)

    def commit_progress(self, purge_id: str, location: str, kind: str, count: int, mark: str) -> bool:
        """Add ``count`` to a location's tally and record ``mark`` (a prepared change), in one transaction.

        False, and nothing added, when ``mark`` was already counted: a purge
        killed after counting a change and before applying it applies it on
        the next run without counting it again.
        """
        with self.engine.begin() as conn:
            where = (purge_marks.c.purge_id == purge_id) & (purge_marks.c.location == location) & (purge_marks.c.mark == mark)
            if conn.execute(sa.select(purge_marks.c.mark).where(where)).first() is not None:
                return False
            conn.execute(purge_marks.insert().values(purge_id=purge_id, location=location, mark=mark, count=count, at=utcnow()))
            self._add_to_step(conn, purge_id, location, kind, count, "pending")
        return True

    def progress_counted(self, purge_id: str, location: str, mark: str) -> bool:
        """Whether the change ``mark`` of this purge's ``location`` was counted (see :meth:`commit_progress`)."""
        where = (purge_marks.c.purge_id == purge_id) & (purge_marks.c.location == location) & (purge_marks.c.mark == mark)
        with self._read() as conn:
            return conn.execute(sa.select(purge_marks.c.mark).where(where)).first() is not None

    def purge_steps(self, purge_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(sa.select(purge_steps).where(purge_steps.c.purge_id == purge_id).order_by(purge_steps.c.location))
            return [dict(r) for r in rows.mappings().all()]

    def scrub_deleted(self) -> str:
        """Leave nothing of deleted items readable in the store's files; what was done, for the receipt.

        SQLite overwrites deleted rows with zeros (``secure_delete``, set on
        every connection), but two copies outlive a DELETE: the full-text
        index (crawler/dataprotection/tables.py) keeps a deleted item's words
        in its segments until they are merged, and the write-ahead log keeps
        page images until a checkpoint. So the index is merged into one
        segment without the deleted entries (FTS5 ``optimize``: it costs
        time in proportion to the index), and the log is checkpointed and
        truncated. PostgreSQL keeps deleted row versions on disk until
        their space is reused: said so, for the operator to act on.
        """
        if not self.is_sqlite:
            return ("PostgreSQL keeps deleted row versions in the table's files until their space is reused; "
                    "VACUUM FULL items rewrites the table without them")  # fmt: skip
        done = ["deleted rows overwritten (secure_delete)"]
        with self.engine.begin() as conn:
            indexes = [name for (name,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('items_fts', 'items_nfkc_fts')")]  # fmt: skip
            for name in sorted(indexes):
                conn.exec_driver_sql(f"INSERT INTO {name}({name}) VALUES ('optimize')")
            if indexes:
                done.append("search index rewritten without their words")
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            # A truncating checkpoint holds off new writers while it waits for readers: a crawl
            # writing to this store must not freeze for the store's 30 s busy timeout.
            cursor.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
            try:
                busy, _log, _moved = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                cursor.execute("PRAGMA busy_timeout = 30000")
        finally:
            raw.close()
        if busy:
            done.append(f"{SCRUB_INCOMPLETE}: the write-ahead log could not be emptied while other connections read it "
                        "(deleted pages stay in it until SQLite reuses them); the next purge of this store retries")  # fmt: skip
        else:
            done.append("write-ahead log checkpointed and emptied")
        return "; ".join(done)

    def scrub_owed(self, purge_id: str) -> bool:
        """Whether the store's previous purge (before ``purge_id``) left its scrub incomplete (see :meth:`scrub_deleted`)."""
        with self._read() as conn:
            detail = conn.execute(
                sa.select(purge_steps.c.detail)
                .join(purges, purges.c.id == purge_steps.c.purge_id)
                .where(purge_steps.c.location == "store", purge_steps.c.purge_id != purge_id)
                .order_by(purges.c.started_at.desc()).limit(1)
            ).scalar()  # fmt: skip
        return SCRUB_INCOMPLETE in (detail or "")

    def delete_items_chunk(self, condition: sa.ColumnElement[bool], purge_id: str, location: str, limit: int) -> int:
        """Delete up to ``limit`` matching items and add the count to the step, in one transaction."""
        with self.engine.begin() as conn:
            ids = sa.select(items.c.id).where(condition).order_by(items.c.id).limit(limit).scalar_subquery()
            deleted = conn.execute(items.delete().where(items.c.id.in_(ids))).rowcount
            if deleted:
                self._add_to_step(conn, purge_id, location, "store", deleted, "pending")
            return int(deleted)

    def matching_item_ids(self, condition: sa.ColumnElement[bool], after: int, limit: int) -> list[tuple[int, str]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(items.c.id, items.c.url).where(condition, items.c.id > after).order_by(items.c.id).limit(limit)
            ).all()
        return [(int(i), u) for i, u in rows]

    def delete_item_ids(self, ids: list[int], purge_id: str, location: str) -> int:
        with self.engine.begin() as conn:
            deleted = conn.execute(items.delete().where(items.c.id.in_(ids))).rowcount
            if deleted:
                self._add_to_step(conn, purge_id, location, "store", deleted, "pending")
            return int(deleted)

    def count_matching(self, condition: sa.ColumnElement[bool]) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(items).where(condition)).scalar_one())

    def finish_purge(self, purge_id: str, receipt: dict[str, Any]) -> Entry:
        """Mark the purge done and append its receipt to the ledger, in one transaction."""
        with self.engine.begin() as conn:
            entry = self._append_ledger(conn, "purge.completed", receipt)
            conn.execute(
                purges.update().where(purges.c.id == purge_id).values(
                    status="done", finished_at=datetime.fromisoformat(receipt["finished_at"]), receipt=receipt,
                    ledger_seq=entry.seq, ledger_hash=entry.hash,
                )
            )  # fmt: skip
        return entry

    # -- where crawls wrote, and which crawls are running ----------------------

    def record_output(self, crawl_id: str, machine: str, kind: str, location: str, options: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                crawl_outputs.insert().values(
                    crawl_id=crawl_id, machine=machine, kind=kind, location=location, options=options, recorded_at=utcnow()
                )
            )

    def output_owners(self, kind: str, location: str) -> tuple[str, ...]:
        """The crawls (workers) that recorded writing ``location``."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(crawl_outputs.c.crawl_id).where(crawl_outputs.c.kind == kind, crawl_outputs.c.location == location)
            ).scalars()
            return tuple(dict.fromkeys(rows))

    def outputs(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute(sa.select(crawl_outputs).order_by(crawl_outputs.c.id)).mappings().all()]

    def heartbeat(self, crawl_id: str, machine: str, pid: int, *, closed: bool = False) -> None:
        with self.engine.begin() as conn:
            values = {"machine": machine, "pid": pid, "heartbeat_at": utcnow(), "closed": closed}
            if not conn.execute(crawl_presence.update().where(crawl_presence.c.crawl_id == crawl_id).values(**values)).rowcount:
                conn.execute(crawl_presence.insert().values(crawl_id=crawl_id, **values))

    def running_crawls(self, timeout: float = PRESENCE_TIMEOUT) -> dict[str, dict[str, Any]]:
        """Crawls not closed whose heartbeat is fresh: they own their outputs until they close."""
        cutoff = utcnow().timestamp() - timeout
        with self._read() as conn:
            rows = conn.execute(sa.select(crawl_presence).where(crawl_presence.c.closed.is_(False))).mappings().all()
        running = {}
        for row in rows:
            beat = row["heartbeat_at"]
            if beat.tzinfo is None:
                beat = beat.replace(tzinfo=UTC)
            if beat.timestamp() >= cutoff:
                running[row["crawl_id"]] = dict(row)
        return running

    # -- reads --------------------------------------------------------------

    def count_items(self, domain: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(items)
        if domain:
            query = query.where(domain_filter(items, domain))
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_items(self, domain: str | None = None, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every stored item as a flat dict (JSON-ready), oldest first."""
        last_id = 0
        while True:
            query = sa.select(items).where(items.c.id > last_id).order_by(items.c.id).limit(batch)
            if domain:
                query = query.where(domain_filter(items, domain))
            with self._read() as conn:
                rows = conn.execute(query).mappings().all()
            if not rows:
                return
            for row in rows:
                last_id = row["id"]
                yield item_record(row)

    def last_seen(self, url: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The newest stored item for ``url`` (or None) and the refusals recorded for it, newest first."""
        with self._read() as conn:
            row = conn.execute(sa.select(items).where(items.c.url == url).order_by(items.c.id.desc()).limit(1)).mappings().first()
            refused = conn.execute(
                sa.select(refusals).where(refusals.c.url == url).order_by(refusals.c.id.desc()).limit(20)
            ).mappings().all()
        return (item_record(row) if row is not None else None), [dict(r) for r in refused]

    def refusal_counts(self, crawl_id: str | None = None) -> list[tuple[str, int]]:
        query = sa.select(refusals.c.reason, sa.func.count()).group_by(refusals.c.reason)
        if crawl_id:
            query = query.where(refusals.c.crawl_id == crawl_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return sorted(((r, int(n)) for r, n in rows), key=lambda p: (-p[1], p[0]))

    def refusals(self, crawl_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(refusals).order_by(refusals.c.id)
        if crawl_id:
            query = query.where(refusals.c.crawl_id == crawl_id)
        if limit:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]

    def items_per_host(self, crawl_id: str | None = None) -> list[tuple[str, int]]:
        query = sa.select(items.c.host, sa.func.count()).group_by(items.c.host).order_by(items.c.host)
        if crawl_id:
            query = query.where(items.c.crawl_id == crawl_id)
        with self._read() as conn:
            return [(h, int(n)) for h, n in conn.execute(query).all()]



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


#: The columns that say where an item came from: taken from the response that produced it.
SOURCE_COLUMNS = ("url", "host", "domain", "fetched_at", "crawl_id")


def item_row(fields: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Split an item's fields into the store's columns and its JSON ``data``.

    ``source`` (url, host, domain, fetched_at, crawl_id, provenance) is where
    the item came from: the response that produced it. It fills the source
    columns whatever the item holds, so an item without a ``url`` field is
    filed under the page it came from and a purge of that site finds it. A
    field of the item's own with one of those names and another value is
    kept in ``data`` as ``item_<name>``; ``title`` and ``text``, when they are
    strings, are columns; every other field is kept in ``data`` unchanged.
    The response's provenance is ``data["provenance"]`` (``compliance_provenance``
    if the item has a ``provenance`` field of its own that differs).
    """
    source = source or {}
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name in SOURCE_COLUMNS:
        own = fields.get(name)
        chosen = source.get(name) if source.get(name) not in (None, "") else own
        row[name] = chosen
        if own is not None and own != chosen and str(own) != str(chosen):
            extra[f"item_{name}"] = own
    for name in ("title", "text"):
        value = fields.get(name)
        if isinstance(value, str) or value is None:
            row[name] = value or ""
        else:
            row[name] = ""
            extra[name] = value
    row["url"] = str(row["url"] or "")
    row["host"] = str(row["host"] or "")[:255]
    row["domain"] = str(row["domain"] or "")[:255]
    fetched = row["fetched_at"]
    if isinstance(fetched, str):
        try:
            fetched = datetime.fromisoformat(fetched)
        except ValueError:
            extra.setdefault("item_fetched_at", fetched)
            fetched = None
    row["fetched_at"] = fetched if isinstance(fetched, datetime) else utcnow()
    for key, value in fields.items():
        if key not in ITEM_COLUMNS:
            extra[key] = value
    provenance = source.get("provenance")
    if provenance is not None:
        own = extra.get("provenance")
        extra["provenance" if own is None or own == provenance else "compliance_provenance"] = provenance
    row["data"] = json.loads(json.dumps(extra, default=str))
    row["item_key"] = item_key(row, source.get("item_index"))
    return row


def item_key(row: Mapping[str, Any], index: int | None = None) -> str:
    """What makes a stored item the same item: its page and its place among that page's items.

    ``index`` is the item's position among the objects its response's
    callback yielded, counted by the spider middleware; a page fetched again
    by another worker yields the same items in the same order, so its items
    get the same keys, while a second, different item of one page has another
    index and is kept. Without an index (an item queued by a project's own
    code), the key is a digest of the item's content: only an identical item
    of the same page is a duplicate.
    """
    if isinstance(index, int) and not isinstance(index, bool):
        what = f"index:{index}"
    else:
        content = {k: row.get(k) for k in ("title", "text", "data")}
        what = "content:" + hashlib.sha256(canonical_json(content).encode()).hexdigest()
    return hashlib.sha256(f"{row.get('url') or ''}\0{what}".encode()).hexdigest()


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str) -> int:
    """Write records as JSON lines atomically (a new file, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with replaced_atomically(target) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count
