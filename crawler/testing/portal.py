"""A real site owners' portal for tests and the demo: ``scrapy compliance serve`` in a subprocess on
127.0.0.1, a client that files objections through its forms, and a site whose owner can place the token."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from crawler.testing.runner import project_dir
from crawler.testing.web import Site, StaticSite, WebRequest, WebResponse, ca_certificate_file, html, text

CONTACT = "https://operator.test/contact"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnedSite(Site):
    """A site of chained pages (/p/0 -> /p/1 -> ...) whose owner can publish the proof file or meta tag later."""

    def __init__(self, pages: int = 300) -> None:
        self.pages = pages
        self.file_token = ""
        self.meta_token = ""
        self.lock = threading.Lock()

    def handle(self, req: WebRequest) -> WebResponse:
        with self.lock:
            file_token, meta_token = self.file_token, self.meta_token
        if req.path == "/.well-known/ethical-crawler-verification.txt":
            return text(file_token + "\n") if file_token else text("not found\n", status=404)
        head = f'<meta name="ethical-crawler-verification" content="{meta_token}">' if meta_token else ""
        if req.path == "/":
            return html(f"<html><head>{head}<title>home</title></head><body><p>home page text</p><a href='/p/0'>start</a></body></html>")
        found = re.fullmatch(r"/p/(\d+)", req.path)
        if found and int(found.group(1)) < self.pages:
            n = int(found.group(1))
            return html(f"<html><head><title>page {n}</title></head><body><p>page {n} text</p><a href='/p/{n + 1}'>next</a></body></html>")
        return text("not found\n", status=404)


def bystander() -> StaticSite:
    return StaticSite({"/": html("<p>bystander</p><a href='/a'>a</a>"), "/a": html("<p>a</p>")})


def portal_settings(store_url: str, policies: Path, data_dir: Path, **extra: Any) -> dict[str, Any]:
    """Settings of a portal on a test store (the proof fetch checks TLS certificates, as in production)."""
    return {
        "COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_CONTACT": CONTACT,
        "COMPLIANCE_DATA_DIR": str(data_dir), **extra,
    }  # fmt: skip


@contextlib.contextmanager
def running_portal(web_env: Mapping[str, str], settings: Mapping[str, Any], log: Path, port: int | None = None,
                   env: Mapping[str, str] | None = None, trust_test_web: bool = True) -> Iterator[Any]:  # fmt: skip
    """``scrapy compliance serve`` until the block ends; yields an object with ``url``, ``process`` and ``port``.

    ``web_env`` is the test web's proxy environment (the portal's proof fetches go through it); ``env`` adds more.
    ``trust_test_web``: the proof fetch trusts the test web's certificate authority (and nothing else:
    ``SSL_CERT_FILE`` replaces the system's trust store), as an operator would trust a private CA;
    certificates are checked either way.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "scrapy", "compliance", "serve", "--port", str(port)]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    trust = {"SSL_CERT_FILE": str(ca_certificate_file())} if trust_test_web else {}
    # The portal's own proof fetches go through the test web's proxy; the test reaches the portal directly.
    full_env = {**os.environ, **web_env, **trust, **(env or {}), "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=project_dir(), env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/", timeout=2, proxies={"http": "", "https": ""})
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the portal did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield type("Portal", (), {"url": url, "process": process, "port": port})()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def session() -> requests.Session:
    client = requests.Session()
    client.trust_env = False  # straight to 127.0.0.1, never through the test web's proxy
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def file_objection(client: requests.Session, url: str, headers: Mapping[str, str] | None = None, **fields: str) -> requests.Response:
    """Load the form, submit it (the page it leads to is returned; ``.submitted_at`` is ``time.time()`` just before the POST)."""
    token = csrf_of(client.get(url + "/objections/new", headers=headers).text)
    form = {"domain": "owner.test", "sender": "Owner of owner.test", "email": "owner@owner.test", "kind": "cease-and-desist",
            "statement": "Stop collecting my site.", **fields}  # fmt: skip
    submitted_at = time.time()
    page = client.post(url + "/objections", data={"csrftoken": token, **form}, headers=headers, allow_redirects=True)
    page.submitted_at = submitted_at  # type: ignore[attr-defined]
    return page


#: Issue 18's bound: no request to a host more than this many seconds after an objection to it was submitted.
QUIET_WITHIN = 1.0


def requests_after_objection(web: Any, host: str, submitted_at: float, *, still_crawled: str, process: Any, more: int = 10) -> list[tuple[float, str]]:
    """Requests to ``host`` later than :data:`QUIET_WITHIN` s after ``submitted_at``, as (seconds after, path).

    Read only once the crawl has fetched ``still_crawled`` (another host of
    the same crawl) ``more`` times past that bound: proof the crawl kept going
    and could have asked ``host`` again, however slow the machine, rather
    than a fixed sleep. Raises AssertionError if the crawl stopped first.
    """
    bound = submitted_at + QUIET_WITHIN
    seen = web.wait_for_requests(still_crawled, more, after=bound, process=process, timeout=120)
    if seen < more:
        raise AssertionError(f"the crawl asked {still_crawled} only {seen} time(s) after the bound (exit code {process.poll()}): it stopped")
    return [(round(e.time - submitted_at, 3), e.path) for e in web.requests(host=host) if e.time > bound]
