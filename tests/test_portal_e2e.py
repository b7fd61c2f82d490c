"""The portal for real: `scrapy compliance serve` over HTTP, a running crawl, the test web, the store they share."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import crawler
from crawler.compliance.store import Store
from crawler.portal.objections import ObjectionBook
from crawler.testing.plugin import serving
from crawler.testing.runner import policy_dir_with_pace, run_site_crawl, scrapy_command, start_site_crawl

from conftest import GUARD_ENV
from portal_support import OwnedSite, csrf_of, file_objection, portal_settings, requests_after_objection, running_portal, session
from portal_support import owned  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

#: The standalone receipt verifier a site owner runs (stdlib and cryptography only).
VERIFIER = Path(crawler.__file__).parent / "verify_receipt.py"


def test_objection_stops_a_running_crawl_then_verify_purges_and_the_receipt_checks(owned: Any, tmp_path: Path, store_url: str) -> None:
    """File -> no request to the host >1 s later; the proof is fetched signed by the crawler; receipt counts = what left the store."""
    policies = policy_dir_with_pace(tmp_path / "policies", min_delay=0.05, max_concurrency=1)
    settings = portal_settings(store_url, policies, tmp_path / "var")
    crawl = start_site_crawl(owned, ["http://owner.test/", "http://bystander.test/"], store_url,
                             settings={"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_DATA_DIR": str(tmp_path / "var")},
                             env=GUARD_ENV, log_path=tmp_path / "crawl.log")  # fmt: skip
    owned.request_verifier = lambda req: "signed" if {"signature", "signature-input"} <= set(req.headers) else "unsigned"
    try:
        with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
            owned.wait_for_requests("owner.test", 15, process=crawl)
            assert crawl.poll() is None, "the crawl ended before the objection could be filed"
            client = session()
            page = file_objection(client, portal.url)
            assert page.status_code == 200 and "pending" in page.text, page.text[-2000:]
            token = re.search(r'id="token">([^<]+)<', page.text).group(1)
            # Read once the crawl has gone on fetching the bystander well past the 1 s bound.
            late = requests_after_objection(owned, "owner.test", page.submitted_at, still_crawled="bystander.test", process=crawl)
            assert not late, f"requests to owner.test more than 1 s after the objection was submitted: {late[:5]}"
            held_before = Store(store_url).count_items("owner.test")
            assert held_before > 0

            # A failed check says what was fetched and why it did not match.
            checked_at = time.time()
            failed = client.post(page.url + "/verify", data={"csrftoken": csrf_of(page.text)})
            assert "not proved" in failed.text and "HTTP 404, not 200" in failed.text, failed.text[-2000:]
            assert 'has no &lt;meta name=&#34;ethical-crawler-verification&#34;&gt;' in failed.text
            proof_requests = [e for e in owned.requests(host="owner.test") if e.time >= checked_at]
            assert {e.path for e in proof_requests} >= {"/.well-known/ethical-crawler-verification.txt", "/"}
            assert all(e.user_agent.startswith("EthicalCrawler/") for e in proof_requests)
            # Signed like every request of the crawler (the signature itself is verified by tests/test_e2e_identity.py).
            assert all(e.signature == "signed" for e in proof_requests), [(e.path, e.signature) for e in proof_requests]
            robots = [i for i, e in enumerate(proof_requests) if e.path == "/robots.txt"]
            home = [i for i, e in enumerate(proof_requests) if e.path == "/"]
            # The home page is a page: robots.txt is asked first (the proof file is exempt; see the robots test).
            assert robots and home and robots[0] < home[0], [e.path for e in proof_requests]

            owned.owned.file_token = token
            verified = client.post(page.url + "/verify", data={"csrftoken": csrf_of(failed.text)})
            assert 'id="status">verified<' in verified.text, verified.text[-3000:]
            receipt = client.get(page.url.split("?")[0] + "/receipt.json")
            assert receipt.status_code == 200 and "attachment" in receipt.headers["content-disposition"]
            data = receipt.json()
            store = Store(store_url)
            assert store.count_items("owner.test") == 0
            assert data["purge"]["counts"]["store"] == held_before
            assert data["purge"]["total_deleted"] >= held_before
            shown = re.search(r'id="total-deleted">(\d+)<', verified.text).group(1)
            assert int(shown) == data["purge"]["total_deleted"]
            path = tmp_path / "receipt.json"
            path.write_text(receipt.text)
            # With the portal's settings: the heads are checked against the key its data folder holds.
            as_portal = [a for k, v in settings.items() for a in ("-s", f"{k}={v}")]
            checked = scrapy_command(["ledger", "verify", "--receipt", str(path), *as_portal])
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "receipt FAILED" not in checked.stdout and "ledger intact" in checked.stdout
            # The site owner's own check, without the crawler: the standalone verifier
            # (crawler/verify_receipt.py) on the downloaded receipt, against the published keys.
            assert set(data["purge"]["ledger_receipt"]) >= {"entry", "inclusion_proof", "tree_head"}
            keys = scrapy_command(["identity", "directory", "--body-only", *as_portal])
            assert keys.returncode == 0, keys.stderr
            (tmp_path / "keys.json").write_text(keys.stdout)
            # --portal: the newer signed head and the consistency proof come from the portal itself.
            owner = subprocess.run([sys.executable, str(VERIFIER), str(path), "--key", str(tmp_path / "keys.json"), "--portal", portal.url],
                                   capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "no_proxy": "*"})  # fmt: skip
            assert owner.returncode == 0, owner.stdout + owner.stderr
            assert "FAIL" not in owner.stdout and "ok    consistency: the tree of size" in owner.stdout, owner.stdout
            # The notice, the objection's outcome and the purge: each entry proved against one head.
            assert owner.stdout.count("inclusion: leaf") >= 3, owner.stdout
            assert {r["entry"]["kind"] for r in data["ledger_receipts"]} >= {"notice.added", "objection.verified"}
            tampered = {**data, "purge": {**data["purge"], "counts": {"store": 0}}}
            path.write_text(json.dumps(tampered))
            assert scrapy_command(["ledger", "verify", "--receipt", str(path), *as_portal]).returncode == 1
            notice = {r.id: r.data for r in store.notice_rows()}[data["notice"]["id"]]
            assert "site-owner-objection" in notice["tags"] and notice["demands"]["delete_existing"] is True
    finally:
        crawl.terminate()
        crawl.wait(60)


def test_the_portal_killed_mid_way_loses_nothing_and_the_crawls_never_need_it(owned: Any, tmp_path: Path, store_url: str) -> None:
    """kill -9 the portal right after an objection is filed: the running crawl keeps the pause (no request to the host
    more than 1 s after the submission) and keeps crawling another host, a crawl started meanwhile refuses the host too;
    restarted, the portal still has the objection, and it can be verified."""
    policies = policy_dir_with_pace(tmp_path / "policies", min_delay=0.05, max_concurrency=1)
    settings = portal_settings(store_url, policies, tmp_path / "var")
    crawl_settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_DATA_DIR": str(tmp_path / "var")}
    crawl = start_site_crawl(owned, ["http://owner.test/", "http://bystander.test/"], store_url, settings=crawl_settings,
                             env=GUARD_ENV, log_path=tmp_path / "crawl.log")  # fmt: skip
    client = session()
    try:
        with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
            owned.wait_for_requests("owner.test", 10, process=crawl)
            # Some of the host's pages are in the store before the objection (items wait in a batch for
            # up to COMPLIANCE_STORE_FLUSH_INTERVAL; a pause refuses those still waiting): then "nothing
            # deleted" below can be seen. Waited for by what the store holds, not by time.
            deadline = time.monotonic() + 60
            while Store(store_url).count_items("owner.test") == 0:
                assert crawl.poll() is None and time.monotonic() < deadline, "no page of owner.test was stored"
                time.sleep(0.05)
            assert crawl.poll() is None, "the crawl ended before the objection could be filed"
            page = file_objection(client, portal.url)
            assert 'id="status">pending<' in page.text, page.text[-2000:]
            token = re.search(r'id="token">([^<]+)<', page.text).group(1)
            portal.process.send_signal(signal.SIGKILL)  # a crash: no shutdown, no lifespan, nothing flushed
            assert portal.process.wait(30) == -signal.SIGKILL
            killed = time.time()
        # The portal is gone. The crawl goes on with the other host, and leaves owner.test alone.
        owned.wait_for_requests("bystander.test", 5, after=killed, process=crawl)
        late = requests_after_objection(owned, "owner.test", page.submitted_at, still_crawled="bystander.test", process=crawl)
        assert not late, f"requests to owner.test more than 1 s after the objection was submitted: {late[:5]}"
        assert crawl.poll() is None and Store(store_url).count_items("owner.test") > 0  # paused, nothing deleted yet
        # A crawl started while the portal is down reads the pause from the store.
        started = time.time()
        fresh = run_site_crawl(owned, ["http://owner.test/"], store_url, settings=crawl_settings, env=GUARD_ENV)
        fresh.check()
        assert [e.path for e in owned.requests(host="owner.test") if e.time >= started] == []
        listed = scrapy_command(["objection", "list", "-s", f"COMPLIANCE_STORE={store_url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"])
        assert listed.returncode == 0 and "pending" in listed.stdout and "owner.test" in listed.stdout, listed.stdout + listed.stderr

        with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
            again = client.get(portal.url + "/" + page.url.split("/", 3)[3])
            assert 'id="status">pending<' in again.text and f'id="token">{token}<' in again.text, again.text[-2000:]
            owned.owned.file_token = token
            verify_started = time.time()
            verified = client.post(again.url + "/verify", data={"csrftoken": csrf_of(again.text)})
            verify_ended = time.time()
            assert 'id="status">verified<' in verified.text, verified.text[-3000:]
        assert Store(store_url).count_items("owner.test") == 0
        # Since the submission, owner.test saw only the proof fetch (robots.txt, the file, the home page), during Verify.
        since = [e for e in owned.requests(host="owner.test") if e.time > page.submitted_at + 1.0]
        assert {e.path for e in since} <= {"/robots.txt", "/.well-known/ethical-crawler-verification.txt", "/"}, [e.path for e in since]
        assert all(verify_started <= e.time <= verify_ended for e in since)
    finally:
        crawl.terminate()
        crawl.wait(60)


@pytest.mark.parametrize("trusted", [False, True])
def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(owned: Any, tmp_path: Path, store_url: str, trusted: bool) -> None:
    """Client address: a spoofed X-Forwarded-For does not escape the rate limit, unless COMPLIANCE_TRUSTED_PROXIES names the peer."""
    extra = {"COMPLIANCE_PORTAL_RATE_LIMIT": "2/hour", **({"COMPLIANCE_TRUSTED_PROXIES": "127.0.0.1"} if trusted else {})}
    settings = portal_settings(store_url, policy_dir_with_pace(tmp_path / "policies"), tmp_path / "var", **extra)
    client = session()
    with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
        codes = [
            file_objection(client, portal.url, headers={"X-Forwarded-For": f"203.0.113.{i}"}, domain=f"site{i}.test").status_code
            for i in range(4)
        ]  # fmt: skip
    assert codes == ([200] * 4 if trusted else [200, 200, 429, 429])
    assert len(ObjectionBook(Store(store_url)).list()) == (4 if trusted else 2)


def test_objection_command_approves_and_rejects(owned: Any, tmp_path: Path, store_url: str) -> None:
    """`scrapy objection approve|reject` decide what the portal filed, as /admin would."""
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = portal_settings(store_url, policies, tmp_path / "var")
    client = session()
    with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
        file_objection(client, portal.url, domain="approved.test")
        file_objection(client, portal.url, domain="rejected.test")
    book = ObjectionBook(Store(store_url))
    ids = {o["domain"]: o["public_id"] for o in book.list()}
    common = ["-s", f"COMPLIANCE_STORE={store_url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"]
    no_reason = scrapy_command(["objection", "reject", ids["rejected.test"], *common])
    assert no_reason.returncode == 1 and "--reason" in no_reason.stderr
    approved = scrapy_command(["objection", "approve", ids["approved.test"], "--note", "letter of 2026-11-20", *common])
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["objection"]["outcome"] == "approved"
    rejected = scrapy_command(["objection", "reject", ids["rejected.test"], "--reason", "not the owner", *common])
    assert rejected.returncode == 0 and json.loads(rejected.stdout)["status"] == "rejected"
    again = scrapy_command(["objection", "reject", ids["rejected.test"], "--reason", "twice", *common])
    assert again.returncode == 1 and "not pending" in again.stderr


class DisallowAllOwnedSite(OwnedSite):
    """An owned site whose robots.txt keeps every crawler out (``Disallow: /``)."""

    def handle(self, req: Any) -> Any:
        from crawler.testing.web import text

        if req.path == "/robots.txt":
            return text("User-agent: *\nDisallow: /\n")
        return super().handle(req)


def test_a_site_closed_by_robots_txt_can_still_prove_control_with_the_file(tmp_path: Path, store_url: str) -> None:
    """Disallow: / keeps the crawler off the home page (the meta tag cannot be read) but not off the proof file."""
    site = DisallowAllOwnedSite()
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = portal_settings(store_url, policies, tmp_path / "var")
    with serving({"owner.test": site}) as web, running_portal(web.env(), settings, tmp_path / "portal.log") as portal:
        client = session()
        page = file_objection(client, portal.url)
        token = re.search(r'id="token">([^<]+)<', page.text).group(1)
        site.meta_token = token  # on the home page, which robots.txt closes
        by_meta = client.post(page.url + "/verify", data={"csrftoken": csrf_of(page.text)})
        assert 'id="status">verified<' not in by_meta.text
        assert "/" not in [e.path for e in web.requests(host="owner.test")], "the home page was fetched against robots.txt"
        site.file_token = token
        by_file = client.post(page.url + "/verify", data={"csrftoken": csrf_of(by_meta.text)})
        assert 'id="status">verified<' in by_file.text, by_file.text[-2000:]
        paths = [e.path for e in web.requests(host="owner.test")]
    assert "/.well-known/ethical-crawler-verification.txt" in paths and "/" not in paths, paths


def test_the_proof_fetch_checks_tls_certificates_by_default(tmp_path: Path, store_url: str) -> None:
    """TLS: by default the proof fetch refuses the test web's certificates (their CA is not trusted); once the portal
    trusts that CA (SSL_CERT_FILE, as for a private CA) the same proof passes, but a trusted certificate that does not
    validly name the host is still refused (its ``*.test`` pattern, which Twisted's own check lets through)."""
    site, elsewhere = OwnedSite(), OwnedSite()
    settings = portal_settings(store_url, policy_dir_with_pace(tmp_path / "policies"), tmp_path / "var")
    client = session()
    # The test web issues a certificate for each *.test name; owner.example gets its default one (*.test, localhost, 127.0.0.1).
    with serving({"owner.test": site, "owner.example": elsewhere}) as web:
        with running_portal(web.env(), settings, tmp_path / "portal.log", trust_test_web=False) as portal:
            page = file_objection(client, portal.url)
            site.file_token = re.search(r'id="token">([^<]+)<', page.text).group(1)
            untrusted = client.post(page.url + "/verify", data={"csrftoken": csrf_of(page.text)})
            assert 'id="status">pending<' in untrusted.text and "certificate verify failed" in untrusted.text, untrusted.text[-2000:]
            # Nothing was asked over a connection whose certificate failed.
            assert [e for e in web.requests(host="owner.test") if e.method != "CONNECT"] == []
        with running_portal(web.env(), settings, tmp_path / "portal.log", trust_test_web=True) as portal:
            other = file_objection(client, portal.url, domain="owner.example", email="owner@owner.example")
            elsewhere.file_token = re.search(r'id="token">([^<]+)<', other.text).group(1)
            mismatch = client.post(other.url + "/verify", data={"csrftoken": csrf_of(other.text)})
            assert 'id="status">pending<' in mismatch.text and "the certificate is not valid for owner.example" in mismatch.text, mismatch.text[-2000:]
            assert [e for e in web.requests(host="owner.example") if e.method != "CONNECT"] == []
            again = client.get(portal.url + "/" + page.url.split("/", 3)[3].split("?")[0])
            trusted = client.post(again.url + "/verify", data={"csrftoken": csrf_of(again.text)})
            assert 'id="status">verified<' in trusted.text, trusted.text[-2000:]
    assert "/.well-known/ethical-crawler-verification.txt" in [e.path for e in web.requests(host="owner.test")]
