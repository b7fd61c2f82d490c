"""`scrapy compliance page`: the public page that explains the crawler says what its configuration says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from crawler.testing.runner import scrapy_command

from conftest import REQUIRE_SERVICES

CONTACT = "https://operator.example/crawler"
AGENT = "https://bot.example"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (Debian: apt-get install chromium); the page is not rendered"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (COMPLIANCE_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return path


def settings_for(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "COMPLIANCE_CONTACT": CONTACT, "COMPLIANCE_BOT_NAME": "PoliteBot", "COMPLIANCE_PURPOSES": "search,archive",
        "COMPLIANCE_SIGNING_KEY": str(tmp_path / "keys" / "signing-key.json"), "COMPLIANCE_SIGNATURE_AGENT": AGENT,
        "COMPLIANCE_MAX_RETRY_AFTER": 900, "COMPLIANCE_IP_RANGES": "192.0.2.0/24,2001:db8:10::/48",
        "COMPLIANCE_OPERATOR_NAME": "Example Research <Lab> & Co", "COMPLIANCE_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}",
        **extra,
    }  # fmt: skip


def write_page(tmp_path: Path, settings: dict[str, Any], out: Path) -> None:
    init = scrapy_command(["identity", "init"], settings=settings)
    assert init.returncode == 0, init.stderr
    done = scrapy_command(["compliance", "page", "--out", str(out)], settings=settings)
    assert done.returncode == 0, done.stderr[-2000:]


def published_jwks(settings: dict[str, Any]) -> dict[str, Any]:
    done = scrapy_command(["identity", "directory", "--body-only"], settings=settings)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_json_says_what_the_configuration_says(tmp_path: Path) -> None:
    """crawler.json: operator, contact, token, User-Agent, purposes, the signals that apply to them, the key directory, IP ranges."""
    settings = settings_for(tmp_path)
    out = tmp_path / "page"
    write_page(tmp_path, settings, out)
    data = json.loads((out / "crawler.json").read_text())
    assert data["operator"] == {"name": "Example Research <Lab> & Co", "contact": CONTACT}
    assert data["crawler"] == {"product_token": "PoliteBot", "user_agent": f"PoliteBot/0.1.0 (+{CONTACT})"}
    assert [p["id"] for p in data["purposes"]] == ["archive", "search"]
    signals = {s["signal"].split(" ")[0].rstrip(","): s["purposes"] for s in data["blocking"]["signals"]}
    # Without train-ai, the signals that only restrict train-ai (noai, TDMRep) are not offered as ways to block it.
    assert signals == {"noindex": ["archive", "search"], "nofollow": ["archive", "search"], "noarchive": ["archive"],
                       "Content-Usage": ["search"], "Content-Signal": ["search"]}  # fmt: skip
    assert data["blocking"]["robots_txt"]["example"] == "User-agent: PoliteBot\nDisallow: /"
    assert "up to 900 s" in data["blocking"]["distress"]["text"]
    assert data["identity"]["directory_url"] == f"{AGENT}/.well-known/http-message-signatures-directory"
    assert data["identity"]["jwks"] == published_jwks(settings)
    assert data["ip_ranges"] == ["192.0.2.0/24", "2001:db8:10::/48"]
    ranges = json.loads((out / "client-ranges.json").read_text())
    assert ranges["prefixes"] == [{"ipv4Prefix": "192.0.2.0/24"}, {"ipv6Prefix": "2001:db8:10::/48"}]
    private = json.loads((tmp_path / "keys" / "signing-key.json").read_text())["keys"][0]["d"]
    assert private not in (out / "crawler.json").read_text() and private not in (out / "index.html").read_text()


@pytest.mark.parametrize("ranges", ["192.0.2.1/24", "10.0.0.0/33", "example.org"])
def test_an_invalid_ip_range_fails_closed_in_one_line(tmp_path: Path, ranges: str) -> None:
    """A CIDR that is not one (host bits set, prefix too long, a name): one line naming the setting, no page written."""
    settings = settings_for(tmp_path, COMPLIANCE_IP_RANGES=ranges)
    out = tmp_path / "page"
    assert scrapy_command(["identity", "init"], settings=settings).returncode == 0
    done = scrapy_command(["compliance", "page", "--out", str(out)], settings=settings)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith(f"error: COMPLIANCE_IP_RANGES: {ranges!r} is not a CIDR range")
    assert "Traceback" not in done.stderr and not out.exists()


def test_the_rendering_is_pure_and_escapes_everything() -> None:
    """Same content in, same bytes out; markup in a value is text, not markup."""
    from crawler.identity.page import page_content, render_html, render_json

    values: dict[str, Any] = dict(
        operator="<script>alert(1)</script>", contact="mailto:a@example.org?subject=<b>", product_token="Bot",
        user_agent="Bot/1 (+mailto:a@example.org)", purposes=["search"], min_delay=1.0, max_concurrency=1,
        max_crawl_delay=30, robots_ttl=86400, max_retry_after=3600, backoff_base=1, backoff_max=300, signing=False,
        signature_agent=None, directory_url=None, jwks=None, signature_lifetime=300, notice_poll_interval=0.25,
    )  # fmt: skip
    first, second = page_content(**values), page_content(**values)
    assert render_html(first) == render_html(second) and render_json(first) == render_json(second)
    html = render_html(first)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "?subject=&lt;b&gt;" in html
    assert "not signed" in html and 'rel="client-ranges"' not in html


def test_chromium_renders_what_the_configuration_says_and_follows_a_change(tmp_path: Path) -> None:
    """Headless Chromium (Playwright, the system's browser): the page states the configuration; change a purpose, the page changes."""
    browser_path = chromium()
    from playwright.sync_api import sync_playwright

    settings = settings_for(tmp_path)
    out = tmp_path / "page"
    write_page(tmp_path, settings, out)
    jwks = published_jwks(settings)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto((out / "index.html").as_uri())
            assert page.inner_text("#product-token") == "PoliteBot"
            assert page.inner_text("#user-agent") == f"PoliteBot/0.1.0 (+{CONTACT})"
            assert page.inner_text("#operator") == "Example Research <Lab> & Co"  # escaped, shown as written
            assert page.inner_text("#contact") == CONTACT
            assert page.eval_on_selector_all("#purposes li", "items => items.map(i => i.dataset.purpose)") == ["archive", "search"]
            assert "User-agent: PoliteBot\nDisallow: /" in page.inner_text("#robots-example")
            rows = page.eval_on_selector_all("#signals tr", "rows => rows.slice(1).map(r => r.cells[0].innerText)")
            assert not any("TDMRep" in row or "noai" in row for row in rows)
            assert json.loads(page.inner_text("#jwks")) == jwks
            assert page.inner_text("#directory-url") == f"{AGENT}/.well-known/http-message-signatures-directory"
            assert page.eval_on_selector_all("#ip-ranges code", "cs => cs.map(c => c.innerText)") == ["192.0.2.0/24", "2001:db8:10::/48"]
            href = page.get_attribute('link[rel="client-ranges"]', "href")
            assert href and (out / href).is_file()
            assert "900" in page.inner_text("#distress")
            assert page.query_selector_all("script") == []
            assert all(url.startswith("file://") for url in asked), f"the page loaded something from outside: {asked}"

            # The crawl's purposes change: so does the page.
            write_page(tmp_path, {**settings, "COMPLIANCE_PURPOSES": "search,train-ai"}, out)
            page.reload()
            assert page.eval_on_selector_all("#purposes li", "items => items.map(i => i.dataset.purpose)") == ["search", "train-ai"]
            rows = page.eval_on_selector_all("#signals tr", "rows => rows.slice(1).map(r => r.cells[0].innerText)")
            assert any("TDMRep" in row for row in rows) and not any(row.startswith("noarchive") for row in rows)
        finally:
            browser.close()
