"""A notice filed mid-crawl from another process: the host goes quiet, and its data is gone everywhere."""

from __future__ import annotations

import contextlib
import json
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.compliance.policy import SHIPPED
from crawler.compliance.ledger import verify
from crawler.compliance.store import Store
from crawler.testing.runner import policy_dir_with_pace, run_site_crawl, scrapy_command, start_site_crawl
from crawler.testing.sites import notice_sites
from crawler.testing.plugin import serving
from crawler.testing.web import TestWeb

from conftest import GUARD_ENV

SCOPE_HOSTS = ("bigsocial.test", "people.bigsocial.test")


@pytest.fixture
def social_web() -> Any:
    with serving(notice_sites()) as server:
        yield server


def cached_urls(cache: Path, backend: str) -> list[str]:
    if backend == "filesystem":
        return [pickle.load(p.open("rb"))["url"] for p in cache.glob("site/*/*/pickled_meta")]
    import dbm

    with dbm.open(str(cache / "site.db"), "r") as db:
        return [pickle.loads(db[k])["url"] for k in db.keys() if k.endswith(b"_data")]


def notice_add(web: TestWeb, settings: dict[str, Any], *args: str) -> tuple[float, Any]:
    done = scrapy_command(["notice", "add", *args], web=web, settings=settings, env=GUARD_ENV)
    returned = time.time()
    assert done.returncode == 0, done.stderr[-3000:]
    return returned, json.loads(done.stdout)


@pytest.mark.parametrize("backend", ["filesystem", "dbm"])
def test_notice_mid_crawl_stops_host_and_purges_everywhere(social_web: TestWeb, tmp_path: Path, any_store_url: str, backend: str) -> None:
    """Filed from another process mid-crawl: no request starts >1 s later; store, cache and feed hold nothing in scope."""
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    feed = tmp_path / "items.jl"
    cache = tmp_path / "cache"
    storage = "FilesystemCacheStorage" if backend == "filesystem" else "DbmCacheStorage"
    settings = {
        "COMPLIANCE_POLICY_DIR": str(policies), "HTTPCACHE_ENABLED": True, "HTTPCACHE_DIR": str(cache),
        "HTTPCACHE_STORAGE": f"scrapy.extensions.httpcache.{storage}",
        "FEEDS": json.dumps({str(feed): {"format": "jsonlines"}}),
    }  # fmt: skip
    crawl = start_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url,
                             settings=settings, env=GUARD_ENV, log_path=tmp_path / "crawl.log")  # fmt: skip
    social_web.wait_for_requests("bigsocial.test", 30, process=crawl)
    assert crawl.poll() is None, "the crawl ended before the notice could be filed"
    returned, result = notice_add(
        social_web, {"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)},
        "--domain", "bigsocial.test", "--sender", "BigSocial Inc., Legal", "--received", "2026-11-26", "--id", "cd-bigsocial",
    )  # fmt: skip
    assert crawl.wait(120) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    log = (tmp_path / "crawl.log").read_text()

    late = [(round(e.time - returned, 3), e.host, e.path) for e in social_web.log if e.host in SCOPE_HOSTS and e.time > returned + 1.0]
    assert not late, f"requests to the noticed host started more than 1 s after `notice add` returned: {late[:5]}"
    assert "notice.cd-bigsocial" in log
    assert result["notice"]["type"] == "Other" and result["notice"]["tags"] == ["cease-and-desist"]
    assert result["purge"]["notice_id"] == "cd-bigsocial"

    store = Store(store_url)
    assert store.count_items("bigsocial.test") == 0
    assert store.count_items("bystander.test") == 11, "a host crawled in the same run keeps its items"
    feed_urls = [json.loads(line)["url"] for line in feed.read_text().splitlines()]
    assert feed_urls and not [u for u in feed_urls if "bigsocial.test" in u]
    assert len([u for u in feed_urls if "bystander.test" in u]) == 11
    cached = cached_urls(cache, backend)
    assert any("bystander.test" in u for u in cached)
    assert not [u for u in cached if "bigsocial.test" in u]
    assert verify(store.ledger_entries(), store.ledger_head()).ok
    kinds = [e.kind for e in store.ledger_entries()]
    assert kinds[:3] == ["notice.added", "purge.started", "purge.completed"] and "purge.completed-by-crawl" in kinds
    shown = json.loads(scrapy_command(["notice", "show", "cd-bigsocial"], settings={"COMPLIANCE_STORE": store_url,
                                                                                   "COMPLIANCE_POLICY_DIR": str(policies)}).stdout)  # fmt: skip
    [purge] = shown["purges"]
    assert purge["ledger"]["in_ledger"] is True
    assert {c["location"].split(":", 1)[0] for c in purge["applied_by_crawls"]} >= {"feed"}, purge["applied_by_crawls"]

    social_web.clear_log()
    again = run_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url,
                           settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV).check()  # fmt: skip
    assert social_web.paths("bigsocial.test") == [] and social_web.paths("people.bigsocial.test") == []
    assert "compliance/refused/notice.cd-bigsocial" in again.stderr
    verified = scrapy_command(["purge", "--notice", "cd-bigsocial", "--dry-run", "--verify", "-s", f"COMPLIANCE_STORE={store_url}",
                               "-s", f"COMPLIANCE_POLICY_DIR={policies}"])  # fmt: skip
    assert verified.returncode == 0, verified.stdout


