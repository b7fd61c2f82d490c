"""The store: SQLite file with WAL, several processes at once, batches, domain filters, CLI."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.compliance.store import SCHEMA_VERSION, Store, StoreError, item_row
from crawler.testing.runner import scrapy_command


def _row(url: str, host: str, domain: str, crawl: str = "c1") -> dict:
    return item_row(
        {"url": url, "host": host, "domain": domain, "title": "t", "text": "x", "crawl_id": crawl,
         "fetched_at": datetime(2026, 11, 26, tzinfo=UTC), "provenance": {"robots": {"reason": "robots.allow"}}}
    )  # fmt: skip


def test_creates_folder_file_and_wal(tmp_path: Path) -> None:
    """Opening a new SQLite store creates its folder and file, in WAL mode."""
    path = tmp_path / "deep" / "var" / "s.sqlite3"
    Store(f"sqlite:///{path}")
    assert path.is_file()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rejects_memory_and_garbage_urls() -> None:
    """An in-memory or unparsable store URL is refused with the setting's name."""
    with pytest.raises(StoreError, match="COMPLIANCE_STORE"):
        Store("sqlite://")
    with pytest.raises(StoreError, match="COMPLIANCE_STORE"):
        Store("not a url")


def test_domain_filter_matches_domain_and_subdomains(any_store_url: str) -> None:
    """--domain matches the registered domain and all its subdomains, nothing that merely ends alike."""
    store_url = any_store_url
    store = Store(store_url)
    store.write(
        [_row("http://news.test/", "news.test", "news.test"), _row("http://a.news.test/", "a.news.test", "news.test"),
         _row("http://badnews.test/", "badnews.test", "badnews.test"), _row("http://x_y.test/", "x_y.test", "x_y.test")],
        [],
    )  # fmt: skip
    assert store.count_items() == 4
    assert store.count_items("news.test") == 2
    assert store.count_items("a.news.test") == 1
    assert store.count_items("x%y.test") == 0  # LIKE wildcards in the argument are literal
    exported = list(store.iter_items("news.test"))
    assert exported[0]["provenance"] == {"robots": {"reason": "robots.allow"}}
    assert exported[0]["fetched_at"] == "2026-11-26T00:00:00+00:00"


def _writer(url: str, worker: int, count: int) -> None:
    store = Store(url)
    for i in range(count):
        store.write([_row(f"http://w{worker}.test/{i}", f"w{worker}.test", f"w{worker}.test", f"c{worker}")], [])


def test_several_processes_write_at_once(any_store_url: str) -> None:
    """Four processes creating and writing one new store at once lose nothing and never fail."""
    store_url = any_store_url
    url = store_url
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = Store(url)
    assert store.count_items() == 200
    assert all(store.count_items(f"w{w}.test") == 50 for w in range(4))


def test_items_commands(tmp_path: Path, any_store_url: str) -> None:
    """`scrapy items count` prints the integer last; `items export` writes every field as JSON lines."""
    store_url = any_store_url
    url = store_url
    Store(url).write([_row("http://news.test/", "news.test", "news.test"), _row("http://b.news.test/", "b.news.test", "news.test"),
                      _row("http://o.test/", "o.test", "o.test")], [])  # fmt: skip
    settings = {"COMPLIANCE_STORE": url}
    done = scrapy_command(["items", "count"], settings=settings)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "3"
    done = scrapy_command(["items", "count", "--domain", "news.test"], settings=settings)
    assert done.stdout.strip().splitlines()[-1] == "2"
    out = tmp_path / "out" / "items.jsonl"
    done = scrapy_command(["items", "export", "-o", str(out), "--domain", "news.test"], settings=settings)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["url"] for r in records] == ["http://news.test/", "http://b.news.test/"]
    assert set(records[0]) >= {"url", "host", "domain", "title", "text", "fetched_at", "crawl_id", "provenance"}


def test_items_command_errors_are_one_line(tmp_path: Path) -> None:
    """A bad store URL or an unwritable export path is one error line, exit 1, no traceback."""
    done = scrapy_command(["items", "count"], settings={"COMPLIANCE_STORE": "nonsense"})
    assert done.returncode == 1 and done.stderr.startswith("error: COMPLIANCE_STORE") and "Traceback" not in done.stderr
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = scrapy_command(["items", "export", "-o", str(blocker / "x.jsonl")], settings={"COMPLIANCE_STORE": url})
    assert done.returncode == 1 and "error: cannot write" in done.stderr and "Traceback" not in done.stderr


def _keyed_row(url: str, title: str, crawl_id: str = "c1", index: int | None = 0) -> dict:
    source = {"url": url, "host": "a.test", "domain": "a.test", "crawl_id": crawl_id, "item_index": index}
    return item_row({"title": title}, source)


