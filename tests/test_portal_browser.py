"""The whole flow in a real browser: Playwright drives Debian's Chromium (headless) against a real portal, crawl and test web."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.compliance.store import Store
from crawler.testing.plugin import serving
from crawler.testing.runner import policy_dir_with_pace, scrapy_command, start_site_crawl
from crawler.testing.web import StaticSite, html

from conftest import GUARD_ENV
from portal_support import ADMIN_TOKEN, portal_settings, requests_after_objection, running_portal
from portal_support import owned  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e
HOSTILE = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">"


@pytest.fixture(scope="module")
def browser() -> Any:
    playwright_api = pytest.importorskip("playwright.sync_api")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        # javaScriptEnabled off in the pages below: no flow needs it (and a script that ran would show).
        # evil.test (a cross-site attacker's page, served by the test web) is mapped to 127.0.0.1: no name is resolved.
        launched = p.chromium.launch(executable_path=path, headless=True, args=["--host-resolver-rules=MAP evil.test 127.0.0.1"])
        yield launched
        launched.close()


def test_site_owner_objects_verifies_and_checks_the_receipt_in_a_browser(browser: Any, owned: Any, tmp_path: Path, store_url: str) -> None:
    """Crawler page, holdings, file, the host goes quiet, place the token, verify, receipt = what left the store, download, check."""
    policies = policy_dir_with_pace(tmp_path / "policies", min_delay=0.05, max_concurrency=1)
    settings = portal_settings(store_url, policies, tmp_path / "var", COMPLIANCE_PURPOSES="search,archive")
    crawl = start_site_crawl(owned, ["http://owner.test/", "http://bystander.test/"], store_url,
                             settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV, log_path=tmp_path / "crawl.log")  # fmt: skip
    try:
        with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
            context = browser.new_context(java_script_enabled=False, accept_downloads=True)
            page = context.new_page()
            page.goto(portal.url + "/")
            assert page.inner_text("#crawler") == "EthicalCrawler"
            assert page.locator("#purposes li b").all_inner_texts() == ["archive", "search"]
            assert "File an objection at /objections/new" in page.inner_text("#objection")
            owned.wait_for_requests("owner.test", 15, process=crawl)
            assert crawl.poll() is None, "the crawl ended before the objection could be filed"
            page.click("text=What we hold")
            page.fill("#domain", "owner.test")
            page.click("button[type=submit]")
            assert int(re.search(r"\d+", page.inner_text("#total")).group()) > 0
            assert "verified owner" in page.inner_text("#private")

            page.click("text=Object")
            page.fill("#domain", "owner.test")
            page.fill("#sender", "Owner of owner.test")
            page.fill("#email", "owner@owner.test")
            page.select_option("#kind", "DataProtection")
            page.fill("#statement", HOSTILE)
            submitted = time.time()
            page.click("#submit")
            assert page.inner_text("#status") == "pending"
            token = page.inner_text("#token")
            # Read once the crawl has gone on fetching the bystander well past the 1 s bound.
            late = requests_after_objection(owned, "owner.test", submitted, still_crawled="bystander.test", process=crawl)
            assert not late, f"requests to owner.test more than 1 s after the objection was submitted: {late[:5]}"
            held = Store(store_url).count_items("owner.test")

            owned.owned.meta_token = token  # the home-page method this time
            page.click("#verify")
            assert page.inner_text("#status") == "verified", page.content()[-3000:]
            shown_store = int(page.locator("#counts tr", has_text="store").locator(".count").inner_text())
            assert shown_store == held and Store(store_url).count_items("owner.test") == 0
            with page.expect_download() as download_info:
                page.click("#download")
            path = tmp_path / "downloaded-receipt.json"
            download_info.value.save_as(path)
            # With the portal's settings: its heads are signed with the key of its data folder.
            checked = scrapy_command(["ledger", "verify", "--receipt", str(path), *[a for k, v in settings.items() for a in ("-s", f"{k}={v}")]])
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "receipt ok" in checked.stdout and "FAIL" not in checked.stdout
            context.close()
    finally:
        crawl.terminate()
        crawl.wait(60)


def test_xss_csrf_rate_limit_and_admin_token_in_a_browser(browser: Any, owned: Any, tmp_path: Path, store_url: str) -> None:
    """With scripts ON: hostile input never runs; a cross-site form is refused; the rate limit answers 429; admin needs the token."""
    settings = portal_settings(store_url, policy_dir_with_pace(tmp_path / "policies"), tmp_path / "var",
                               COMPLIANCE_PORTAL_RATE_LIMIT="2/hour", COMPLIANCE_ADMIN_TOKEN=ADMIN_TOKEN)  # fmt: skip
    with running_portal(owned.env(), settings, tmp_path / "portal.log") as portal:
        context = browser.new_context(java_script_enabled=True)
        page = context.new_page()

        def submit(domain: str) -> Any:
            page.goto(portal.url + "/objections/new")
            page.fill("#domain", domain)
            page.fill("#sender", HOSTILE)
            page.fill("#email", "owner@owner.test")
            page.fill("#statement", HOSTILE)
            return page.click("#submit")

        submit("owner.test")
        assert page.inner_text("#status") == "pending"
        assert page.evaluate("window.pwned") is None, "hostile markup ran"
        assert HOSTILE in page.inner_text("main"), "hostile markup was not shown as text"  # escaped, not merely blocked by the CSP
        victim_form = (f'<form method="post" action="{portal.url}/objections"><input name="csrftoken" value="forged">'
                       '<input name="domain" value="victim.test"><input name="sender" value="x"><input name="email" value="a@b.test">'
                       '<input name="kind" value="Other"><button id="go">go</button></form>')  # fmt: skip
        # A page of the browser's own (no origin) posting to the portal: the cookie goes along, the token does not match.
        page.set_content(victim_form)
        with page.expect_response(lambda r: r.url.endswith("/objections")) as answer:
            page.click("#go")
        assert answer.value.status == 403 and "did not match" in page.content()
        # Another site's page posting to the portal: the SameSite=Strict cookie stays home, Sec-Fetch-Site says cross-site.
        with serving({"evil.test": StaticSite({"/": html(victim_form)})}) as evil:
            page.goto(f"http://evil.test:{evil.port}/")
            with page.expect_response(lambda r: r.url.endswith("/objections")) as answer:
                page.click("#go")
            assert answer.value.status == 403 and "from another site" in page.content(), page.content()[:500]
        submit("second.test")
        submit("third.test")
        assert "Too many requests" in page.inner_text("h1")
        page.goto(portal.url + "/admin")
        page.fill("#token", "wrong-token")
        page.click("#login")
        assert page.is_visible("#failed")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#login")
        [session_cookie] = [c for c in context.cookies(portal.url) if c["name"] == "portal_admin"]
        assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict" and ADMIN_TOKEN not in session_cookie["value"]
        rows = page.locator("#objections tr").all_inner_texts()
        assert any("owner.test" in r for r in rows) and not any("victim.test" in r for r in rows)
        assert page.evaluate("window.pwned") is None
        context.close()