def test_jobdir_queues_lose_in_scope_requests_and_resume_sends_nothing(social_web: TestWeb, tmp_path: Path, any_store_url: str) -> None:
    """Pending requests in a JOBDIR are purged from its disk queues; the resumed crawl never asks the host."""
    store_url = any_store_url
    import shutil

    from queuelib.queue import LifoDiskQueue

    policies = policy_dir_with_pace(tmp_path / "policies", 0, 2)
    jobdir = tmp_path / "job"
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "JOBDIR": str(jobdir), "CLOSESPIDER_PAGECOUNT": 4}
    first = run_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url,
                           settings=settings, env=GUARD_ENV)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]

    def pending() -> list[str]:
        """URLs waiting in the job's disk queues, read from a copy with queuelib (reading pops)."""
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(jobdir, copy)
        urls = []
        for path in (copy / "requests.queue").rglob("*"):
            if path.is_file() and path.suffix != ".json":
                queue = LifoDiskQueue(str(path))
                while (record := queue.pop()) is not None:
                    urls.append(pickle.loads(record)["url"])  # noqa: S301
                queue.close()
        return urls

    before = pending()
    assert any("bigsocial.test" in u for u in before), before
    _, result = notice_add(social_web, {"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)},
                           "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26")  # fmt: skip
    removed = result["purge"]["counts"][f"jobdir:{jobdir.resolve()}"]
    assert removed == len([u for u in before if "bigsocial.test" in u])
    after = pending()
    assert after and not [u for u in after if "bigsocial.test" in u]
    assert sorted(after) == sorted(u for u in before if "bigsocial.test" not in u)

    social_web.clear_log()
    settings["CLOSESPIDER_PAGECOUNT"] = 0
    resumed = run_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url,
                             settings=settings, env=GUARD_ENV).check()  # fmt: skip
    assert social_web.paths("bigsocial.test") == [] and social_web.paths("people.bigsocial.test") == []
    assert social_web.paths("bystander.test"), resumed.stderr[-2000:]