def test_an_item_is_stored_once_per_crawl_and_page_and_index(any_store_url: str) -> None:
    """The same item of the same page written twice lands once; a page's second item, another crawl's, and a new index land."""
    store = Store(any_store_url)
    assert store.write([_keyed_row("http://a.test/1", "one")], []) == 1
    assert store.write([_keyed_row("http://a.test/1", "one again"), _keyed_row("http://a.test/1", "second item", index=1)], []) == 1
    assert store.write([_keyed_row("http://a.test/1", "one", crawl_id="c2")], []) == 1
    # Without an index (an item queued by a project's own code), identical content is the duplicate.
    assert store.write([_keyed_row("http://a.test/2", "x", index=None), _keyed_row("http://a.test/2", "y", index=None)], []) == 2
    assert store.write([_keyed_row("http://a.test/2", "x", index=None)], []) == 0
    titles = sorted((r["crawl_id"], r["url"], r["title"]) for r in store.iter_items())
    assert titles == [("c1", "http://a.test/1", "one"), ("c1", "http://a.test/1", "second item"),
                      ("c1", "http://a.test/2", "x"), ("c1", "http://a.test/2", "y"), ("c2", "http://a.test/1", "one")]  # fmt: skip


def test_a_version_2_store_with_duplicates_is_migrated_in_place(any_store_url: str) -> None:
    """A store written before item keys, holding a page twice: opened again, it keeps every row and stores new items once."""
    import sqlalchemy as sa

    store = Store(any_store_url)
    with store.engine.begin() as conn:  # back to version 2: no item_key column, no unique index
        conn.execute(sa.text("DROP INDEX ux_items_crawl_item_key"))
        conn.execute(sa.text("ALTER TABLE items DROP COLUMN item_key"))
        conn.execute(sa.text("UPDATE store_meta SET value = '2' WHERE key = 'schema_version'"))
        for title in ("dup", "dup"):
            conn.execute(sa.text("INSERT INTO items (crawl_id, url, host, domain, title, text, fetched_at, data) "
                                 "VALUES ('c1', 'http://a.test/1', 'a.test', 'a.test', :t, '', :at, '{}')"),
                         {"t": title, "at": datetime.now(UTC)})  # fmt: skip
    store.dispose()
    store = Store(any_store_url)
    assert store.count_items() == 2, "the migration deletes nothing"
    assert store.write([_keyed_row("http://a.test/1", "new")], []) == 1
    assert store.write([_keyed_row("http://a.test/1", "new")], []) == 0
    assert store.count_items() == 3
    with store.engine.connect() as conn:
        keys = sorted(conn.execute(sa.text("SELECT item_key FROM items")).scalars())
        assert conn.execute(sa.text("SELECT value FROM store_meta WHERE key = 'schema_version'")).scalar() == str(SCHEMA_VERSION)
    assert len([k for k in keys if k.startswith("row:")]) == 2 and len(set(keys)) == 3


def test_a_version_4_store_gets_the_ledger_kind_index(any_store_url: str) -> None:
    """Opened again, a store without the ledger's (kind, seq) index gets it, and the notice entries are read through it."""
    import sqlalchemy as sa

    store = Store(any_store_url)
    store.append_ledger("consent.changed", {"n": 1})
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_ledger_kind_seq"))
        conn.execute(sa.text("UPDATE store_meta SET value = '4' WHERE key = 'schema_version'"))
    store.dispose()
    store = Store(any_store_url)
    with store.engine.connect() as conn:
        assert "ix_ledger_kind_seq" in {i["name"] for i in sa.inspect(conn).get_indexes("ledger")}
        assert conn.execute(sa.text("SELECT value FROM store_meta WHERE key = 'schema_version'")).scalar() == str(SCHEMA_VERSION)
        if store.is_sqlite:
            plan = " ".join(str(row) for row in conn.execute(sa.text(
                "EXPLAIN QUERY PLAN SELECT seq FROM ledger WHERE kind IN ('notice.added', 'notice.withdrawn') ORDER BY seq")))  # fmt: skip
            assert "ix_ledger_kind_seq" in plan, plan
    assert [e.seq for e in store.ledger_entries()] == [1]


def test_the_registry_poll_on_postgresql_is_one_statement_and_outlives_a_dropped_connection() -> None:
    """Crawls poll the registry version every 0.25 s: on PostgreSQL one SELECT each (no ping, BEGIN or ROLLBACK
    around it), each sees a bump committed elsewhere, and a connection the server closed (a restart) is
    replaced within the same poll."""
    import sqlalchemy as sa

    from conftest import POSTGRES_URL, postgres_schema_url

    for url in postgres_schema_url():
        store, other = Store(url), Store(url)
        sent: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, text, *rest: sent.append(text.split()[0]))
        sa.event.listen(store.engine, "begin", lambda conn: sent.append("BEGIN"))
        sa.event.listen(store.engine.pool, "checkout", lambda *args: sent.append("CHECKOUT"))
        versions = []
        for _ in range(3):
            versions.append(store.registry_version())
            with other.engine.begin() as conn:
                other._bump_registry(conn)
        assert versions == [0, 1, 2]
        assert [s for s in sent if s != "BEGIN"] == ["CHECKOUT", "SELECT", "SELECT", "SELECT"], sent
        # The server drops the poll's connection (only that one: other tests share the server).
        assert store._poll is not None
        pid = store._poll.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
        admin.dispose()
        sent.clear()
        assert store.registry_version() == 3
        assert [s for s in sent if s != "BEGIN"] == ["SELECT", "CHECKOUT", "SELECT"], sent
        store.dispose()
        other.dispose()
