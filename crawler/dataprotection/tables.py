"""The tables data protection keeps in the store, its full-text index, and the cluster lock.

They live beside the store's own schema (same database, own ``MetaData``)
and are created on first use by :func:`ensure_schema`, which every crawl and
every data-protection command calls: a store of an older version gains them
without a migration, and :mod:`crawler.compliance.store` is left alone.

The full-text index is the database's own, kept up to date by the database
as items are written and deleted, whoever writes them:

- SQLite: an FTS5 table over ``items`` (external content: the text is not
  stored twice; which items hold each token, without positions), maintained
  by triggers; ``unicode61`` folds case and diacritics. Created over a store
  that already holds items, or replacing an index of an older shape, it is
  rebuilt from them once.
- PostgreSQL: a GIN expression index on ``to_tsvector('simple', …)`` of the
  item's URL, title and text (names, handles), and a ``pg_trgm`` GIN index on
  the same text (regular expressions for e-mail addresses, phone numbers and
  URLs). Without the ``pg_trgm`` extension (it needs a role that may create
  it) the regular expressions still run, on a scan; ``scrapy retention show``
  and the erase report say so.
"""

from __future__ import annotations

import logging
import time
import weakref
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from crawler.compliance.store import NFKC_FUNCTION, Store, store_meta, utcnow

logger = logging.getLogger("crawler.compliance")

metadata = sa.MetaData()

