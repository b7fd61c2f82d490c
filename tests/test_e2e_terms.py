"""End-to-end: platform terms enforced before any request, live policy edits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.testing.runner import run_site_crawl, start_site_crawl
from crawler.testing.sites import platform_sites, robots_sites
from crawler.testing.web import TestWeb

PLATFORM_HOSTS = ["www.facebook.com", "m.facebook.com", "www.instagram.com", "twitter.com", "x.com",
                  "www.youtube.com", "www.linkedin.com", "venmo.com"]  # fmt: skip


def policy(pid: str, domain: str, collection: str, consents: str = "") -> str:
    return (
        f"id: {pid}\nname: {pid}\nowner: {pid} Inc.\ndomains: [{domain}]\n"
        f"terms:\n  url: https://{domain}/terms\n  clause: Robots need a contract.\n  reviewed: 2026-11-01\n"
        f"collection: {collection}\n{consents}"
    )


@pytest.fixture
def tweb() -> Iterator[TestWeb]:
    sites = {**robots_sites(), **platform_sites()}
    with TestWeb(sites) as server:
        yield server
        assert not server.unknown_hosts()


def refusals_in(store_url: str) -> list[dict]:
    from crawler.compliance.store import Store

    store = Store(store_url)
    try:
        return store.refusals()
    finally:
        store.dispose()


def refusals(run) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r["url"]: r for r in run.store.refusals()}


def test_platforms_get_zero_requests(tweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """Start URLs on platforms under consent-required terms send them nothing, not even robots.txt; others are crawled."""
    urls = [f"http://{h}/" for h in PLATFORM_HOSTS] + ["https://www.instagram.com/someone", "http://shop.test/", "http://hop.test/"]
    run = run_site_crawl(tweb, urls, store_url, settings={"COMPLIANCE_POLICY_DIR": str(policy_dir)}, env=guard_env).check()
    for host in PLATFORM_HOSTS:
        assert tweb.requests(host=host) == [], host
    assert "/products/1" in tweb.paths("shop.test")
    # A redirect to a platform is refused the same way, before the queue.
    assert sorted(tweb.paths("hop.test")) == sorted(["/robots.txt", "/.well-known/tdmrep.json", "/", "/go"])
    seen = refusals(run)
    venmo = seen["http://venmo.com/"]
    assert (venmo["reason"], venmo["gate"]) == ("terms.consent-required", "schedule")
    assert venmo["source"].endswith("platforms/venmo.yaml:17") and "venmo.com/legal/us-user-agreement" in venmo["rule"]
    facebook = [r for r in run.store.refusals() if r["url"] == "http://www.facebook.com/"]
    assert {r["reason"] for r in facebook} == {"terms.consent-required"}
    assert {r["detail"] for r in facebook} == {"", "redirect target of http://hop.test/go"}
    assert "compliance/refused/terms.consent-required" in run.stderr


def test_consent_allows_and_expired_consent_refuses(tweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """A valid consent opens its paths only; an expired one refuses with the date it expired."""
    (policy_dir / "platforms" / "partner.yaml").write_text(policy(
        "partner", "partner.test", "consent-required",
        "consents:\n  - granted_by: Partner legal\n    reference: CONTRACT-7\n    paths: [/$, /public/, /robots.txt]\n"
        "    valid_from: 2026-01-01\n    valid_until: 2099-12-31\n",
    ))  # fmt: skip
    (policy_dir / "platforms" / "expired.yaml").write_text(policy(
        "expired", "expired.test", "consent-required",
        "consents:\n  - granted_by: Expired legal\n    reference: LETTER-1\n    valid_from: 2024-01-01\n    valid_until: 2025-01-31\n",
    ))  # fmt: skip
    run = run_site_crawl(
        tweb, ["http://partner.test/", "http://expired.test/"], store_url,
        settings={"COMPLIANCE_POLICY_DIR": str(policy_dir)}, env=guard_env,
    ).check()  # fmt: skip
    # The consent's paths include /robots.txt; /.well-known/tdmrep.json is outside them, so it is refused too.
    assert sorted(tweb.paths("partner.test")) == sorted(["/robots.txt", "/", "/public/a", "/public/b"])
    assert tweb.requests(host="expired.test") == []
    seen = refusals(run)
    assert seen["http://partner.test/members/x"]["reason"] == "terms.consent-required"
    expired = seen["http://expired.test/"]
    assert expired["reason"] == "terms.consent-expired" and "expired on 2025-01-31" in expired["rule"]


def test_invalid_policies_stop_the_crawl_before_any_request(tweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """An invalid policy file stops the crawl with the report and a non-zero exit; nothing is requested."""
    (policy_dir / "platforms" / "bad.yaml").write_text("id: bad\ncollection: maybe\n")
    run = run_site_crawl(tweb, ["http://shop.test/"], store_url, settings={"COMPLIANCE_POLICY_DIR": str(policy_dir)}, env=guard_env)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "bad.yaml:2: collection: must be" in run.stderr
    assert tweb.log == []


def test_policy_edits_apply_within_seconds(tweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict, tmp_path: Path) -> None:
    """A policy made stricter mid-crawl applies within 2 s; a broken edit keeps the last valid policy."""
    locked = policy_dir / "platforms" / "locked.yaml"
    locked.write_text(policy("locked", "locked.test", "forbidden"))
    process = start_site_crawl(
        tweb, ["http://edited.test/"], store_url, settings={"COMPLIANCE_POLICY_DIR": str(policy_dir)},
        env=guard_env, log_path=tmp_path / "crawl.log",
    )  # fmt: skip
    try:
        tweb.wait_for_requests("edited.test", 4, timeout=30, process=process)
        # A broken edit of locked.yaml must not open locked.test up.
        locked.write_text("id: locked\ncollection: [broken\n")
        time.sleep(1.5)
        (policy_dir / "platforms" / "edited.yaml").write_text(policy("edited", "edited.test", "forbidden"))
        edited_at = time.time()
        assert process.wait(60) == 0
    finally:
        process.kill()
    log = (tmp_path / "crawl.log").read_text()
    assert tweb.requests(host="locked.test") == []
    late = [e for e in tweb.requests(host="edited.test") if e.time > edited_at + 2.0]
    assert late == [], [(e.path, round(e.time - edited_at, 2)) for e in late]
    # The chain was cut short by the edit: the page it refused was never sent (order, not a count).
    cut = [r["url"] for r in refusals_in(store_url) if r["reason"] == "terms.forbidden" and r["host"] == "edited.test"]
    assert cut, "the edited policy refused the next page of the chain"
    sent = {f"http://edited.test{e.path}" for e in tweb.requests(host="edited.test")}
    assert not set(cut) & sent
    assert "Policy files are invalid; the last valid policies stay in force" in log and "locked.yaml:3:1: YAML syntax error" in log
    assert "compliance/refused/terms.forbidden" in log