def test_notice_commands_list_show_withdraw_and_policy_check(social_web: TestWeb, tmp_path: Path, any_store_url: str) -> None:
    """list/show/withdraw work from the CLI; `policy check` names the notice; withdrawal never restores data."""
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = {"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)}
    run_site_crawl(social_web, ["http://bystander.test/"], store_url, settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV).check()
    _, result = notice_add(social_web, settings, "--domain", "bystander.test", "--sender", "Bystander LLC", "--received",
                           "2026-11-25", "--type", "DataProtection", "--id", "dp-1")  # fmt: skip
    assert result["notice"]["type"] == "DataProtection" and result["purge"]["counts"]["store"] == 11
    assert (policies / "notices" / "dp-1.yaml").is_file()
    assert scrapy_command(["policy", "validate", str(policies)]).returncode == 0

    listed = scrapy_command(["notice", "list"], settings=settings)
    assert "dp-1" in listed.stdout and "DataProtection" in listed.stdout and "domain bystander.test" in listed.stdout
    shown = json.loads(scrapy_command(["notice", "show", "dp-1"], settings=settings).stdout)
    assert shown["notice"]["sender_name"] == "Bystander LLC" and shown["purges"][0]["total_deleted"] == 11
    # The receipt shown is the one chained in the ledger, named by seq and hash.
    proof = shown["purges"][0]["ledger"]
    entry = next(e for e in Store(store_url).ledger_entries() if e.seq == proof["seq"])
    assert proof["in_ledger"] is True and (entry.kind, entry.hash) == ("purge.completed", proof["hash"])
    assert shown["purges"][0]["applied_by_crawls"] == []

    check = scrapy_command(["policy", "check", "http://bystander.test/b/1"], settings=settings)
    assert "REFUSED: notice.dp-1" in check.stdout and "dp-1.yaml" in check.stdout

    again = scrapy_command(["notice", "add", "--domain", "bystander.test", "--sender", "Someone else", "--received", "2026-11-25", "--id", "dp-1"], settings=settings)
    assert again.returncode == 1 and "already" in again.stderr and "Traceback" not in again.stderr

    withdrawn = scrapy_command(["notice", "withdraw", "dp-1", "--reason", "sender retracted"], settings=settings)
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert "status: withdrawn" in (policies / "notices" / "dp-1.yaml").read_text()
    store = Store(store_url)
    assert store.count_items("bystander.test") == 0, "withdrawal never restores purged data"
    assert [e.kind for e in store.ledger_entries()][-1] == "notice.withdrawn"
    assert "ALLOWED" in scrapy_command(["policy", "check", "http://bystander.test/b/1"], settings=settings).stdout
    social_web.clear_log()
    run_site_crawl(social_web, ["http://bystander.test/"], store_url, settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV).check()
    assert "/b/1" in social_web.paths("bystander.test"), "blocking stops after withdrawal"

    # Filed again after the withdrawal: a new notice (not the withdrawn one "resumed"), in force, with a purge.
    _, refiled = notice_add(social_web, settings, "--domain", "bystander.test", "--sender", "Bystander LLC", "--received",
                            "2026-11-25", "--type", "DataProtection")  # fmt: skip
    assert refiled["recorded"] == "new" and refiled["notice"]["id"] != "dp-1" and refiled["notice"]["status"] == "active"
    assert refiled["purge"]["counts"]["store"] == 11
    assert "REFUSED: notice." + refiled["notice"]["id"] in scrapy_command(["policy", "check", "http://bystander.test/b/1"], settings=settings).stdout
    same_id = scrapy_command(["notice", "add", "--domain", "bystander.test", "--sender", "Bystander LLC", "--received", "2026-11-25",
                              "--type", "DataProtection", "--id", "dp-1"], settings=settings)  # fmt: skip
    assert same_id.returncode == 1 and "'dp-1' is already recorded (and withdrawn)" in same_id.stderr


def test_hand_filed_notice_file_blocks_without_the_store(social_web: TestWeb, tmp_path: Path, any_store_url: str) -> None:
    """A notice file someone wrote by hand (never recorded) still blocks crawls reading that directory."""
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies")
    (policies / "notices").mkdir()
    (policies / "notices" / "by-hand.yaml").write_text(
        "id: by-hand\ntype: Other\ntags: [cease-and-desist]\nsender_name: People Inc.\ndate_received: 2026-11-01\n"
        "scope:\n  url_patterns: ['http://people.bigsocial.test/p/*']\neffective_at: 2026-11-01T00:00:00Z\n",
        encoding="utf-8",
    )
    run = run_site_crawl(social_web, ["http://people.bigsocial.test/"], store_url,
                         settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV).check()  # fmt: skip
    seen = social_web.paths("people.bigsocial.test")
    assert "/" in seen and "/p/1" not in seen and "/p/2" not in seen
    assert "compliance/refused/notice.by-hand" in run.stderr
    broken = policies / "notices" / "broken.yaml"
    broken.write_text("id: broken\nsender_name: X\n", encoding="utf-8")
    refused = run_site_crawl(social_web, ["http://people.bigsocial.test/"], store_url,
                             settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV)  # fmt: skip
    assert refused.returncode == 2 and "broken.yaml:1: date_received: required field is missing" in refused.stderr


def test_consent_changes_are_recorded_in_the_ledger(social_web: TestWeb, tmp_path: Path, any_store_url: str) -> None:
    """A crawl records each platform's consents when they change (and only then), in the hash chain."""
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = {"COMPLIANCE_POLICY_DIR": str(policies)}
    run_site_crawl(social_web, ["http://bystander.test/"], store_url, settings=settings, env=GUARD_ENV).check()
    store = Store(store_url)
    assert [e.kind for e in store.ledger_entries()] == [], "no platform ships with a consent: nothing to record"
    # The project's own copy of the shipped Meta policy, now with a consent (it replaces the shipped one).
    meta = policies / "platforms" / "meta.yaml"
    meta.write_text((SHIPPED / "platforms" / "meta.yaml").read_text().replace("consents: []\n", 
        "consents:\n  - granted_by: Meta Platforms, Inc.\n    reference: LTR-1\n"
        "    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n"), encoding="utf-8")  # fmt: skip
    assert "LTR-1" in meta.read_text()
    for _ in range(2):
        run_site_crawl(social_web, ["http://bystander.test/"], store_url, settings=settings, env=GUARD_ENV).check()
    entries = list(store.ledger_entries())
    assert [e.kind for e in entries] == ["consent.changed"], "recorded once, not once per crawl"
    payload = json.loads(entries[0].payload)
    assert payload["platform"] == "meta" and payload["consents"][0]["reference"] == "LTR-1"
    assert verify(entries, store.ledger_head()).ok


def test_requests_waiting_in_the_download_slot_die_when_dequeued(social_web: TestWeb, tmp_path: Path, any_store_url: str) -> None:
    """Crawl-delay keeps requests waiting in the download slot; after the notice none of them is sent.

    Decided on order and cause, never on how fast the machine is: nothing
    reaches the server later than the documented second after `notice add`
    returned, the transfer gate refused requests, and not one of those ever
    reached the server.
    """
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 16)
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 16}
    crawl = start_site_crawl(social_web, ["http://paced.test/"], store_url, settings=settings, env=GUARD_ENV,
                             log_path=tmp_path / "crawl.log")  # fmt: skip
    social_web.wait_for_requests("paced.test", 4, process=crawl)
    returned, _ = notice_add(social_web, {"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)},
                             "--domain", "paced.test", "--sender", "Paced", "--received", "2026-11-26")  # fmt: skip
    assert crawl.wait(60) == 0
    log = (tmp_path / "crawl.log").read_text()
    late = [round(e.time - returned, 2) for e in social_web.log if e.host == "paced.test" and e.time > returned + 1.0]
    assert not late, f"requests sent after the notice, at +{late} s"
    assert "at transfer" in log, "the requests waiting in the slot were refused by the transfer gate"
    store = Store(store_url)
    at_transfer = {r["url"] for r in store.refusals() if r["gate"] == "transfer" and r["host"] == "paced.test"}
    store.dispose()
    assert at_transfer, "the notice arrived while requests waited in the slot (400 pages outlast any notice add)"
    sent = {f"http://paced.test{e.path}" for e in social_web.requests(host="paced.test")}
    assert not at_transfer & sent, f"refused at transfer, yet sent: {sorted(at_transfer & sent)[:5]}"


def test_invalid_notice_file_mid_crawl_stops_the_crawl(social_web: TestWeb, tmp_path: Path, store_url: str) -> None:
    """A notice file that does not validate mid-crawl: the crawl pauses at once and stops (fail closed), exit 2."""
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    (policies / "notices").mkdir()
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_POLICY_RELOAD_INTERVAL": 0.5}
    crawl = start_site_crawl(social_web, ["http://bigsocial.test/"], store_url, settings=settings, env=GUARD_ENV,
                             log_path=tmp_path / "crawl.log")  # fmt: skip
    social_web.wait_for_requests("bigsocial.test", 20, process=crawl)
    assert crawl.poll() is None, "the crawl ended before the notice file could be written"
    (policies / "notices" / "late.yaml").write_text("id: late\nsender_name: X\nscope:\n  domains: [bigsocial.test]\n")
    written = time.time()
    assert crawl.wait(60) == 2
    log = (tmp_path / "crawl.log").read_text()
    assert "late.yaml:1: date_received: required field is missing" in log
    assert "Notice files are invalid; the crawl is paused" in log and "Notice files are still invalid; the crawl stops" in log
    assert "error: crawl stopped: invalid notice file: " in log and "'finish_reason': 'notice_file_invalid'" in log
    # Paused on first sight (within one reload interval), so nothing new starts after that.
    late = [(round(e.time - written, 2), e.path) for e in social_web.requests(host="bigsocial.test") if e.time > written + 1.0]
    assert not late, late


def test_notice_file_fixed_within_the_grace_lets_the_crawl_go_on(social_web: TestWeb, tmp_path: Path, store_url: str) -> None:
    """A half-written notice file that is valid on the next read pauses the crawl only; the new notice then blocks."""
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    (policies / "notices").mkdir()
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_POLICY_RELOAD_INTERVAL": 1.0}
    crawl = start_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url, settings=settings,
                             env=GUARD_ENV, log_path=tmp_path / "crawl.log")  # fmt: skip
    social_web.wait_for_requests("bigsocial.test", 20, process=crawl)
    assert crawl.poll() is None, "the crawl ended before the notice file could be written"
    notice = policies / "notices" / "typo.yaml"
    notice.write_text("id: typo\nsender_name: BigSocial\nscope:\n  domains: [bigsocial.test\n")
    log_path = tmp_path / "crawl.log"
    deadline = time.time() + 10
    while "the crawl is paused" not in log_path.read_text() and time.time() < deadline:
        time.sleep(0.02)
    notice.write_text(
        "id: typo\ntype: Other\nsender_name: BigSocial\ndate_received: 2026-11-26\nscope:\n  domains: [bigsocial.test]\n"
        "effective_at: 2026-11-26T00:00:00Z\n"
    )
    fixed = time.time()
    assert crawl.wait(120) == 0, log_path.read_text()[-3000:]
    log = log_path.read_text()
    assert "Notice files are valid again; the crawl resumes" in log and "still invalid" not in log
    assert "compliance/refused/notice.typo" in log
    assert not [e for e in social_web.requests(host="bigsocial.test") if e.time > fixed + 1.0]
    assert len(social_web.paths("bystander.test")) >= 11, "the crawl went on for the host outside the notice"


