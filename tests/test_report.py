"""`scrapy compliance report`: the numbers a compliance person reads, as text and as a page Chromium renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from crawler.compliance.store import Store
from crawler.testing.runner import scrapy_command

from conftest import REQUIRE_SERVICES


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (Debian: apt-get install chromium); the HTML report is not rendered"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (COMPLIANCE_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return path


@pytest.fixture
def crawled(run_compliance_crawl, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A crawl over robots, image and platform hosts, then a notice with its purge."""
    result = run_compliance_crawl("site", ["http://shop.test/", "http://images.test/", "http://www.facebook.com/", "http://down.test/"]).check()
    settings = {"COMPLIANCE_STORE": result.store_url, "COMPLIANCE_POLICY_DIR": str(tmp_path / f"{result.crawl_id}-policies")}
    done = scrapy_command(["notice", "add", "--domain", "shop.test", "--sender", "Shop Ltd", "--received", "2026-11-26", "--id", "cd-shop"],
                          settings=settings)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return result, settings


def test_text_report_matches_the_store(crawled) -> None:  # type: ignore[no-untyped-def]
    """The text report's totals, reasons, notices, purges and ledger status are the store's."""
    result, settings = crawled
    done = scrapy_command(["compliance", "report", "--crawl", result.crawl_id], settings=settings)
    assert done.returncode == 0, done.stderr
    store = Store(result.store_url)
    assert f"Stored: {store.count_items()} item(s)" in done.stdout
    for reason, count in store.refusal_counts(result.crawl_id):
        assert re.search(rf"^  {re.escape(reason)}\s+{count}$", done.stdout, re.M), reason
    assert "cd-shop" in done.stdout and "Purges: 1" in done.stdout and "Ledger: intact" in done.stdout
    assert "e.g. http://shop.test/members/list at download: Disallow: /members/" in done.stdout


def test_html_report_renders_the_stores_numbers_in_chromium(crawled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Headless Chromium renders the page (no network): its charts and tables show the store's numbers."""
    browser = chromium()
    result, settings = crawled
    page = tmp_path / "report.html"
    done = scrapy_command(["compliance", "report", "--html", str(page)], settings=settings)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "http://" not in text.split("<script", 1)[0].replace("http-equiv", ""), "the page loads nothing from outside"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    assert 'data-rendered="yes"' in dom, "the page's script ran to the end"
    store = Store(result.store_url)
    chart = dom.split('aria-label="refusals by reason"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'text-anchor="end">([^<]+)</text>', chart)
    values = [int(v) for v in re.findall(r'<text class="value"[^>]*>(\d+)</text>', chart)]
    assert dict(zip(labels, values)) == dict(store.refusal_counts(result.crawl_id))
    summary = dom.split('id="summary"', 1)[1].split("</table>", 1)[0]
    assert re.search(rf"pages stored</td><td class=\"n\">{store.count_items()}</td>", summary)
    assert re.search(r"purges</td><td class=\"n\">1</td>", summary)
    assert 'id="ledger-status">intact:' in dom
    assert "cd-shop" in dom.split('id="notices"', 1)[1]
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 20_000, "a rendered page, not a blank one"
    assert json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))["stored_total"] == store.count_items()
