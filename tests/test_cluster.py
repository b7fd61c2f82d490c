"""Distributed crawls on scrapy-redis and PostgreSQL: several workers, one crawl, every guarantee intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.cluster import leased_urls, queued_urls
from crawler.compliance.store import Store
from crawler.testing.runner import policy_dir_with_pace, scrapy_command, start_site_crawl
from crawler.testing.sites import cluster_sites, notice_sites
from crawler.testing.web import Site, StaticSite, TestWeb, WebRequest, WebResponse

from conftest import GUARD_ENV, REQUIRE_SERVICES, postgres_schema_url

REDIS_URL = os.environ.get("COMPLIANCE_TEST_REDIS", "redis://127.0.0.1:6379/0")
PAGE_FILES = ("/robots.txt", "/.well-known/tdmrep.json")


@pytest.fixture
def redis_job() -> Iterator[str]:
    """A crawl id whose Redis keys are removed afterwards; skips (or fails under REQUIRE_SERVICES) without Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        message = f"Redis is not reachable at {REDIS_URL} ({exc}). Start it (e.g. `service redis-server start`) or set COMPLIANCE_TEST_REDIS"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (COMPLIANCE_REQUIRE_SERVICES=1: services are required)")
        pytest.skip(message)
    job = f"test-{uuid.uuid4().hex[:10]}"
    yield job
    for key in client.scan_iter(match=f"compliance:{job}:*"):
        client.delete(key)


@pytest.fixture
def pg_store() -> Iterator[str]:
    yield from postgres_schema_url()


def start_workers(web: TestWeb, count: int, urls: list[str], store_url: str, job: str, policies: Path, tmp: Path,
                  extra: dict[str, Any] | None = None, first: int = 0,
                  env: dict[str, str] | None = None) -> list[subprocess.Popen[bytes]]:  # fmt: skip
    settings = {
        "COMPLIANCE_DISTRIBUTED": True, "COMPLIANCE_CRAWL_ID": job, "COMPLIANCE_REDIS_URL": REDIS_URL,
        "COMPLIANCE_POLICY_DIR": str(policies), "CONCURRENT_REQUESTS_PER_DOMAIN": 4, **(extra or {}),
    }  # fmt: skip
    return [
        start_site_crawl(web, urls, store_url, env={**GUARD_ENV, **(env or {})}, log_path=tmp / f"worker{first + n}.log",
                         settings={**settings, "DEFAULT_REQUEST_HEADERS": json.dumps({"X-Test-Worker": str(first + n)})})
        for n in range(count)
    ]  # fmt: skip


class SharedWorkGate(Site):
    """Holds every page but the home pages until two different workers have asked for pages.

    So a test that must see the work shared decides on causality: no worker
    can finish the crawl alone, whatever the machine's speed (each worker
    takes at most CONCURRENT_REQUESTS at a time; the rest waits in Redis for
    the others). After 60 s it lets go, and the test's own check fails.
    """

    def __init__(self, sites: dict[str, Site]) -> None:
        self.sites = sites
        self.workers: set[str] = set()
        self.lock = threading.Lock()
        self.shared = threading.Event()

    def handle(self, req: WebRequest) -> WebResponse:
        site = self.sites[req.host]
        if req.path not in ("/", *PAGE_FILES):
            with self.lock:
                self.workers.add(req.headers.get("x-test-worker", "?"))
                if len(self.workers) >= 2:
                    self.shared.set()
            self.shared.wait(60)
        return site.handle(req)


def wait_all(workers: list[subprocess.Popen[bytes]], tmp: Path, timeout: float = 120) -> None:
    for n, worker in enumerate(workers):
        code = worker.wait(timeout)
        assert code == 0, (tmp / f"worker{n}.log").read_text()[-3000:]


def pages_seen(web: TestWeb, host: str) -> Counter[str]:
    return Counter(e.path for e in web.log if e.host == host and e.path not in PAGE_FILES)