def test_a_notice_withdrawn_behind_the_ledgers_back_still_blocks_the_next_crawl(
    social_web: TestWeb, tmp_path: Path, any_store_url: str
) -> None:
    """The report's probe: the registry row set to withdrawn directly in the store. The crawl sends the host nothing and says why."""
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = {"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)}
    notice_add(social_web, settings, "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26",
               "--id", "cd-tampered", "--keep-existing")  # fmt: skip
    (policies / "notices" / "cd-tampered.yaml").unlink()  # the file cannot help: only the store speaks
    import sqlalchemy as sa

    from crawler.compliance.store import notices

    store = Store(store_url)
    with store.engine.begin() as conn:  # the column and the record alike, as a careful tamperer would
        data = conn.execute(sa.select(notices.c.data)).scalar_one()
        conn.execute(notices.update().values(status="withdrawn",
                                             data={**data, "status": "withdrawn", "withdrawn_at": "2026-11-27T00:00:00Z"}))  # fmt: skip
    store.dispose()
    social_web.clear_log()
    run = run_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url,
                         settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV).check()  # fmt: skip
    assert social_web.paths("bigsocial.test") == [] and social_web.paths("people.bigsocial.test") == []
    assert len(social_web.paths("bystander.test")) >= 11
    assert "Notice cd-tampered: the registry disagrees with the ledger (tampering?): status is 'withdrawn'" in run.stderr
    assert "compliance/refused/notice.cd-tampered" in run.stderr and "compliance/notices/tampered" in run.stderr
    verified = scrapy_command(["ledger", "verify"], settings={"COMPLIANCE_STORE": store_url})
    assert verified.returncode == 1 and "registry DISAGREES with the ledger: notice cd-tampered" in verified.stdout


