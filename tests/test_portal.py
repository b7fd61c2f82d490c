"""The portal's own safety, in process (Starlette's TestClient on the real app, a real SQLite store).

Each test pins one protection and fails without it: CSRF, escaping, the
notice validators, no stored text without proof, the admin token, the rate
limit, redirects that stay on the portal, and the pause an objection puts in
the registry (with its expiry, in the crawls' own notice check).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from scrapy.settings import Settings
from starlette.testclient import TestClient

from crawler.compliance.notices import PAUSE_TAG, Notice, NoticeSet, merge_notices
from crawler.compliance.store import Store, item_row
from crawler.portal.app import create_app
from crawler.portal.objections import ObjectionBook, parse_form
from crawler.testing.runner import policy_dir_with_pace

ADMIN = "admin-token-0123456789"
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    policies = policy_dir_with_pace(tmp_path / "policies")
    return Settings({
        "COMPLIANCE_STORE": f"sqlite:///{tmp_path / 'store.sqlite3'}", "COMPLIANCE_POLICY_DIR": str(policies),
        "COMPLIANCE_CONTACT": "https://operator.test/contact", "COMPLIANCE_DATA_DIR": str(tmp_path / "var"), **extra,
    })  # fmt: skip


@pytest.fixture
def portal(tmp_path: Path) -> Any:
    settings = settings_for(tmp_path, COMPLIANCE_ADMIN_TOKEN=ADMIN)
    with TestClient(create_app(settings), base_url="http://portal.test") as client:
        client.settings = settings
        yield client


def csrf(client: TestClient, path: str = "/objections/new") -> str:
    page = client.get(path)
    found = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def file(client: TestClient, **fields: str) -> Any:
    form = {"domain": "owner.test", "sender": "Site Owner", "email": "owner@owner.test", "kind": "cease-and-desist",
            "statement": "Please stop.", **fields}  # fmt: skip
    return client.post("/objections", data={"csrftoken": csrf(client), **form}, follow_redirects=False)


def store_of(client: TestClient) -> Store:
    return Store(client.settings["COMPLIANCE_STORE"])


def test_a_form_posted_without_the_csrf_token_is_refused_and_files_nothing(portal: TestClient) -> None:
    """CSRF: a POST without the signed token (another site's form) gets 403, and no objection or pause exists."""
    portal.get("/objections/new")  # the cookie alone, as a cross-site form would carry it
    refused = portal.post("/objections", data={"domain": "owner.test", "sender": "x", "email": "a@b.test", "kind": "Other"},
                          follow_redirects=False)  # fmt: skip
    assert refused.status_code == 403
    assert ObjectionBook(store_of(portal)).list() == [] and store_of(portal).notice_rows() == []
    forged = portal.post("/objections", data={"csrftoken": "forged", "domain": "owner.test"}, follow_redirects=False)
    assert forged.status_code == 403


def test_a_filed_objection_pauses_its_domain_in_the_registry_and_redirects_within_the_portal(portal: TestClient) -> None:
    """Filing: a pause notice (stop, no delete, expires) in the store's registry, the version bumped, in the ledger; 303 to a relative path."""
    store = store_of(portal)
    before = store.registry_version()
    done = file(portal, domain="owner.test")
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("/objections/") and "//" not in location, location
    [row] = store.notice_rows()
    notice = Notice.model_validate(row.data)
    assert PAUSE_TAG in notice.tags and notice.demands.stop_collection and not notice.demands.delete_existing
    assert notice.expires_at is not None and notice.expires_at > datetime.now(UTC) + timedelta(days=13)
    assert store.registry_version() == before + 1
    assert [e.kind for e in store.ledger_entries()] == ["notice.added"]
    decided = NoticeSet.build(merge_notices([], [(notice, row.resolved_domains)], None), "t")
    assert not decided.decide("https://www.owner.test/page").allowed
    assert decided.decide("https://other.test/").allowed
    # The e-mail and the statement stay out of the ledger (it can never forget).
    assert "owner@owner.test" not in "".join(e.payload for e in store.ledger_entries())


def test_a_redirect_never_follows_the_host_header(portal: TestClient) -> None:
    """No open redirect: with a hostile Host header the Location is still a path on the portal."""
    token = csrf(portal)
    done = portal.post("/objections", headers={"host": "evil.test"}, follow_redirects=False, data={
        "csrftoken": token, "domain": "owner.test", "sender": "S", "email": "s@owner.test", "kind": "Other"})  # fmt: skip
    assert done.status_code == 303 and done.headers["location"].startswith("/objections/")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"domain": "co.uk"}, "public suffix"),
        ({"domain": "www.owner.test"}, "not a registered domain"),
        ({"domain": "*.owner.test"}, "wildcards"),
        ({"domain": "", "url_patterns": "https://a.test/x\nhttps://b.test/y"}, "one registered domain"),
        ({"domain": "127.0.0.1"}, "IP address"),
        ({"email": "not-an-address"}, "email"),
        ({"statement": "x" * 5001}, "at most 5000"),
        ({"kind": "Nonsense"}, "kind: one of"),
    ],
)
def test_the_form_is_validated_like_the_command_line(portal: TestClient, fields: dict[str, str], message: str) -> None:
    """Validation: the notice model's validators (registered domains, no public suffix), bounded sizes; nothing is filed."""
    shown = file(portal, **fields)
    assert shown.status_code == 400 and message in shown.text, shown.text[-1500:]
    assert store_of(portal).notice_rows() == []


