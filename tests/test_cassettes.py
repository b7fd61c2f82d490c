"""vcrpy cassettes: recorded from the test web, replayed through real crawls offline; the terms audit on cassettes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from crawler.compliance.store import Store
from crawler.testing.runner import policy_dir_with_pace, run_site_crawl, scrapy_command
from crawler.testing.sites import TEST_CONTACT, page, robots
from crawler.testing.web import StaticSite, TestWeb

from conftest import GUARD_ENV

TERMS = "<html><body><h1>Terms</h1><p>No scraping without written consent.</p></body></html>"


def recorded_site() -> dict[str, StaticSite]:
    return {
        "rec.test": StaticSite({
            "/robots.txt": robots("User-agent: *\nDisallow: /private/\n"),
            "/": page("home", ["/a", "/private/x", "/missing"]), "/a": page("a"), "/private/x": page("private"),
        }),  # fmt: skip
        "terms.test": StaticSite({"/tos": TERMS, "/robots.txt": robots("User-agent: *\nAllow: /\n")}),  # type: ignore[dict-item]
    }


def record(web: TestWeb, tmp: Path, *urls: str) -> Path:
    cassette = tmp / "site.yaml"
    done = scrapy_command(["cassette", "record", *urls, "-o", str(cassette)], web=web,
                          settings={"COMPLIANCE_CONTACT": TEST_CONTACT}, env=GUARD_ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return cassette


def test_record_writes_a_vcrpy_cassette_and_respects_robots(tmp_path: Path) -> None:
    """`scrapy cassette record` fetches robots.txt, tdmrep.json and the pages robots.txt allows, in vcrpy's format."""
    with TestWeb(recorded_site()) as web:
        cassette = record(web, tmp_path, "http://rec.test/", "http://rec.test/a", "http://rec.test/private/x")
        seen = web.paths("rec.test")
    assert seen == ["/robots.txt", "/.well-known/tdmrep.json", "/", "/a"], "the disallowed page was not fetched"
    data = yaml.safe_load(cassette.read_text())
    assert data["version"] == 1
    uris = [i["request"]["uri"] for i in data["interactions"]]
    assert uris == ["http://rec.test/robots.txt", "http://rec.test/.well-known/tdmrep.json", "http://rec.test/", "http://rec.test/a"]
    assert data["interactions"][0]["request"]["headers"]["User-Agent"][0].startswith("EthicalCrawler/")


def test_replay_crawls_offline_and_fails_loudly_on_a_miss(tmp_path: Path, store_url: str) -> None:
    """A crawl replays the cassette with no server running; a request missing from it fails the crawl, naming it."""
    with TestWeb(recorded_site()) as web:
        cassette = record(web, tmp_path, "http://rec.test/", "http://rec.test/a")
    policies = policy_dir_with_pace(tmp_path / "policies")
    # No test web now: any network access would fail (and the guard forbids it anyway).
    settings = {"COMPLIANCE_CASSETTE": str(cassette), "COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_STORE": store_url}
    run = run_site_crawl(None, ["http://rec.test/"], store_url, settings=settings, env=GUARD_ENV)  # type: ignore[arg-type]
    assert run.returncode == 1
    assert "error: cassette miss: GET http://rec.test/missing is not in the cassette" in run.stderr
    stored = {i["url"] for i in Store(store_url).iter_items()}
    assert stored == {"http://rec.test/", "http://rec.test/a"}
    assert "robots.disallow" in {r["reason"] for r in Store(store_url).refusals()}  # /private/x, from the recorded robots.txt


def test_policy_audit_on_cassettes(tmp_path: Path) -> None:
    """`scrapy policy audit` reports unchanged, changed and not-recorded terms from a cassette (exit 1 unless all unchanged)."""
    with TestWeb(recorded_site()) as web:
        cassette = record(web, tmp_path, "http://terms.test/tos")
    policies = policy_dir_with_pace(tmp_path / "policies")
    digest = hashlib.sha256(TERMS.encode()).hexdigest()

    def write(sha: str | None) -> None:
        (policies / "platforms" / "termsco.yaml").write_text(
            "id: termsco\nname: TermsCo\nowner: TermsCo Inc.\ndomains: [terms.test]\ncollection: forbidden\n"
            "terms:\n  url: http://terms.test/tos\n  clause: No scraping.\n  reviewed: 2026-11-01\n"
            + (f'  sha256: "{sha}"\n' if sha else ""), encoding="utf-8")  # fmt: skip

    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_CONTACT": TEST_CONTACT}
    write(digest)
    done = scrapy_command(["policy", "audit", "--platform", "termsco", "--cassette", str(cassette)], settings=settings, env=GUARD_ENV)
    assert done.returncode == 0 and done.stdout.startswith("termsco") and "unchanged since review (robots.txt allows us)" in done.stdout, done.stdout
    write("0" * 64)
    done = scrapy_command(["policy", "audit", "--platform", "termsco", "--cassette", str(cassette), "--json"], settings=settings, env=GUARD_ENV)
    assert done.returncode == 1
    finding = json.loads(done.stdout[: done.stdout.rindex("]") + 1])[0]
    assert finding["status"] == "changed" and finding["current_sha256"] == digest and finding["source"].endswith("termsco.yaml:10")
    write(None)
    done = scrapy_command(["policy", "audit", "--platform", "termsco", "--cassette", str(cassette)], settings=settings, env=GUARD_ENV)
    assert done.returncode == 1 and f"NOT RECORDED: read the terms, then set terms.sha256: {digest}" in done.stdout
    empty = tmp_path / "empty.yaml"
    empty.write_text("interactions: []\nversion: 1\n")
    done = scrapy_command(["policy", "audit", "--cassette", str(empty)], settings=settings, env=GUARD_ENV)
    assert done.returncode == 1 and "UNREACHABLE: CannotOverwriteExistingCassetteException" in done.stdout


def test_record_never_writes_an_image_into_the_cassette(tmp_path: Path) -> None:
    """Answers that are images by their headers or by their bytes (even a tdmrep.json) are fetched but never recorded."""
    from crawler.testing.sites import JPEG, PNG
    from crawler.testing.web import WebResponse

    sites = {"pics.test": StaticSite({
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/.well-known/tdmrep.json": WebResponse(headers=[("Content-Type", "application/json")], body=PNG),
        "/": page("home"), "/avatar": WebResponse(headers=[("Content-Type", "image/png")], body=PNG),
        "/photo": WebResponse(headers=[("Content-Type", "application/octet-stream")], body=JPEG),
    })}  # type: ignore[dict-item]  # fmt: skip
    with TestWeb(sites) as web:
        cassette = tmp_path / "pics.yaml"
        done = scrapy_command(["cassette", "record", "http://pics.test/", "http://pics.test/avatar", "http://pics.test/photo",
                               "-o", str(cassette)], web=web, settings={"COMPLIANCE_CONTACT": TEST_CONTACT}, env=GUARD_ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    uris = [i["request"]["uri"] for i in yaml.safe_load(cassette.read_text())["interactions"]]
    assert uris == ["http://pics.test/robots.txt", "http://pics.test/"]
    assert cassette.read_bytes().find(PNG[:8]) < 0 and cassette.read_bytes().find(JPEG[:3]) < 0
    assert done.stdout.count("not recorded: an image answer") == 3
