"""End-to-end: every request of a crawl is signed, and verifies at the test web with an independent verifier.

The verifier (tests/webbotauth_verifier.py) is test code built on http_sf and
``cryptography`` directly; it looks keys up in the directory the crawler
publishes (``scrapy identity directory``), served by the test web at
``https://bot.test/.well-known/http-message-signatures-directory``.
"""

from __future__ import annotations

import json
import stat
import time
import urllib.request
from pathlib import Path

from crawler.testing.runner import scrapy_command
from crawler.testing.web import Site, StaticSite, WebRequest, WebResponse

from webbotauth_verifier import DIRECTORY_PATH, Verifier

AGENT = "https://bot.test"


def publish_directory(web, key_path: Path) -> dict:  # type: ignore[no-untyped-def]
    """``scrapy identity init`` then ``directory --json``, served by the test web at bot.test."""
    settings = {"COMPLIANCE_SIGNING_KEY": str(key_path), "COMPLIANCE_SIGNATURE_AGENT": AGENT}
    init = scrapy_command(["identity", "init"], settings=settings)
    assert init.returncode == 0, init.stderr
    done = scrapy_command(["identity", "directory", "--json"], settings=settings)
    assert done.returncode == 0, done.stderr
    directory = json.loads(done.stdout)
    assert directory["url"] == f"{AGENT}{DIRECTORY_PATH}"
    response = WebResponse(headers=list(directory["headers"].items()), body=directory["body"])
    web.add_site("https://bot.test", StaticSite({DIRECTORY_PATH: response}))
    return directory


class RedirectAndRetry(Site):
    """``/`` redirects to ``/home``, which fails once with 500 (Scrapy retries it) before it answers."""

    def __init__(self) -> None:
        self.failed = False

    def handle(self, req: WebRequest) -> WebResponse:
        if req.path == "/":
            return WebResponse(301, [("Location", "/home")])
        if req.path == "/home" and not self.failed:
            self.failed = True
            return WebResponse(500, body="try again")
        if req.path == "/home":
            return WebResponse(200, [("Content-Type", "text/html")], "<html><title>home</title></html>")
        return WebResponse(404)


def test_every_request_of_a_crawl_verifies_and_altered_ones_do_not(web, crawl, tmp_path: Path) -> None:
    """Pages, robots.txt, tdmrep.json, redirects (of robots.txt and of pages) and retries all verify; a replay elsewhere or late does not."""
    key_path = tmp_path / "keys" / "signing-key.json"
    directory = publish_directory(web, key_path)
    verifier = Verifier(web.proxy_url)
    assert len(verifier.fetch_directory(AGENT)) == 1  # its binding signature checks out
    seen: list[WebRequest] = []

    def judge(req: WebRequest) -> str:
        seen.append(req)
        return verifier.verify(req)

    web.request_verifier = judge
    web.add_site("flaky.test", RedirectAndRetry())
    # The test's own directory fetch is logged by the server's thread, possibly after the
    # client has its answer: wait for that entry, so clearing the log removes it.
    assert web.wait_for_requests("bot.test", 1, timeout=30) == 1
    web.clear_log()
    run = crawl(
        ["http://shop.test/", "http://moved.test/", "http://flaky.test/"],
        {"COMPLIANCE_SIGNING_KEY": str(key_path), "COMPLIANCE_SIGNATURE_AGENT": AGENT, "RETRY_ENABLED": True},
    ).check()
    log = web.log
    assert {(e.host, e.path) for e in log} >= {
        ("shop.test", "/robots.txt"), ("shop.test", "/.well-known/tdmrep.json"), ("shop.test", "/about"),
        ("moved.test", "/robots.txt"),  # answered with a redirect to another host, whose file is fetched too
        ("flaky.test", "/"),
    }  # fmt: skip
    # The redirect's target and the retry of the 500 are new requests: each signed again.
    assert [(e.path, e.status) for e in log if e.host == "flaky.test" and e.path.startswith("/home")] == [
        ("/home", 500), ("/home", 200)]
    assert len({e.host for e in log}) >= 3
    assert [(e.host, e.path, e.signature) for e in log if e.signature != "valid"] == []
    # Every signature names the published key and the agent; the private key is nowhere in the output or store.
    key_id = json.loads(directory["body"])["keys"][0]["kid"]
    assert all(f'keyid="{key_id}"' in r.headers["signature-input"] for r in seen)
    assert all(r.headers["signature-agent"] == 'sig1="https://bot.test"' for r in seen)
    private = json.loads(key_path.read_text())["keys"][0]["d"]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert private not in run.log
    assert private.encode() not in Path(run.store_url.removeprefix("sqlite:///")).read_bytes()

    # Altered in transit: the same signed request, sent to another host, does not verify.
    page = next(r for r in seen if r.host == "shop.test" and r.path == "/about")
    replayed = {k: v for k, v in page.headers.items() if k in ("signature", "signature-input", "signature-agent")}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": web.proxy_url}))

    def send(url: str) -> None:
        try:
            opener.open(urllib.request.Request(url, headers=replayed), timeout=10).read()
        except urllib.error.HTTPError:
            pass

    web.clear_log()
    send("http://other.test/about")
    assert web.log[-1].host == "other.test" and web.log[-1].signature == "invalid: bad signature"
    # Another path on the same host does not either (@path is covered).
    send("http://shop.test/products/1")
    assert web.log[-1].signature == "invalid: bad signature"
    # The same request, unchanged but arriving after its expiry, does not verify.
    late = Verifier(web.proxy_url, clock=lambda: time.time() + 3600)
    late.directories = verifier.directories
    web.request_verifier = late.verify
    send("http://shop.test/about")
    assert web.log[-1].signature == "invalid: expired"
    # And unchanged and on time, it does (the test, not the crawl, is what changed).
    web.request_verifier = verifier.verify
    send("http://shop.test/about")
    assert web.log[-1].signature == "valid"


def test_a_crawl_without_a_key_creates_one_and_says_so(web, crawl, tmp_path: Path) -> None:
    """The first crawl creates the key file (0600) and logs one INFO line; the next one reuses it silently."""
    data = tmp_path / "data"
    first = crawl(["http://open.test/"], {"COMPLIANCE_DATA_DIR": str(data)}).check()
    key_file = data / "signing-key.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_id = json.loads(key_file.read_text())["keys"][0]["kid"]
    assert first.log.count("created a new signing key") == 1 and key_id in first.log
    assert first.stats["compliance/identity/key_id"].strip("'") == key_id
    assert int(first.stats["compliance/identity/signed"]) >= 3  # robots.txt, tdmrep.json, the pages
    second = crawl(["http://open.test/"], {"COMPLIANCE_DATA_DIR": str(data)}).check()
    assert "created a new signing key" not in second.log
    assert json.loads(key_file.read_text())["keys"][0]["kid"] == key_id


def test_a_key_file_others_can_read_stops_the_crawl_before_any_request(web, crawl, tmp_path: Path) -> None:
    """Fail closed: a key file readable by others refuses the crawl in one line, and nothing is fetched."""
    from crawler.identity import keyring

    key_path = tmp_path / "signing-key.json"
    keyring.create(key_path)
    key_path.chmod(0o644)
    run = crawl(["http://open.test/"], {"COMPLIANCE_SIGNING_KEY": str(key_path)})
    assert run.returncode == 2
    assert "crawl refused to start: COMPLIANCE_SIGNING_KEY:" in run.log and "chmod 600" in run.log
    assert "Traceback" not in run.log
    assert web.log == []