def test_parse_form_accepts_url_patterns_under_one_domain() -> None:
    """URL patterns under one registered domain: that domain is the one whose control is proved."""
    form, errors = parse_form({"url_patterns": "https://blog.owner.test/private/*\nhttps://owner.test/x$", "sender": "S",
                               "email": "s@owner.test", "kind": "DataProtection"})  # fmt: skip
    assert not errors and form is not None and form.domain == "owner.test" and len(form.scope.url_patterns) == 2


def test_hostile_input_is_escaped_everywhere_it_is_shown(portal: TestClient) -> None:
    """Escaping: a statement and sender full of markup come back as text, on the objection page, the admin page and in errors."""
    done = file(portal, sender=HOSTILE, statement=HOSTILE)
    page = portal.get(done.headers["location"])
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "onerror=alert" not in page.text.replace("&#34;", "").replace("&gt;", "") or "<img" not in page.text
    portal.headers["authorization"] = f"Bearer {ADMIN}"
    admin = portal.get("/admin")
    assert admin.status_code == 200 and "<script>" not in admin.text and "&lt;script&gt;" in admin.text
    portal.headers.pop("authorization")
    error = portal.get("/holdings", params={"domain": HOSTILE})
    assert error.status_code == 400 and "<script>" not in error.text
    assert "script-src" not in page.headers["content-security-policy"] and "default-src 'none'" in page.headers["content-security-policy"]


def test_holdings_show_counts_to_anyone_and_texts_only_with_proof(portal: TestClient) -> None:
    """Disclosure: counts, dates, refusals without proof; the stored URLs and texts only to the operator or a verified owner."""
    store = store_of(portal)
    store.start_crawl("c1", "site", ["https://owner.test/"], "UA")
    now = datetime.now(UTC)
    rows = [item_row({"title": "t", "text": f"SECRET TEXT {i}"},
                     {"url": f"https://{h}/secret-{i}", "host": h, "domain": "owner.test", "fetched_at": now, "crawl_id": "c1"})
            for i, h in enumerate(["owner.test", "www.owner.test", "www.owner.test"])]  # fmt: skip
    store.write(rows, [])
    public = portal.get("/holdings", params={"domain": "owner.test"})
    assert public.status_code == 200
    assert re.search(r"<td>www.owner.test</td><td>2</td>", public.text) and "3 stored item(s)" in public.text
    assert "SECRET TEXT" not in public.text and "/secret-" not in public.text
    # An objection id that is not verified unlocks nothing.
    filed = file(portal)
    objection_id = filed.headers["location"].rsplit("/", 1)[1]
    pending = portal.get("/holdings", params={"domain": "owner.test", "objection": objection_id})
    assert "SECRET TEXT" not in pending.text
    assert "objection-" in pending.text and "a pause while an objection awaits proof" in pending.text
    operator = portal.get("/holdings", params={"domain": "owner.test"}, headers={"authorization": f"Bearer {ADMIN}"})
    assert "SECRET TEXT 0" in operator.text and "https://www.owner.test/secret-1" in operator.text


