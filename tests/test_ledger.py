"""The ledger: a hash chain that names the first altered, deleted, inserted or reordered entry."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest

from crawler.compliance.ledger import GENESIS, verify
from crawler.compliance.registry import read_sqlite_registry
from crawler.compliance.store import Store
from crawler.testing.runner import scrapy_command


@pytest.fixture
def filled(any_store_url: str) -> tuple[Store, str]:
    store_url = any_store_url
    store = Store(store_url)
    for n in range(1, 6):
        store.append_ledger("consent.changed", {"platform": f"p{n}", "n": n})
    return store, store_url


def run_verify(url: str) -> tuple[int, str]:
    done = scrapy_command(["ledger", "verify", "-s", f"COMPLIANCE_STORE={url}"])
    return done.returncode, done.stdout + done.stderr


def test_intact_chain_verifies(filled: tuple[Store, str]) -> None:
    """Five appended entries chain from the genesis value and verify."""
    store, path = filled
    entries = list(store.ledger_entries())
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    assert verify(entries, store.ledger_head()).ok
    code, out = run_verify(path)
    assert code == 0 and "intact: 5 entries" in out


@pytest.mark.parametrize(
    ("tamper", "bad", "words"),
    [
        ("UPDATE ledger SET payload = '{\"n\":99,\"platform\":\"p3\"}' WHERE seq = 3", 3, "altered"),
        ("UPDATE ledger SET at = '2020-01-01T00:00:00+00:00' WHERE seq = 2", 2, "altered"),
        ("UPDATE ledger SET payload = '{\"n\": 3, \"platform\": \"p3\"}' WHERE seq = 3", 3, "canonical"),
        ("UPDATE store_meta SET value = 'garbage' WHERE key = 'ledger_head'", 5, "recorded head"),
        ("DELETE FROM ledger WHERE seq = 2", 2, "missing"),
        ("DELETE FROM ledger WHERE seq = 5", 5, "cut off the end"),
        # an entry inserted in the middle: renumber 4,5 -> 5,6 and put a forged 4 in
        ("UPDATE ledger SET seq = seq + 10 WHERE seq >= 4; UPDATE ledger SET seq = seq - 9 WHERE seq >= 14;"
         "INSERT INTO ledger VALUES (4, '2026-01-01T00:00:00+00:00', 'consent.changed', '{}', "
         "(SELECT hash FROM ledger WHERE seq = 3), 'f00d')", 4, "altered"),
        # two entries swapped (reordered)
        ("UPDATE ledger SET seq = 100 WHERE seq = 2; UPDATE ledger SET seq = 2 WHERE seq = 3; UPDATE ledger SET seq = 3 WHERE seq = 100",
         2, "does not follow"),
        # a forged entry after the head (it never went through the head)
        ("INSERT INTO ledger VALUES (6, '2026-01-01T00:00:00+00:00', 'consent.changed', '{}', "
         "(SELECT hash FROM ledger WHERE seq = 5), 'f00d')", 6, "beyond the recorded head"),
        ("INSERT INTO ledger VALUES (99, '2026-01-01T00:00:00+00:00', 'consent.changed', 'not json', 'x', 'y')", 99,
         "beyond the recorded head"),
    ],
    ids=["payload-altered", "time-altered", "reformatted", "head-garbled", "deleted", "tail-deleted", "inserted", "reordered",
         "forged-after-head", "forged-far-after-head"],
)  # fmt: skip
def test_tampering_is_detected_and_named(filled: tuple[Store, str], tamper: str, bad: int, words: str) -> None:
    """`scrapy ledger verify` exits 1 and names the first entry that does not fit."""
    store, path = filled
    with store.engine.begin() as conn:
        for statement in tamper.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    store.dispose()
    code, out = run_verify(path)
    assert code == 1, out
    assert f"BROKEN at entry {bad}" in out and words in out, out


def test_concurrent_appends_keep_one_chain(any_store_url: str) -> None:
    """Appends from several writers at once never fork the chain."""
    store_url = any_store_url
    url = store_url
    Store(url)

    def writer(name: str) -> None:
        store = Store(url)
        for n in range(15):
            store.append_ledger("consent.changed", {"writer": name, "n": n})

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = Store(url)
    verdict = verify(store.ledger_entries(), store.ledger_head())
    assert verdict.ok and verdict.entries == 45, verdict.message


def test_ledger_show_json_lists_entries(filled: tuple[Store, str]) -> None:
    """`scrapy ledger show --json` prints one entry per line with its hashes."""
    _, path = filled
    done = scrapy_command(["ledger", "show", "--json", "-s", f"COMPLIANCE_STORE={path}"])
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(lines) == 5
    assert '"kind": "consent.changed"' in lines[0] and '"prev_hash": "' + GENESIS in lines[0]


def test_notice_show_proof_names_the_ledger_entry_and_catches_a_changed_receipt(any_store_url: str) -> None:
    """`notice show` pairs each purge receipt with its ledger entry; a receipt edited after the fact no longer matches."""
    from crawler.commands.notice import purges_with_proof

    store = Store(any_store_url)
    receipt = {"purge_id": "p1", "notice_id": "n1", "finished_at": "2026-11-26T10:00:00+00:00", "total_deleted": 3}
    completed = store.append_ledger("purge.completed", receipt)
    by_crawl = store.append_ledger("purge.completed-by-crawl", {"crawl_id": "c9", "machine": "m", "results": [
        {"purge_id": "p1", "notice_id": "n1", "location": "feed:m:/x.jl", "status": "done", "count": 2, "detail": ""},
        {"purge_id": "other", "notice_id": "n2", "location": "feed:m:/y.jl", "status": "done", "count": 5, "detail": ""},
    ]})  # fmt: skip
    row = {"id": "p1", "status": "done", "receipt": receipt, "ledger_seq": completed.seq, "ledger_hash": completed.hash}
    [shown] = purges_with_proof([row], store.ledger_entries())
    assert shown["ledger"] == {"seq": completed.seq, "hash": completed.hash, "in_ledger": True}
    assert [(c["seq"], c["crawl_id"], c["count"]) for c in shown["applied_by_crawls"]] == [(by_crawl.seq, "c9", 2)]
    edited = {**row, "receipt": {**receipt, "total_deleted": 30}}
    assert purges_with_proof([edited], store.ledger_entries())[0]["ledger"]["in_ledger"] is False
    wrong_hash = {**row, "ledger_hash": "0" * 64}
    assert purges_with_proof([wrong_hash], store.ledger_entries())[0]["ledger"]["in_ledger"] is False
    running = {"id": "p2", "status": "running", "receipt": None, "ledger_seq": None, "ledger_hash": None}
    assert purges_with_proof([running], store.ledger_entries())[0]["ledger"]["in_ledger"] is None
    store.dispose()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("UPDATE store_meta SET value = 'garbage' WHERE key = 'ledger_head'", "the ledger head is damaged"),
        ("DELETE FROM store_meta WHERE key = 'ledger_head'", "holds entry 5 beyond its head (0)"),
        ("INSERT INTO ledger VALUES (6, '2026-01-01T00:00:00+00:00', 'consent.changed', '{}', 'x', 'y')",
         "holds entry 6 beyond its head (5)"),
    ],
    ids=["head-garbled", "head-missing", "forged-after-head"],
)  # fmt: skip
def test_a_damaged_ledger_refuses_appends_with_a_reason(filled: tuple[Store, str], damage: str, words: str) -> None:
    """No fork, no traceback: appending to a damaged ledger is refused with a one-line reason; `ledger show` still works."""
    from crawler.compliance.store import StoreError

    store, path = filled
    with store.engine.begin() as conn:
        conn.exec_driver_sql(damage)
    with pytest.raises(StoreError, match=re.escape(words)):
        store.append_ledger("consent.changed", {"platform": "p6"})
    assert [e.seq for e in store.ledger_entries()][:5] == [1, 2, 3, 4, 5]
    store.dispose()
    for args in (["ledger", "show"], ["ledger", "show", "--json"]):
        shown = scrapy_command([*args, "-s", f"COMPLIANCE_STORE={path}"])
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr


def test_an_empty_store_starts_the_chain_and_records_its_head(any_store_url: str) -> None:
    store = Store(any_store_url)
    first = store.append_ledger("consent.changed", {"platform": "p1"})
    assert (first.seq, first.prev_hash) == (1, GENESIS) and store.ledger_head() == (1, first.hash)
    store.dispose()


# -- the ledger is the source of truth for a notice's state ------------------------------

NOTICE_SCOPE = {"domains": ["bigsocial.test"], "url_patterns": ["https://shop.test/people/*"]}


@pytest.fixture
def noticed(any_store_url: str, tmp_path) -> tuple[Store, str, str]:  # type: ignore[no-untyped-def]
    """A store holding one notice filed with the real `notice add`, and the policy folder it used."""
    from crawler.testing.runner import policy_dir_with_pace

    policies = policy_dir_with_pace(tmp_path / "policies")
    done = scrapy_command(["notice", "add", "--domain", "bigsocial.test", "--url-pattern", "https://shop.test/people/*",
                           "--sender", "BigSocial", "--received", "2026-11-26", "--id", "n1", "--keep-existing",
                           "-s", f"COMPLIANCE_STORE={any_store_url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Store(any_store_url), any_store_url, str(policies)


def _edit(store: Store, **values: object) -> None:
    """Change the registry row directly, as someone with database access could (SQLAlchemy: same on both engines)."""
    import sqlalchemy as sa

    from crawler.compliance.store import notices

    with store.engine.begin() as conn:
        data = conn.execute(sa.select(notices.c.data).where(notices.c.id == "n1")).scalar_one()
        changes = {k: v for k, v in values.items() if not k.startswith("data_")}
        edited = {**data, **{k[5:]: v for k, v in values.items() if k.startswith("data_")}}
        if edited != data:
            changes["data"] = edited
        if values.get("delete"):
            conn.execute(notices.delete().where(notices.c.id == "n1"))
        else:
            conn.execute(notices.update().where(notices.c.id == "n1").values(**changes))


def _enforced(store: Store):  # type: ignore[no-untyped-def]
    """The notices a crawl enforces from this store (the runtime's own path: rows, then the same merge)."""
    from crawler.compliance.notices import Notice, NoticeSet, merge_notices

    rows = store.notice_rows()
    if store.is_sqlite:  # the standard-library read `scrapy notice list` uses must see exactly what the store sees
        assert read_sqlite_registry(store.url) == rows
    return rows, NoticeSet.build(merge_notices([], [(Notice.model_validate(r.data), r.resolved_domains) for r in rows], None), "t")


def test_a_registry_that_agrees_with_the_ledger_is_enforced_as_recorded(noticed: tuple[Store, str, str]) -> None:
    """No disagreement, no warning: the notice blocks its scope and `ledger verify` exits 0."""
    store, url, _ = noticed
    rows, enforced = _enforced(store)
    assert [r.disagreements for r in rows] == [()]
    assert not enforced.decide("http://bigsocial.test/x").allowed and enforced.decide("http://bystander.test/").allowed
    code, out = run_verify(url)
    assert code == 0 and "DISAGREES" not in out, out


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"status": "withdrawn"}, "status is 'withdrawn' in the registry, 'active' in the ledger"),
        ({"status": "withdrawn", "data_status": "withdrawn", "data_withdrawn_at": "2026-11-27T00:00:00Z"},
         "status is 'withdrawn' in the registry"),
        ({"data_scope": {"domains": ["elsewhere.test"]}}, "scope is"),
        ({"data_demands": {"stop_collection": False, "delete_existing": False}}, "demands is"),
        ({"data_effective_at": "2999-01-01T00:00:00Z"}, "effective_at is '2999-01-01T00:00:00Z' in the registry"),
        ({"effective_at": datetime(2999, 1, 1, tzinfo=UTC)}, "effective_at column is 2999-01-01"),
        ({"data_date_received": "2026-11-01"}, "date_received is '2026-11-01' in the registry, '2026-11-26' in the ledger"),
        ({"resolved_domains": []}, "resolved_domains are [] in the registry"),
        ({"recorded_at": datetime(2999, 1, 1, tzinfo=UTC)}, "recorded_at is 2999-01-01"),
        ({"delete": True}, "its registry row is missing"),
    ],
)  # fmt: skip
def test_a_registry_row_edited_behind_the_ledger_is_active_and_reported(
    noticed: tuple[Store, str, str], edit: dict, words: str
) -> None:
    """Each field edited directly in the store: the notice still blocks its whole scope, and `ledger verify` exits 1 naming it."""
    store, url, _ = noticed
    _edit(store, **edit)
    rows, enforced = _enforced(store)
    [row] = rows
    assert any(words in d for d in row.disagreements), row.disagreements
    assert row.data["status"] == "active" and row.data["demands"]["stop_collection"] is True
    for blocked in ("http://bigsocial.test/x", "http://people.bigsocial.test/", "https://shop.test/people/ann"):
        assert not enforced.decide(blocked).allowed, (blocked, row.data)
    code, out = run_verify(url)
    assert code == 1 and "ledger intact" in out and "registry DISAGREES with the ledger: notice n1: " in out and words in out, out