#: One row per named lock (``retention``): who holds it, until when.
locks = sa.Table(
    "dp_locks",
    metadata,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

#: Keyed hashes (HMAC-SHA-256) of erased identifiers: never the identifiers themselves.
suppression = sa.Table(
    "dp_suppression",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # email, phone, handle, name, url
    # For names: how many words (the matcher hashes word n-grams of that length only).
    sa.Column("words", sa.Integer, nullable=False, default=0),
    sa.Column("request_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # A second keyed hash the check tests first, so most text never reaches the costly step:
    # a phone number's last digits, a name's first word (see suppression.hint). NULL on rows
    # written before it existed: their kind is then checked without the pre-filter.
    sa.Column("hint", sa.String(64)),
)

erasures = sa.Table(
    "dp_erasures",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("operator", sa.Text, nullable=False),
    # How many identifiers of each kind (never the identifiers).
    sa.Column("identifiers", sa.JSON, nullable=False),
    sa.Column("purge_id", sa.String(40)),
    sa.Column("receipt", sa.JSON),
)

exports = sa.Table(
    "dp_exports",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("destination", sa.Text, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),  # items-export, feed
    sa.Column("location", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("purposes", sa.JSON, nullable=False),
    sa.Column("operator", sa.Text, nullable=False, default=""),
    sa.Column("crawl_id", sa.String(64)),
    sa.Column("count", sa.Integer, nullable=False, default=0),
)

export_items = sa.Table(
    "dp_export_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("export_id", sa.String(40), nullable=False, index=True),
    # The store's item id (None for a feed item exported before it was stored).
    sa.Column("item_id", sa.Integer),
    sa.Column("item_key", sa.String(80), nullable=False, default=""),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("domain", sa.String(255), nullable=False, index=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
)

#: Which exports held the items a purge deleted: written before the purge deletes anything,
#: so a purge killed half-way and resumed still names them in its receipt.
purge_exports = sa.Table(
    "dp_purge_exports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("purge_id", sa.String(40), nullable=False, index=True),
    sa.Column("export_id", sa.String(40), nullable=False),
    sa.Column("item_id", sa.Integer),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
)

_READY: weakref.WeakSet[Any] = weakref.WeakSet()
#: Whether pg_trgm's index exists, per engine (PostgreSQL only).
TRIGRAM: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

#: Which items hold which tokens, no more: ``detail=none`` keeps no positions (phrases are searched
#: as all their tokens, then checked exactly), ``columnsize=0`` no token counts (nothing ranks), and
#: segments are merged 16 at a time instead of 4. The index costs about half as much to write (see
#: bench/README.md, "Erasure"). A store whose index has another shape gets this one, rebuilt once.
_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE items_fts USING fts5(url, title, text, content='items', content_rowid='id', "
    "columnsize=0, detail=none, tokenize='unicode61 remove_diacritics 2')"
)
_SQLITE_FTS_SETTINGS = ("INSERT INTO items_fts(items_fts, rank) VALUES ('automerge', 16)",)
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS items_fts_ai AFTER INSERT ON items BEGIN "
    "INSERT INTO items_fts(rowid, url, title, text) VALUES (new.id, new.url, new.title, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS items_fts_ad AFTER DELETE ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, url, title, text) VALUES ('delete', old.id, old.url, old.title, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS items_fts_au AFTER UPDATE ON items BEGIN "
    "INSERT INTO items_fts(items_fts, rowid, url, title, text) VALUES ('delete', old.id, old.url, old.title, old.text); "
    "INSERT INTO items_fts(rowid, url, title, text) VALUES (new.id, new.url, new.title, new.text); END",
)
#: The second index: items whose text Unicode NFKC changes (full-width letters and digits, ligatures,
#: compatibility forms: ``ｊａｎｅｄｏｅ＠ｇｍａｉｌ．ｃｏｍ``), their document in NFKC, indexed alike.
#: FTS5's tokenizer folds case and diacritics but not these, and SQLite has no NFKC of its own: the
#: triggers call ``compliance_nfkc`` (crawler.compliance.store.nfkc_if_changed, registered on every
#: connection of the store), which returns NULL for text already in NFKC, so most items cost one check.
_NFKC_DOCUMENT = "{0}.url || ' ' || coalesce({0}.title, '') || ' ' || coalesce({0}.text, '')"
_SQLITE_NFKC = (
    "CREATE TABLE IF NOT EXISTS items_nfkc (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS items_nfkc_fts USING fts5(doc, content='items_nfkc', content_rowid='id', "
    "columnsize=0, detail=none, tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS items_nfkc_fts_ai AFTER INSERT ON items_nfkc BEGIN "
    "INSERT INTO items_nfkc_fts(rowid, doc) VALUES (new.id, new.doc); END",
    "CREATE TRIGGER IF NOT EXISTS items_nfkc_fts_ad AFTER DELETE ON items_nfkc BEGIN "
    "INSERT INTO items_nfkc_fts(items_nfkc_fts, rowid, doc) VALUES ('delete', old.id, old.doc); END",
    "CREATE TRIGGER IF NOT EXISTS items_nfkc_ai AFTER INSERT ON items BEGIN "
    f"INSERT INTO items_nfkc(id, doc) SELECT new.id, d FROM (SELECT {NFKC_FUNCTION}({_NFKC_DOCUMENT.format('new')}) AS d) "
    "WHERE d IS NOT NULL; END",
    "CREATE TRIGGER IF NOT EXISTS items_nfkc_ad AFTER DELETE ON items BEGIN DELETE FROM items_nfkc WHERE id = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS items_nfkc_au AFTER UPDATE ON items BEGIN DELETE FROM items_nfkc WHERE id = old.id; "
    f"INSERT INTO items_nfkc(id, doc) SELECT new.id, d FROM (SELECT {NFKC_FUNCTION}({_NFKC_DOCUMENT.format('new')}) AS d) "
    "WHERE d IS NOT NULL; END",
)
#: The items already stored when the second index is created (a store of an older version).
_SQLITE_NFKC_BACKFILL = (
    f"INSERT INTO items_nfkc(id, doc) SELECT id, d FROM (SELECT id, {NFKC_FUNCTION}({_NFKC_DOCUMENT.format('items')}) AS d "
    "FROM items) WHERE d IS NOT NULL"
)
#: What PostgreSQL indexes: the same text on both indexes (and in the queries, so the planner uses them),
#: in Unicode NFKC (``normalize``, PostgreSQL 13 and later, a UTF-8 database), so full-width and other
#: compatibility forms are found as what they stand for.
PG_DOCUMENT = "normalize(url || ' ' || title || ' ' || text, NFKC)"
#: The indexes of earlier versions, on the text as written: dropped for the ones above.
_PG_OLD_INDEXES = ("ix_items_tsv", "ix_items_trgm")


def ensure_schema(store: Store) -> None:
    """Create the tables and the full-text index if missing (once per process and store)."""
    key = store.engine
    if key in _READY:
        return
    for attempt in range(5):
        try:
            metadata.create_all(store.engine, checkfirst=True)
            _add_missing_columns(store)
            if store.is_sqlite:
                _sqlite_index(store)
            else:
                _postgres_index(store)
            break
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            # Two processes creating the same table at once: the loser retries and finds it.
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    _READY.add(key)


def _add_missing_columns(store: Store) -> None:
    """Columns added since a table was first created (a store made by an older version gains them in place)."""
    with store.engine.begin() as conn:
        present = {c["name"] for c in sa.inspect(conn).get_columns(suppression.name)}
        if "hint" not in present:
            conn.exec_driver_sql(f"ALTER TABLE {suppression.name} ADD COLUMN hint VARCHAR(64)")


def _sqlite_index(store: Store) -> None:
    with store.engine.begin() as conn:
        new = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'items_nfkc'").first() is None
        for statement in _SQLITE_NFKC:
            conn.exec_driver_sql(statement)
        if new:  # a store that already held items: their NFKC forms, once
            conn.exec_driver_sql(_SQLITE_NFKC_BACKFILL)
        found = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'items_fts'").scalar()
        if found == _SQLITE_FTS:
            for trigger in _SQLITE_TRIGGERS:
                conn.exec_driver_sql(trigger)
            return
        if found is not None:
            # An index of an older shape (positions, sizes): replaced, in this transaction.
            logger.info("Rebuilding the erasure search index of %s in its new shape (once)", store.url)
            conn.exec_driver_sql("DROP TABLE items_fts")
        conn.exec_driver_sql(_SQLITE_FTS)
        for statement in (*_SQLITE_FTS_SETTINGS, *_SQLITE_TRIGGERS):
            conn.exec_driver_sql(statement)
        # A store that already held items: index them once (the triggers cover every write from now on).
        conn.exec_driver_sql("INSERT INTO items_fts(items_fts) VALUES ('rebuild')")


def _postgres_index(store: Store) -> None:
    with store.engine.begin() as conn:
        for name in _PG_OLD_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS ix_items_tsv_nfkc ON items USING gin (to_tsvector('simple', {PG_DOCUMENT}))"
        )
    schema = None
    with store.engine.connect() as conn:
        schema = conn.exec_driver_sql(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
        ).scalar()
    if schema is None:
        try:
            # In public, not the store's schema: an extension is one per database, and a schema
            # dropped later would take it (and every other store's index) with it.
            with store.engine.begin() as conn:
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
            schema = "public"
        except sa.exc.DBAPIError as exc:
            logger.warning("pg_trgm is not available (%s): erasure searches for e-mail addresses, phone numbers "
                           "and URLs scan the items table instead of using a trigram index", str(exc).splitlines()[0])  # fmt: skip
    if schema is not None:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE INDEX IF NOT EXISTS ix_items_trgm_nfkc ON items USING gin (({PG_DOCUMENT}) "{schema}".gin_trgm_ops)'
            )
    TRIGRAM[store.engine] = schema is not None


# -- a lock row with an expiry, for one process at a time across a cluster -----------


def acquire_lock(store: Store, name: str, holder: str, ttl: float) -> tuple[bool, dict[str, Any] | None]:
    """Take ``name`` for ``ttl`` seconds: (True, None), or (False, the current holder's row).

    The row is read and written in one transaction under the row's lock
    (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE); a lock whose
    holder died is taken over once it expires. Two processes inserting the
    first row at once: the loser's insert fails on the primary key, and it
    reports the winner.
    """
    ensure_schema(store)
    now = utcnow()
    try:
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name).with_for_update()).mappings().first()
            expires = now + timedelta(seconds=ttl)
            if row is None:
                conn.execute(locks.insert().values(name=name, holder=holder, expires_at=expires))
                return True, None
            held_until = row["expires_at"] if row["expires_at"].tzinfo else row["expires_at"].replace(tzinfo=now.tzinfo)
            if row["holder"] != holder and held_until > now:
                return False, dict(row)
            conn.execute(locks.update().where(locks.c.name == name).values(holder=holder, expires_at=expires))
            return True, None
    except sa.exc.IntegrityError:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).mappings().first()
        return False, dict(row) if row is not None else None


def release_lock(store: Store, name: str, holder: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder))


def meta_value(store: Store, key: str) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == key)).scalar()


def bump_meta_counter(conn: sa.Connection, key: str) -> int:
    """Add one to the integer at ``key`` in the caller's transaction (created at 1)."""
    current = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == key).with_for_update()).scalar()
    value = int(current or 0) + 1
    if current is None:
        conn.execute(store_meta.insert().values(key=key, value=str(value)))
    else:
        conn.execute(store_meta.update().where(store_meta.c.key == key).values(value=str(value)))
    return value