def test_admin_is_off_without_a_token_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    """Admin: 404 when COMPLIANCE_ADMIN_TOKEN is unset; a wrong token or cookie gets nothing; the right one lists objections."""
    with TestClient(create_app(settings_for(tmp_path / "off"))) as off:
        assert off.get("/admin").status_code == 404
        assert off.get("/admin", headers={"authorization": "Bearer "}).status_code == 404
    with TestClient(create_app(settings_for(tmp_path / "on", COMPLIANCE_ADMIN_TOKEN=ADMIN))) as on:
        assert on.get("/admin").status_code == 401
        assert on.get("/admin", headers={"authorization": f"Bearer {ADMIN}x"}).status_code == 401
        on.cookies.set("portal_admin", "0" * 64)
        assert on.get("/admin").status_code == 401
        on.cookies.clear()
        wrong = on.post("/admin/login", data={"csrftoken": csrf(on, "/admin"), "token": "guess"}, follow_redirects=False)
        assert wrong.status_code == 401
        right = on.post("/admin/login", data={"csrftoken": csrf(on, "/admin"), "token": ADMIN}, follow_redirects=False)
        assert right.status_code == 303 and right.headers["location"] == "/admin"
        assert on.get("/admin").status_code == 200


def test_the_operator_approves_without_proof_and_rejects_with_a_reason(portal: TestClient) -> None:
    """Admin: approve makes a stop-and-delete notice and purges; reject withdraws the pause; both in the ledger."""
    store = store_of(portal)
    first = file(portal, domain="approved.test").headers["location"]
    second = file(portal, domain="rejected.test").headers["location"]
    book = ObjectionBook(store)
    a, r = (book.get(p.rsplit("/", 1)[1]) for p in (first, second))
    assert a and r
    portal.headers["authorization"] = f"Bearer {ADMIN}"
    token = csrf(portal, "/admin")
    assert portal.post(f"/admin/objections/{a['public_id']}/approve", data={"csrftoken": token, "note": "letter"}, follow_redirects=False).status_code == 303
    no_reason = portal.post(f"/admin/objections/{r['public_id']}/reject", data={"csrftoken": token, "reason": ""}, follow_redirects=False)
    assert no_reason.status_code == 400
    assert portal.post(f"/admin/objections/{r['public_id']}/reject", data={"csrftoken": token, "reason": "not the owner"}, follow_redirects=False).status_code == 303
    statuses = {o["domain"]: o["status"] for o in book.list()}
    assert statuses == {"approved.test": "approved", "rejected.test": "rejected"}
    in_force = {row.id: row.data for row in store.notice_rows()}
    assert in_force[f"objection-{a['public_id']}"]["demands"] == {"stop_collection": True, "delete_existing": True}
    assert "site-owner-objection" in in_force[f"objection-{a['public_id']}"]["tags"]
    assert in_force[a["pause_notice_id"]]["status"] == "withdrawn" and in_force[r["pause_notice_id"]]["status"] == "withdrawn"
    kinds = [e.kind for e in store.ledger_entries()]
    assert "objection.approved" in kinds and "objection.rejected" in kinds and "purge.completed" in kinds
    receipt = portal.get(f"{first}/receipt.json")
    assert receipt.status_code == 200 and receipt.json()["objection"]["outcome"] == "approved"


def test_filing_is_rate_limited_per_client(tmp_path: Path) -> None:
    """Rate limit: past COMPLIANCE_PORTAL_RATE_LIMIT a client gets 429 and nothing more is filed."""
    with TestClient(create_app(settings_for(tmp_path, COMPLIANCE_PORTAL_RATE_LIMIT="3/hour"))) as client:
        client.settings = settings_for(tmp_path)
        codes = [file(client, domain=f"site{i}.test").status_code for i in range(5)]
        assert codes == [303, 303, 303, 429, 429]
        assert len(ObjectionBook(store_of(client)).list()) == 3