def test_a_deeply_nested_notice_file_mid_crawl_stops_it_and_a_later_notice_still_blocks(
    social_web: TestWeb, tmp_path: Path, store_url: str
) -> None:
    """The report's 665-byte, 330-level file dropped into notices/ mid-crawl: paused, stopped (exit 2), one clear line.

    A valid notice filed right after it still blocks: the server sees nothing
    of its host later than the documented second after `notice add` returned.
    """
    deep = "id: " + "[" * 330 + "]" * 330 + "\n"
    assert len(deep.encode()) == 665
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    (policies / "notices").mkdir()
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_POLICY_RELOAD_INTERVAL": 0.5}
    log_path = tmp_path / "crawl.log"
    crawl = start_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], store_url, settings=settings,
                             env=GUARD_ENV, log_path=log_path)  # fmt: skip
    social_web.wait_for_requests("bigsocial.test", 20, process=crawl)
    assert crawl.poll() is None, "the crawl ended before the file could be dropped"
    (policies / "notices" / "deep.yaml").write_text(deep)
    written = time.time()
    returned, _ = notice_add(social_web, {"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)},
                             "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26",
                             "--id", "after-deep", "--keep-existing")  # fmt: skip
    assert crawl.wait(60) == 2, log_path.read_text()[-3000:]
    log = log_path.read_text()
    assert "RecursionError" not in log and "Traceback" not in log, log[-3000:]
    assert f"{policies}/notices/deep.yaml:1: nested deeper than 32" in log
    assert "Notice files are invalid; the crawl is paused" in log and "Notice files are still invalid; the crawl stops" in log
    assert "'finish_reason': 'notice_file_invalid'" in log
    late = [(round(e.time - returned, 2), e.host, e.path) for e in social_web.log if e.host in SCOPE_HOSTS and e.time > returned + 1.0]
    assert not late, f"requests to the noticed host after `notice add` returned: {late[:5]}"
    # Paused on first sight of the file (within one reload interval): nothing new starts after that.
    paused = [(round(e.time - written, 2), e.host, e.path) for e in social_web.log if e.time > written + 1.0]
    assert not paused, paused[:5]


def test_a_notice_reload_that_fails_for_any_reason_pauses_then_stops(social_web: TestWeb, tmp_path: Path, store_url: str) -> None:
    """A reload that raises what no validation foresees counts as invalid notice files: paused at once, then exit 2."""
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    (policies / "notices").mkdir()
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_POLICY_RELOAD_INTERVAL": 0.5}
    log_path = tmp_path / "crawl.log"
    # COMPLIANCE_FAULT=notice-reload: every reload of the notice files raises (the crawl's start-up check does not).
    crawl = start_site_crawl(social_web, ["http://bigsocial.test/"], store_url, settings=settings,
                             env={**GUARD_ENV, "COMPLIANCE_FAULT": "notice-reload"}, log_path=log_path)  # fmt: skip
    social_web.wait_for_requests("bigsocial.test", 20, process=crawl)
    assert crawl.poll() is None, "the crawl ended before the notice file could be written"
    (policies / "notices" / "valid.yaml").write_text(
        "id: valid\ntype: Other\nsender_name: BigSocial\ndate_received: 2026-11-26\nscope:\n  domains: [bigsocial.test]\n"
        "effective_at: 2026-11-26T00:00:00Z\n"
    )
    written = time.time()
    assert crawl.wait(60) == 2, log_path.read_text()[-3000:]
    log = log_path.read_text()
    assert "notices: could not be read (RuntimeError: COMPLIANCE_FAULT=notice-reload" in log
    assert "Notice files are invalid; the crawl is paused" in log and "'finish_reason': 'notice_file_invalid'" in log
    late = [(round(e.time - written, 2), e.path) for e in social_web.requests(host="bigsocial.test") if e.time > written + 1.0]
    assert not late, late


class CuttableProxy:
    """A TCP relay to PostgreSQL that a test can cut (a network partition) and heal; a real socket, not a mock."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target, self.cut_now, self.sockets = target, False, []
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut_now:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: Any, b: Any) -> None:
        import socket

        try:
            while (data := a.recv(65536)) and not self.cut_now:
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        import socket

        self.cut_now = True
        for s in list(self.sockets):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        self.cut_now = False

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def pg_store_url() -> Any:
    import conftest

    yield from conftest.postgres_schema_url()


def test_crawl_that_cannot_read_the_registry_pauses_and_loses_nothing(social_web: TestWeb, tmp_path: Path, pg_store_url: str) -> None:
    """The store becomes unreachable mid-crawl and a notice is filed meanwhile: nothing in scope starts, nothing is lost."""
    from urllib.parse import urlsplit

    import conftest

    direct = pg_store_url
    parts = urlsplit(conftest.POSTGRES_URL)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    via_proxy = direct.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}")
    policies = policy_dir_with_pace(tmp_path / "policies", 0.05, 2)
    try:
        crawl = start_site_crawl(social_web, ["http://bigsocial.test/", "http://bystander.test/"], via_proxy,
                                 settings={"COMPLIANCE_POLICY_DIR": str(policies)}, env=GUARD_ENV,
                                 log_path=tmp_path / "crawl.log")  # fmt: skip
        social_web.wait_for_requests("bigsocial.test", 30, process=crawl)
        assert crawl.poll() is None, "the crawl ended before the store could be cut off"
        proxy.cut()
        elsewhere = policy_dir_with_pace(tmp_path / "elsewhere")  # another machine: its own copy of the files
        returned, _ = notice_add(social_web, {"COMPLIANCE_STORE": direct, "COMPLIANCE_POLICY_DIR": str(elsewhere)},
                                 "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26",
                                 "--keep-existing")  # fmt: skip
        time.sleep(3)
        late = [round(e.time - returned, 2) for e in social_web.log if e.host in SCOPE_HOSTS and e.time > returned + 1.0]
        assert not late, f"requests to the noticed host started while the registry was unreadable: {late[:5]}"
        proxy.heal()
        assert crawl.wait(120) == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    finally:
        proxy.close()
    log = (tmp_path / "crawl.log").read_text()
    assert "the crawl is paused, and transfers wait" in log and "The notice registry can be read again" in log
    late = [round(e.time - returned, 2) for e in social_web.log if e.host in SCOPE_HOSTS and e.time > returned + 1.0]
    assert not late, late
    store = Store(direct)
    assert store.count_items("bystander.test") == 11, "the batch that failed to write was kept and written later"
    store.dispose()