def test_workers_share_one_crawl_pace_and_robots(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """Three workers: every page once, robots.txt once per host, Crawl-delay held across workers, items in PostgreSQL."""
    sites = cluster_sites()
    gate = SharedWorkGate(sites)
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    with TestWeb({host: gate for host in sites}) as web:
        workers = start_workers(web, 3, ["http://fleet.test/", "http://paced.fleet.test/"], pg_store, redis_job, policies, tmp_path,
                                extra={"CONCURRENT_REQUESTS": 2})  # fmt: skip
        wait_all(workers, tmp_path)
        log = web.log
    for host in ("fleet.test", "paced.fleet.test"):
        seen = pages_seen(web, host)
        assert seen and max(seen.values()) == 1, f"duplicates on {host}: {[p for p, n in seen.items() if n > 1]}"
        robots_fetches = [e for e in log if e.host == host and e.path == "/robots.txt"]
        assert len(robots_fetches) == 1, f"robots.txt of {host} fetched {len(robots_fetches)} times"
        assert len([e for e in log if e.host == host and e.path == "/.well-known/tdmrep.json"]) == 1
    assert len(pages_seen(web, "fleet.test")) == 61 and len(pages_seen(web, "paced.fleet.test")) == 13
    paced = sorted(e.time for e in log if e.host == "paced.fleet.test" and e.path not in PAGE_FILES)
    gaps = [b - a for a, b in zip(paced, paced[1:])]
    assert min(gaps) >= 0.3, f"Crawl-delay 0.3 broken across workers: smallest gap {min(gaps):.3f}s"
    assert gate.shared.is_set(), f"the work was not shared: only worker(s) {sorted(gate.workers)} asked for pages"
    store = Store(pg_store)
    assert store.count_items("fleet.test") == 74  # 61 + 13: one item per page, no duplicates
    assert len({r["url"] for r in store.iter_items()}) == 74


def test_notice_stops_every_worker_and_empties_the_queue(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """A notice filed mid-crawl: every worker stops within a second, the Redis queue loses the scope, nothing is stored."""
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    with TestWeb(notice_sites()) as web:
        workers = start_workers(web, 2, ["http://bigsocial.test/", "http://bystander.test/"], pg_store, redis_job, policies, tmp_path)
        web.wait_for_requests("bigsocial.test", 30)
        done = scrapy_command(["notice", "add", "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26",
                               "--id", "cd-cluster"], settings={"COMPLIANCE_STORE": pg_store, "COMPLIANCE_POLICY_DIR": str(policies)})  # fmt: skip
        returned = time.time()
        assert done.returncode == 0, done.stderr[-2000:]
        receipt = json.loads(done.stdout)["purge"]
        waiting = [u for _, u in queued_urls(REDIS_URL, f"compliance:{redis_job}:requests") if u and "bigsocial.test" in u]
        wait_all(workers, tmp_path)
        late = [round(e.time - returned, 2) for e in web.log if e.host.endswith("bigsocial.test") and e.time > returned + 1.0]
    assert not late, f"a worker kept going after the notice: {late[:5]}"
    assert not waiting
    # In-scope requests were waiting in Redis: the purge removed them, or a
    # worker that already knew the notice took them and refused them (which
    # of the two comes first is a race; test_purge_while_workers_are_down
    # has the purge alone).
    redis_location = next(k for k in receipt["counts"] if k.startswith("redisqueue:"))
    store = Store(pg_store)
    taken_and_refused = [r["url"] for r in store.refusals() if r["reason"] == "notice.cd-cluster" and r["gate"] in ("download", "transfer")]
    assert receipt["counts"][redis_location] + len(taken_and_refused) > 0, "no in-scope request was waiting in Redis"
    assert store.count_items("bigsocial.test") == 0 and store.count_items("bystander.test") == 11
    for n in range(2):
        assert "notice.cd-cluster" in (tmp_path / f"worker{n}.log").read_text()


def test_killed_worker_loses_nothing(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """SIGKILL a worker while it holds a request: the others finish every page, and the store has them all."""
    sites = cluster_sites(pages=80)
    # Pages past /n/10 are answered only once the victim is dead: a worker
    # that asked for one holds its lease until then, whatever this machine's
    # speed. Which worker that is depends on which started first, so the
    # victim is the worker the server saw ask for a held page.
    killed = threading.Event()
    asked: list[str] = []
    fleet = sites["fleet.test"]

    def held(request: WebRequest, page: Any) -> Any:
        asked.append(request.headers.get("x-test-worker", "?"))
        killed.wait(120)
        return page

    for i in range(11, 81):
        fleet.pages[f"/n/{i}"] = lambda request, page=fleet.pages[f"/n/{i}"]: held(request, page)  # type: ignore[attr-defined]
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    with TestWeb(sites) as web:
        try:
            workers = start_workers(web, 3, ["http://fleet.test/"], pg_store, redis_job, policies, tmp_path)
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            deadline = time.time() + 60
            while not asked and time.time() < deadline:
                time.sleep(0.01)
            assert asked, "no worker asked for a held page"
            victim = int(asked[0])
            leases = f"compliance:{redis_job}:leases:{redis_job}@*:{workers[victim].pid}"
            held_leases = [k for k in client.scan_iter(match=leases) if client.hlen(k)]
            assert held_leases, f"worker {victim} asked for a held page but holds no lease"
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(10)
            killed.set()
            survivors = [w for n, w in enumerate(workers) if n != victim]
            for worker in survivors:
                code = worker.wait(120)
                assert code == 0, "\n".join((tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(3) if n != victim)
        finally:
            killed.set()  # never leave the held pages waiting
    assert set(pages_seen(web, "fleet.test")) == {"/", *(f"/n/{i}" for i in range(1, 81))}
    store = Store(pg_store)
    assert {r["url"] for r in store.iter_items()} == {"http://fleet.test/", *(f"http://fleet.test/n/{i}" for i in range(1, 81))}
    requeued = sum("compliance/cluster/requeued" in (tmp_path / f"worker{n}.log").read_text() for n in range(3) if n != victim)
    assert requeued, "a surviving worker put the dead worker's requests back"


def test_purge_while_workers_are_down(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """Workers killed with requests queued and leased; a purge; a new worker then sends nothing in scope."""
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 2)
    with TestWeb(notice_sites()) as web:
        workers = start_workers(web, 2, ["http://bigsocial.test/", "http://bystander.test/"], pg_store, redis_job, policies, tmp_path)
        web.wait_for_requests("bigsocial.test", 20)
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        queue = f"compliance:{redis_job}:requests"
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        assert any(u and "bigsocial.test" in u for _, u in queued_urls(REDIS_URL, queue))
        done = scrapy_command(["purge", "--domain", "bigsocial.test", "--reason", "objection", "--verify"],
                              settings={"COMPLIANCE_STORE": pg_store, "COMPLIANCE_POLICY_DIR": str(policies)})  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert not [u for _, u in queued_urls(REDIS_URL, queue) if u and "bigsocial.test" in u]
        assert not [u for _, _, u in leased_urls(client, queue) if u and "bigsocial.test" in u]
        before = len(web.log)
        again = start_workers(web, 1, ["http://bystander.test/"], pg_store, redis_job, policies, tmp_path, first=2)
        assert again[0].wait(120) == 0, (tmp_path / "worker2.log").read_text()[-3000:]
        after = web.log[before:]
    assert not [e.path for e in after if e.host.endswith("bigsocial.test")], "the resumed crawl asked the purged host"
    assert Store(pg_store).count_items("bigsocial.test") == 0


def test_a_worker_killed_after_storing_before_releasing_stores_each_page_once(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """SIGKILL a worker right after its batch is committed, before its leases are released: its pages are fetched again, stored once."""
    sites = cluster_sites(pages=30, paced_pages=0)
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    with TestWeb(sites) as web:
        first = start_workers(web, 1, ["http://fleet.test/"], pg_store, redis_job, policies, tmp_path,
                              extra={"COMPLIANCE_STORE_BATCH_SIZE": 3}, env={"COMPLIANCE_FAULT": "items-stored"})  # fmt: skip
        assert first[0].wait(120) == -signal.SIGKILL, (tmp_path / "worker0.log").read_text()[-3000:]
        stored_by_the_killed = {r["url"] for r in Store(pg_store).iter_items()}
        assert stored_by_the_killed, "the worker was killed after a committed batch"
        others = start_workers(web, 2, ["http://fleet.test/"], pg_store, redis_job, policies, tmp_path, first=1)
        for n, worker in enumerate(others, start=1):
            assert worker.wait(120) == 0, (tmp_path / f"worker{n}.log").read_text()[-3000:]
    pages = {"/", *(f"/n/{i}" for i in range(1, 31))}
    seen = pages_seen(web, "fleet.test")
    assert set(seen) == pages
    again = {p for p, n in seen.items() if n > 1}
    assert {f"http://fleet.test{p}" for p in again} & stored_by_the_killed, "pages it had stored were fetched again (its leases were held)"
    stored = Counter(r["url"] for r in Store(pg_store).iter_items())
    assert stored == Counter({f"http://fleet.test{p}": 1 for p in pages}), f"stored more than once: {[u for u, n in stored.items() if n > 1]}"


def test_a_lease_outlives_output_until_its_item_is_stored(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """A page whose item is still in a (slow) pipeline keeps its lease while later batches commit; killed, the page is stored by another."""
    sites = cluster_sites(pages=30, paced_pages=0)
    mark = tmp_path / "held.mark"
    released = threading.Event()
    fleet = sites["fleet.test"]
    # Pages past /n/10 are answered only after the held item is in its
    # pipeline, and 1.5 s later: their items are committed in batches that
    # start after /n/3's output was handled, and more than a second after it
    # (the window a timed release rule would use).
    for i in range(11, 31):
        fleet.pages[f"/n/{i}"] = lambda request, page=fleet.pages[f"/n/{i}"]: (released.wait(120), page)[1]  # type: ignore[attr-defined]
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    first: list[subprocess.Popen[bytes]] = []
    held_url = "http://fleet.test/n/3"
    with TestWeb(sites) as web:
        try:
            first = start_workers(web, 1, ["http://fleet.test/"], pg_store, redis_job, policies, tmp_path,
                                  extra={"ITEM_PIPELINES": json.dumps({"tests.cluster_pipelines.HoldItemPipeline": 100}),
                                         "COMPLIANCE_STORE_BATCH_SIZE": 1},
                                  env={"COMPLIANCE_TEST_HOLD_URL": held_url, "COMPLIANCE_TEST_HOLD_MARK": str(mark)})  # fmt: skip
            deadline = time.time() + 60
            while not mark.exists() and time.time() < deadline and first[0].poll() is None:
                time.sleep(0.02)
            assert mark.exists(), (tmp_path / "worker0.log").read_text()[-3000:]
            time.sleep(1.5)
            released.set()
            store = Store(pg_store)
            later = {f"http://fleet.test/n/{i}" for i in range(11, 31)}
            while time.time() < deadline and not ({r["url"] for r in store.iter_items()} & later):
                time.sleep(0.05)
            stored = {r["url"] for r in store.iter_items()}
            assert stored & later, "batches were committed after the held item entered its pipeline"
            assert held_url not in stored
            import redis

            leased = {u for _, _, u in leased_urls(redis.Redis.from_url(REDIS_URL), f"compliance:{redis_job}:requests")}
            assert held_url in leased, "the lease of a page whose item is not stored yet was released"
            first[0].send_signal(signal.SIGKILL)
            first[0].wait(10)
        finally:
            released.set()
            if first and first[0].poll() is None:  # a failed check above: never leave the worker holding its item forever
                first[0].kill()
                first[0].wait(10)
        second = start_workers(web, 1, ["http://fleet.test/"], pg_store, redis_job, policies, tmp_path, first=1)
        assert second[0].wait(120) == 0, (tmp_path / "worker1.log").read_text()[-3000:]
    assert pages_seen(web, "fleet.test")["/n/3"] == 2, "the second worker fetched the held page again"
    stored_urls = Counter(r["url"] for r in Store(pg_store).iter_items())
    assert stored_urls[held_url] == 1
    assert set(stored_urls) == {"http://fleet.test/", *(f"http://fleet.test/n/{i}" for i in range(1, 31))}


class StrainedHost(Site):
    """A paced host (Crawl-delay 0.2) that answers 503 ``Retry-After: 2`` once, to the first page request
    sent after both workers have asked it for pages; everything else is answered normally.

    The home page (the links to all the others) is answered once ``ready()`` says both workers are up:
    a worker that started late on a busy machine would otherwise find the pages all taken by the other.
    """

    def __init__(self, ready: Any, pages: int = 30) -> None:
        self.ready = ready
        self.site = StaticSite({
            "/robots.txt": WebResponse(headers=[("Content-Type", "text/plain")], body="User-agent: *\nCrawl-delay: 0.2\n"),
            "/": WebResponse(headers=[("Content-Type", "text/html")],
                             body="".join(f'<a href="/p/{i}">p{i}</a>' for i in range(1, pages + 1))),
            **{f"/p/{i}": WebResponse(headers=[("Content-Type", "text/html")], body=f"<title>p{i}</title>") for i in range(1, pages + 1)},
        })  # fmt: skip
        self.workers: set[str] = set()
        self.lock = threading.Lock()
        self.answered_503: tuple[float, str] | None = None
        #: The workers that asked for pages after the 503.
        self.workers_after: set[str] = set()

    def handle(self, req: WebRequest) -> WebResponse:
        if req.path == "/":
            deadline = time.time() + 60
            while not self.ready() and time.time() < deadline:
                time.sleep(0.05)
        if req.path.startswith("/p/") or req.path == "/":
            with self.lock:
                worker = req.headers.get("x-test-worker", "?")
                if len(self.workers) >= 2 and self.answered_503 is None and req.path != "/":
                    self.answered_503 = (time.time(), worker)
                    return WebResponse(503, [("Retry-After", "2")], "busy")
                self.workers.add(worker)
                if self.answered_503 is not None:
                    self.workers_after.add(worker)
        return self.site.handle(req)


def test_a_retry_after_pauses_the_host_for_every_worker(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """503 Retry-After: 2 to one worker: no worker sends the host anything for 2 s, then both go on.

    The pause lives in Redis (crawler/cluster.py); the host allows one request
    at a time across the cluster (the policy's max_concurrency 1), so no
    request was on the wire when the 503 was answered. Gaps are on the test
    web's clock; 0.02 s covers timer granularity only.
    """
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    site = StrainedHost(ready=lambda: client.hlen(f"compliance:{redis_job}:workers") >= 2)
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 1)
    with TestWeb({"strained.test": site}) as web:
        workers = start_workers(web, 2, ["http://strained.test/"], pg_store, redis_job, policies, tmp_path,
                                extra={"RETRY_ENABLED": True})  # fmt: skip
        wait_all(workers, tmp_path)
        log = [e for e in web.log if e.host == "strained.test"]
    assert site.answered_503 is not None, "the two workers never both asked the host for pages"
    failed = next(e for e in log if e.status == 503)
    after = [e for e in log if e.time > failed.time]
    gap = after[0].time - failed.time
    assert gap >= 2 - 0.02, f"a worker asked the host {gap:.3f}s after its 503 Retry-After: 2"
    # Both workers crawled the host after the pause: the one that did not get the 503 had waited too.
    assert len(pages_seen(web, "strained.test")) == 31
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert sum("Pausing host strained.test for 2s (retry-after)" in text for text in logs) == 1
    workers_after = {w for w in site.workers_after}
    assert workers_after == {"0", "1"}, f"only worker(s) {sorted(workers_after)} asked the host after the pause"


def test_every_request_of_every_worker_is_signed(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """Two workers, one key: every request of both (robots.txt and tdmrep.json included) verifies with the independent verifier."""
    from test_e2e_identity import AGENT, publish_directory
    from webbotauth_verifier import Verifier

    sites = cluster_sites(pages=20, paced_pages=0)
    del sites["paced.fleet.test"]
    gate = SharedWorkGate(sites)
    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    key_path = tmp_path / "keys" / "signing-key.json"
    with TestWeb({"fleet.test": gate}) as web:
        directory = publish_directory(web, key_path)
        verifier = Verifier(web.proxy_url)
        assert len(verifier.fetch_directory(AGENT)) == 1
        seen: list[WebRequest] = []

        def judge(req: WebRequest) -> str:
            seen.append(req)
            return verifier.verify(req)

        web.request_verifier = judge
        web.clear_log()
        workers = start_workers(web, 2, ["http://fleet.test/"], pg_store, redis_job, policies, tmp_path,
                                extra={"CONCURRENT_REQUESTS": 2, "COMPLIANCE_SIGNING_KEY": str(key_path), "COMPLIANCE_SIGNATURE_AGENT": AGENT})  # fmt: skip
        wait_all(workers, tmp_path)
        log = [e for e in web.log if e.host == "fleet.test"]
    assert gate.shared.is_set(), f"only worker(s) {sorted(gate.workers)} asked for pages"
    assert {e.path for e in log} >= {"/robots.txt", "/.well-known/tdmrep.json", "/", *(f"/n/{i}" for i in range(1, 21))}
    assert [(e.path, e.signature) for e in log if e.signature != "valid"] == []
    by_worker = Counter(r.headers.get("x-test-worker") for r in seen if r.host == "fleet.test")
    assert set(by_worker) == {"0", "1"}, by_worker
    key_id = json.loads(directory["body"])["keys"][0]["kid"]
    assert all(f'keyid="{key_id}"' in r.headers["signature-input"] for r in seen if r.host == "fleet.test")


# -- the batched round trips (crawler/cluster.py, crawler/clusterqueue.py), on the real Redis ------------------


def test_one_exchange_queues_new_requests_then_releases_their_lease_and_leases_the_next(redis_job: str) -> None:
    """Nothing reaches Redis before the exchange; then, in one step: new requests queued once each, the lease released, more leased."""
    import redis

    from crawler.cluster import Cluster, keys_for

    client = redis.Redis.from_url(REDIS_URL)
    keys = keys_for(redis_job)
    cluster = Cluster(REDIS_URL, redis_job, "w1")
    cluster.push("fp-home", 0, b"home", "http://a.test/")
    [(data, lease)] = cluster.exchange(pops=1)
    assert data == b"home" and client.hexists(keys["leases"] + "w1", lease)
    # The home page yields two links and a link back home; a dont_filter request is always queued.
    for fingerprint, data in (("fp-1", b"one"), ("fp-2", b"two"), ("fp-home", b"home again"), ("", b"forced")):
        cluster.push(fingerprint, 0, data, "http://a.test/")
    cluster.output_done(lease)
    assert client.zcard(keys["requests"]) == 0 and client.hexists(keys["leases"] + "w1", lease), "sent before the exchange"
    assert cluster.exchange(pops=0) == []
    assert sorted(client.zrange(keys["requests"], 0, -1)) == [b"forced", b"one", b"two"]
    assert client.smembers(keys["dupefilter"]) == {b"fp-home", b"fp-1", b"fp-2"}
    assert not client.hexists(keys["leases"] + "w1", lease)
    leased = cluster.exchange(pops=2)
    assert len(leased) == 2 and client.hlen(keys["leases"] + "w1") == 2 and client.zcard(keys["requests"]) == 1
    assert not cluster.pending()


def test_a_lease_with_items_waits_for_them_across_exchanges(redis_job: str) -> None:
    """A response whose item is not stored yet keeps its lease through exchanges; the settling queues its release."""
    import redis

    from crawler.cluster import Cluster, keys_for

    client = redis.Redis.from_url(REDIS_URL)
    lease_key = keys_for(redis_job)["leases"] + "w1"
    cluster = Cluster(REDIS_URL, redis_job, "w1")
    cluster.push("fp-page", 0, b"page", "http://a.test/p")
    [(_, lease)] = cluster.exchange(pops=1)
    cluster.item_opened(lease)
    cluster.output_done(lease)
    cluster.exchange()
    assert client.hexists(lease_key, lease), "released before its item was stored"
    cluster.items_settled([lease])
    assert client.hexists(lease_key, lease)
    cluster.exchange()
    assert not client.hexists(lease_key, lease)


def test_pace_places_go_back_later_never_sooner_and_a_worker_waits_for_its_own(redis_job: str) -> None:
    """A finished transfer's place under the cap stays taken in Redis until the worker's next acquire or exchange
    (a paced host's goes back at once); at its own cap the worker waits for its own transfer, then takes the place
    it gave back."""
    import asyncio

    import redis

    from crawler.cluster import Cluster, keys_for

    client = redis.Redis.from_url(REDIS_URL)
    holders = keys_for(redis_job)["pace"] + "a.test:holders"
    cluster = Cluster(REDIS_URL, redis_job, "w1")

    async def scenario() -> list[str]:
        events: list[str] = []
        first = await cluster.acquire("a.test", 0.0, 1, 60)
        assert first is not None
        second = asyncio.ensure_future(cluster.acquire("a.test", 0.0, 1, 60))
        await asyncio.sleep(0.05)
        events.append(f"second waiting: {not second.done()}")
        cluster.release("a.test", first[0])
        events.append(f"given back at release: {client.zscore(holders, first[0]) is None}")
        token, _ = await second  # type: ignore[misc]
        events.append(f"given back with the next acquire: {client.zrange(holders, 0, -1) == [token.encode()]}")
        cluster.release("a.test", token)
        cluster.exchange()
        events.append(f"given back with an exchange: {client.zcard(holders) == 0}")
        paced = await cluster.acquire("paced.test", 0.2, 1, 60)
        assert paced is not None
        cluster.release("paced.test", paced[0])
        events.append(f"a paced host's at release: {client.zcard(paced_holders) == 0}")
        return events

    paced_holders = keys_for(redis_job)["pace"] + "paced.test:holders"
    assert asyncio.run(scenario()) == ["second waiting: True", "given back at release: False",
                                       "given back with the next acquire: True", "given back with an exchange: True",
                                       "a paced host's at release: True"]  # fmt: skip


def test_a_success_resets_the_back_off_only_of_its_own_generation(redis_job: str) -> None:
    """The courtesy count: a success of a stale generation leaves another worker's failure counted; a current one resets it."""
    import asyncio

    from crawler.cluster import Cluster

    mine, other = Cluster(REDIS_URL, redis_job, "w1"), Cluster(REDIS_URL, redis_job, "w2")

    async def turn(cluster: Cluster) -> tuple[str, int]:
        found = await cluster.acquire("a.test", 0.0, 8, 60)
        assert found is not None
        cluster.release("a.test", found[0])
        return found

    _, generation = asyncio.run(turn(mine))
    assert other.host_failed("a.test", generation) == 1  # the other worker's request of the same generation failed
    assert mine.host_succeeded("a.test", generation) == 0, "a stale success reset the count"
    _, current = asyncio.run(turn(mine))
    assert current == generation + 1
    assert mine.host_succeeded("a.test", current) == 1
    assert other.host_failed("a.test", current) == 1, "the success reset the count"


def test_a_notice_takes_back_the_requests_a_worker_has_not_sent(tmp_path: Path, redis_job: str, pg_store: str) -> None:
    """Requests waiting to be sent to the shared queue when a notice is adopted are refused there, not sent (a purge of
    the queue running meanwhile would not see them)."""
    import redis
    from scrapy.utils.test import get_crawler

    from crawler.cluster import keys_for
    from crawler.runtime import ComplianceRuntime

    policies = policy_dir_with_pace(tmp_path / "policies", 0, 4)
    settings = {"COMPLIANCE_CONTACT": "x@y.example", "COMPLIANCE_STORE": pg_store, "COMPLIANCE_POLICY_DIR": str(policies),
                "COMPLIANCE_DISTRIBUTED": True, "COMPLIANCE_CRAWL_ID": redis_job, "COMPLIANCE_REDIS_URL": REDIS_URL}  # fmt: skip
    runtime = ComplianceRuntime.of(get_crawler(settings_dict=settings))
    runtime.refresh_notices()
    cluster = runtime.cluster
    cluster.push("fp-1", 0, b"social", "http://bigsocial.test/u/1")
    cluster.push("fp-2", 0, b"bystander", "http://bystander.test/b/1")
    done = scrapy_command(["notice", "add", "--domain", "bigsocial.test", "--sender", "BigSocial", "--received", "2026-11-26",
                           "--id", "cd-unsent"], settings={"COMPLIANCE_STORE": pg_store, "COMPLIANCE_POLICY_DIR": str(policies)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert runtime.refresh_notices()
    cluster.exchange()
    assert redis.Redis.from_url(REDIS_URL).zrange(keys_for(redis_job)["requests"], 0, -1) == [b"bystander"]
    runtime.flush()
    assert [(r["url"], r["gate"], r["reason"]) for r in Store(pg_store).refusals()] == [
        ("http://bigsocial.test/u/1", "schedule", "notice.cd-unsent")
    ]


def test_turns_of_a_paced_host_go_first_come_first_served(redis_job: str) -> None:
    """The request told first to wait for a paced host's next free moment gets it, even if another asks before it
    comes back; one that never comes back leaves the line a second after its turn."""
    import asyncio

    from crawler.cluster import Cluster

    first, second = Cluster(REDIS_URL, redis_job, "w1"), Cluster(REDIS_URL, redis_job, "w2")
    keys = first._pace_keys("p.test", "p.test")

    def ask(cluster: Cluster, token: str) -> int:
        return cluster._ask("p.test", keys, [300, 1, token, 60_000], 0.3, "p.test")[0]

    async def scenario() -> list[str]:
        events = []
        turn = await first.acquire("p.test", 0.3, 1, 60)
        assert turn is not None
        first.release("p.test", turn[0])
        wait = ask(second, "second-1")
        events.append(f"the second waits: {wait > 0}")
        await asyncio.sleep(wait / 1000 + 0.02)
        events.append(f"the first, asking before the second comes back, waits: {ask(first, 'first-2') > 0}")
        events.append(f"the second gets its turn: {ask(second, 'second-1') == 0}")
        second.release("p.test", "second-1")
        # The first is in line now (it asked); it never comes back: after its turn and a second, the line moves on.
        await asyncio.sleep(0.3 + 0.02)
        events.append(f"the second waits behind the first: {ask(second, 'second-2') > 0}")
        await asyncio.sleep(1.1)
        events.append(f"the first left the line: {ask(second, 'second-2') == 0}")
        return events

    assert asyncio.run(scenario()) == [
        "the second waits: True", "the first, asking before the second comes back, waits: True", "the second gets its turn: True",
        "the second waits behind the first: True", "the first left the line: True",
    ]  # fmt: skip