def test_an_unverified_objection_expires_in_the_crawls_and_in_the_ledger(portal: TestClient) -> None:
    """Expiry: past expires_at the crawls' own check lets the domain through; the next sweep withdraws the pause and records it."""
    store = store_of(portal)
    file(portal)
    book = ObjectionBook(store, pending_days=14)
    [record] = book.list()
    [row] = store.notice_rows()
    notice = Notice.model_validate(row.data)
    notices = NoticeSet.build(merge_notices([], [(notice, row.resolved_domains)], None), "t")
    assert not notices.decide("https://owner.test/", now=datetime.now(UTC) + timedelta(days=13)).allowed
    assert notices.decide("https://owner.test/", now=datetime.now(UTC) + timedelta(days=14, minutes=2)).allowed
    assert book.sweep(now=datetime.now(UTC) + timedelta(days=15)) == [record["public_id"]]
    assert book.get(record["id"])["status"] == "expired"
    assert store.notice_row(record["pause_notice_id"]).data["status"] == "withdrawn"
    assert [e.kind for e in store.ledger_entries()][-2:] == ["notice.withdrawn", "objection.expired"]
    import json

    expired = json.loads(list(store.ledger_entries())[-1].payload)
    assert datetime.fromisoformat(expired["expired_at"]) == notice.expires_at  # the moment the pause ended, not the sweep's


def test_forms_posted_from_another_site_are_refused_whatever_they_carry(tmp_path: Path) -> None:
    """CSRF without cookies: a cross-site form arrives with no cookie (SameSite=Strict); it, a foreign Origin and
    Sec-Fetch-Site: cross-site are each refused with 403 and file nothing; an oversized form gets 413."""
    settings = settings_for(tmp_path)
    fields = {"domain": "owner.test", "sender": "x", "email": "a@owner.test", "kind": "Other", "statement": "stop"}
    with TestClient(create_app(settings), base_url="http://portal.test") as stranger:
        cookieless = stranger.post("/objections", data={"csrftoken": "anything", **fields}, follow_redirects=False)
        assert cookieless.status_code == 403 and "cookie is missing" in cookieless.text
    with TestClient(create_app(settings), base_url="http://portal.test") as client:
        for headers in ({"origin": "http://evil.test"}, {"sec-fetch-site": "cross-site"}):
            refused = client.post("/objections", data={"csrftoken": csrf(client), **fields}, headers=headers, follow_redirects=False)
            assert refused.status_code == 403 and "another" in refused.text, headers
        huge = client.post("/objections", data={"csrftoken": csrf(client), **fields, "statement": "x" * 70_000}, follow_redirects=False)
        assert huge.status_code == 413
        assert ObjectionBook(Store(settings["COMPLIANCE_STORE"])).list() == []
        same_site = client.post("/objections", data={"csrftoken": csrf(client), **fields},
                                headers={"origin": "http://portal.test", "sec-fetch-site": "same-origin"}, follow_redirects=False)  # fmt: skip
        assert same_site.status_code == 303, same_site.text[-500:]


def test_an_approved_objection_discloses_nothing_to_whoever_filed_it(portal: TestClient) -> None:
    """Only a proof of control unlocks stored texts: approval (a letter to the operator) says nothing about the filer."""
    store = store_of(portal)
    store.start_crawl("c1", "site", ["https://approved.test/"], "UA")
    row = item_row({"title": "t", "text": "SECRET TEXT"}, {"url": "https://approved.test/keep", "host": "approved.test",
                   "domain": "approved.test", "fetched_at": datetime.now(UTC), "crawl_id": "c1"})  # fmt: skip
    store.write([row], [])
    objection_id = file(portal, domain="approved.test").headers["location"].rsplit("/", 1)[1]
    objection = ObjectionBook(store).get(objection_id)
    assert objection is not None
    token = csrf(portal, "/admin")
    approved = portal.post(f"/admin/objections/{objection['public_id']}/approve", data={"csrftoken": token, "note": "letter"},
                           headers={"authorization": f"Bearer {ADMIN}"}, follow_redirects=False)  # fmt: skip
    assert approved.status_code == 303
    store.write([item_row({"title": "t", "text": "SECRET TEXT 2"}, {**row, "url": "https://approved.test/later"})], [])
    shown = portal.get("/holdings", params={"domain": "approved.test", "objection": objection_id})
    assert shown.status_code == 200 and "SECRET TEXT" not in shown.text