def test_the_ledger_says_withdrawn_only_through_notice_withdraw(noticed: tuple[Store, str, str]) -> None:
    """`notice withdraw` writes row and ledger together: nothing disagrees, the notice stops blocking, verify exits 0."""
    store, url, policies = noticed
    done = scrapy_command(["notice", "withdraw", "n1", "--reason", "settled",
                           "-s", f"COMPLIANCE_STORE={url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows, enforced = _enforced(store)
    assert [r.disagreements for r in rows] == [()] and rows[0].data["status"] == "withdrawn"
    assert enforced.decide("http://bigsocial.test/x").allowed
    assert run_verify(url)[0] == 0
    # Flipping the row back to active by hand is a disagreement too (and it blocks: fail closed).
    _edit(store, status="active")
    rows, enforced = _enforced(store)
    assert rows[0].disagreements and not enforced.decide("http://bigsocial.test/x").allowed
    assert run_verify(url)[0] == 1


def test_the_fast_registry_read_stands_aside_when_it_cannot_vouch_for_the_store(tmp_path, noticed: tuple[Store, str, str]) -> None:  # type: ignore[no-untyped-def]
    """`notice list` reads a SQLite store without SQLAlchemy only when that read is the store's own; else it returns None.

    None for another engine's URL, a URL with options, a missing file (which it does not create) and a store of
    another schema version; a read of a current store lists the notice with the same reconciliation.
    """
    import sqlite3

    store, url, _ = noticed
    assert read_sqlite_registry("postgresql+psycopg://u@127.0.0.1/x") is None
    missing = tmp_path / "none" / "s.sqlite3"
    assert read_sqlite_registry(f"sqlite:///{missing}") is None and not missing.parent.exists()
    if not store.is_sqlite:
        return
    assert read_sqlite_registry(url + "?timeout=5") is None
    [row] = read_sqlite_registry(url) or []
    assert row.id == "n1" and row.disagreements == ()
    database = url[len("sqlite:///"):]
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE store_meta SET value = '3' WHERE key = 'schema_version'")
    assert read_sqlite_registry(url) is None