def test_the_portal_serves_signed_heads_and_consistency_proofs(tmp_path: Path) -> None:
    """/ledger/head is the latest signed head; /ledger/consistency proves an older tree inside it; bad sizes are one line."""
    from crawler.identity.signing import SigningKey
    from crawler.verify_receipt import verify_consistency

    settings = settings_for(tmp_path)
    store = Store(settings["COMPLIANCE_STORE"], head_key=SigningKey.generate())
    for n in range(5):
        store.append_ledger("purge.completed", {"purge_id": f"p{n}"})
    with TestClient(create_app(settings, store=store), base_url="http://portal.test") as client:
        head = client.get("/ledger/head").json()
        assert head == store.latest_tree_head() and head["tree_size"] == 5
        old = store.tree_head(2)
        assert old is not None
        proof = client.get("/ledger/consistency", params={"old": 2, "new": 5}).json()
        verify_consistency(2, 5, [bytes.fromhex(h) for h in proof["proof"]], bytes.fromhex(old["root_hash"]), bytes.fromhex(head["root_hash"]))
        assert client.get("/ledger/consistency", params={"old": "x", "new": 5}).status_code == 400
        assert client.get("/ledger/consistency", params={"old": 2, "new": 99}).status_code == 404
        assert client.get("/ledger/consistency", params={"old": 6, "new": 5}).status_code == 400


def test_admin_token_guesses_count_against_the_log_in_limit(tmp_path: Path) -> None:
    """Bearer guesses are rate limited like log-ins: past the limit even the right token gets nothing."""
    with TestClient(create_app(settings_for(tmp_path, COMPLIANCE_ADMIN_TOKEN=ADMIN, COMPLIANCE_PORTAL_RATE_LIMIT="3/hour"))) as client:
        assert client.get("/admin", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
        for n in range(3):
            assert client.get("/admin", headers={"authorization": f"Bearer guess-{n}"}).status_code == 401
        assert client.get("/admin", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 401


def test_the_running_portal_records_an_expired_pause_without_a_visitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal's own sweep (no request after filing) records objection.expired once the pause has run out."""
    import time

    import crawler.portal.app as app_module

    monkeypatch.setattr(app_module, "SWEEP_INTERVAL", 0.2)
    settings = settings_for(tmp_path, COMPLIANCE_OBJECTION_PENDING_DAYS=0.00002)  # about 1.7 s
    with TestClient(create_app(settings), base_url="http://portal.test") as client:
        client.settings = settings
        assert file(client).status_code == 303
        store = store_of(client)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "objection.expired" not in [e.kind for e in store.ledger_entries()]:
            time.sleep(0.1)
        assert "objection.expired" in [e.kind for e in store.ledger_entries()]
        [record] = ObjectionBook(store).list()
        assert record["status"] == "expired"


def test_verifying_is_rate_limited_per_client_and_a_refused_verify_fetches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate limit on Verify: past the limit a client gets 429 and the proof is not fetched (no attempt recorded)."""
    from conftest import GUARD_ENV

    # Were the limit missing, the probe below would run: keep it off the network like every crawl of the tests.
    monkeypatch.setenv("PYTHONPATH", GUARD_ENV["PYTHONPATH"])
    settings = settings_for(tmp_path, COMPLIANCE_PORTAL_RATE_LIMIT="2/hour")
    with TestClient(create_app(settings), base_url="http://portal.test") as client:
        client.settings = settings
        book = ObjectionBook(store_of(client))
        decided, pending = (book.get(file(client, domain=d).headers["location"].rsplit("/", 1)[1]) for d in ("decided.test", "owner.test"))
        assert decided and pending
        book.complete(decided["id"], "approved", {"method": "operator"}, "operator")
        # Verify on a decided objection fetches nothing but counts against the limit.
        codes = [client.post(f"/objections/{decided['id']}/verify", data={"csrftoken": csrf(client)}, follow_redirects=False).status_code
                 for _ in range(2)]  # fmt: skip
        assert codes == [303, 303]
        refused = client.post(f"/objections/{pending['id']}/verify", data={"csrftoken": csrf(client)}, follow_redirects=False)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
        after = book.get(pending["id"])
        assert after is not None and after["attempts"] == [] and after["status"] == "pending"


def test_the_rate_limit_survives_a_restart_of_the_portal(tmp_path: Path) -> None:
    """The limiter lives in the store: a new portal process on the same store still refuses a client past its limit."""
    settings = settings_for(tmp_path, COMPLIANCE_PORTAL_RATE_LIMIT="2/hour")
    with TestClient(create_app(settings), base_url="http://portal.test") as first:
        assert [file(first, domain=f"site{i}.test").status_code for i in range(2)] == [303, 303]
    with TestClient(create_app(settings), base_url="http://portal.test") as restarted:
        assert file(restarted, domain="site2.test").status_code == 429
    assert len(ObjectionBook(Store(settings["COMPLIANCE_STORE"])).list()) == 2


def test_the_store_rate_limiter_is_a_moving_window(any_store_url: str) -> None:
    """Each limit counts accepted hits in its last window; a refused hit is not counted; rows are pruned after the longest window."""
    from limits import parse_many

    from crawler.portal.ratelimit import StoreRateLimiter, rate_hits

    store = Store(any_store_url)
    limiter = StoreRateLimiter(store, parse_many("2/minute;3/hour"))
    t = 1_000_000.0
    assert [limiter.hit("verify", "a", t + s) for s in (0, 1, 2)] == [True, True, False]
    assert limiter.hit("verify", "b", t + 2) and limiter.hit("objection", "a", t + 2)  # per client, per action
    assert not limiter.test("verify", "a", t + 59) and limiter.test("verify", "a", t + 60.5)
    assert limiter.hit("verify", "a", t + 61)  # the minute moved on; the refused hit at t+2 was not counted
    assert not limiter.hit("verify", "a", t + 125)  # three in the hour
    assert limiter.hit("verify", "a", t + 3600.5)  # the first left the hour
    assert limiter.prune(t + 3600.5 + 3600) == 3  # a's verify is kept until its last hit leaves the hour
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rate_hits)).scalar() == 0


def test_the_store_rate_limiter_admits_exactly_the_limit_under_concurrent_hits(any_store_url: str) -> None:
    """Hits of one client from many threads at once: exactly ``amount`` are accepted (one transaction per hit, the row locked)."""
    import threading

    from limits import parse_many

    from crawler.portal.ratelimit import StoreRateLimiter

    store = Store(any_store_url)
    StoreRateLimiter(store, parse_many("5/hour"))  # creates the table before the threads race
    start = threading.Barrier(12)
    results: list[bool] = []

    def one() -> None:
        limiter = StoreRateLimiter(Store(any_store_url), parse_many("5/hour"))
        start.wait()
        results.append(limiter.hit("objection", "same-client"))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True] * 5


def test_building_a_receipt_reads_the_entries_since_the_claim_not_the_whole_ledger(tmp_path: Path) -> None:
    """build_receipt's work (SQLite VM steps) is the same with 40 or 8,000 older ledger entries, and it quotes the same entries."""
    from sqlalchemy import event

    from crawler.portal.objections import build_receipt

    def steps_to_build(older: int) -> tuple[int, list[str]]:
        store = Store(f"sqlite:///{tmp_path / f'ledger-{older}.sqlite3'}")
        for start in range(0, older, 1000):
            store.append_ledger_batch([("purge.completed", {"purge_id": f"p{n}"}) for n in range(start, min(older, start + 1000))])
        book = ObjectionBook(store)
        form, errors = parse_form({"domain": "owner.test", "sender": "S", "email": "s@owner.test", "kind": "Other"})
        assert form is not None, errors
        filed = book.file(form)
        receipt = book.complete(filed["id"], "approved", {"method": "operator"}, "operator")
        record = book.get(filed["id"])
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        event.listen(store.engine, "checkout", lambda dbapi, *_: dbapi.set_progress_handler(count, 10))
        store.engine.dispose()  # the pooled connections get the counter when checked out again
        again = build_receipt(store, record, receipt["notice"], receipt["purge"])
        assert [e["kind"] for e in again["ledger_entries"]] == [e["kind"] for e in receipt["ledger_entries"]]
        assert {"notice.added", "objection.approved", "purge.completed"} <= {e["kind"] for e in again["ledger_entries"]}
        return steps[0], [e["kind"] for e in again["ledger_entries"]]

    small, kinds_small = steps_to_build(40)
    large, kinds_large = steps_to_build(8000)
    assert kinds_small == kinds_large
    assert large < small * 1.5, (small, large)


@pytest.mark.parametrize("form", ["verify", "admin/login", "admin/logout", "approve", "reject"])
def test_every_form_of_the_portal_needs_its_csrf_token(portal: TestClient, form: str) -> None:
    """CSRF on every form, not only filing: a POST carrying the cookie but not the form's token is 403 and changes nothing."""
    filed = file(portal)
    record = ObjectionBook(store_of(portal)).get(filed.headers["location"].rsplit("/", 1)[1])
    assert record is not None
    portal.cookies.set("portal_admin", "")  # whatever the browser holds, the token is what counts
    path = {"verify": f"/objections/{record['id']}/verify", "admin/login": "/admin/login", "admin/logout": "/admin/logout",
            "approve": f"/admin/objections/{record['public_id']}/approve", "reject": f"/admin/objections/{record['public_id']}/reject"}[form]  # fmt: skip
    portal.get("/")  # the token cookie, as a browser that visited the portal holds it
    assert portal.cookies.get("csrftoken")
    refused = portal.post(path, data={"token": ADMIN, "reason": "r", "note": "n"}, follow_redirects=False)
    assert refused.status_code == 403, (refused.status_code, refused.text[:300])
    assert "portal_admin" not in refused.headers.get("set-cookie", "")
    after = ObjectionBook(store_of(portal)).get(record["id"])
    assert after is not None and after["status"] == "pending" and after["attempts"] == []


def test_a_completion_cut_short_is_finished_by_the_next_sweep_without_a_second_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A portal that dies mid-purge (after the notice and the outcome entry) loses nothing: the sweep finishes the purge,
    and the receipt quotes one notice.added and one objection.approved, as an uninterrupted completion would."""
    import crawler.compliance.purge as purge_module

    settings = settings_for(tmp_path)
    store = Store(settings["COMPLIANCE_STORE"])
    store.start_crawl("c1", "site", ["https://owner.test/"], "UA")
    store.write([item_row({"title": "t", "text": "x"}, {"url": f"https://owner.test/{i}", "host": "owner.test", "domain": "owner.test",
                                                       "fetched_at": datetime.now(UTC), "crawl_id": "c1"}) for i in range(3)], [])  # fmt: skip
    book = ObjectionBook(store)
    form, _ = parse_form({"domain": "owner.test", "sender": "S", "email": "s@owner.test", "kind": "Other"})
    assert form is not None
    filed = book.file(form)
    real = purge_module.run_purge

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("killed mid-purge")

    monkeypatch.setattr(purge_module, "run_purge", killed)
    with pytest.raises(SystemExit):
        book.complete(filed["id"], "approved", {"method": "operator"}, "operator")
    cut = book.get(filed["id"])
    assert cut is not None and cut["status"] == "approved" and cut["receipt"] is None and store.count_items("owner.test") == 3
    monkeypatch.setattr(purge_module, "run_purge", real)
    assert ObjectionBook(store).sweep() == [filed["public_id"]]  # a new process: the restarted portal's first sweep
    done = book.get(filed["id"])
    assert done is not None and done["receipt"] is not None and store.count_items("owner.test") == 0
    kinds = [e.kind for e in store.ledger_entries()]
    assert kinds.count("objection.approved") == 1 and kinds.count("purge.completed") == 1
    assert [e["kind"] for e in done["receipt"]["ledger_entries"]] == ["notice.added", "objection.approved", "purge.completed"]
    assert done["receipt"]["purge"]["counts"]["store"] == 3
