"""Tests for the local multi-host test web (crawler.testing.web)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crawler.testing.web import (
    AccessEntry,
    Site,
    StaticSite,
    TestWeb,
    WebRequest,
    WebResponse,
    html,
    load_access_log,
    redirect,
    text,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class EchoSite(Site):
    """Answers with a description of the request it received."""

    def handle(self, req: WebRequest) -> WebResponse:
        return text(f"{req.method} {req.url} ua={req.user_agent} body={req.body!r}")


def _sites() -> dict[str, Site]:
    return {
        "shop.test": StaticSite(
            {
                "/": html("<a href='/p/1'>one</a>", title="Shop"),
                "/p/1": "<p>product one</p>",
                "/search?q=special": "special result",
                "/search": "generic search",
                "/robots.txt": text("User-agent: *\nDisallow: /private\n"),
                "/old": redirect("/p/1"),
                "/tagged": WebResponse(
                    headers=[("X-Robots-Tag", "noindex"), ("X-Robots-Tag", "nofollow")],
                    body="tagged",
                ),
                "/hang": WebResponse(hang=True),
                "/drop": WebResponse(drop=True),
                "/slow": WebResponse(body="late", delay=0.3),
                "/trickle": WebResponse(body=b"x" * 100_000, chunk_size=1000, chunk_delay=0.05),
                "/big": WebResponse(
                    body_factory=lambda: (b"y" * 65536 for _ in range(64)),
                    content_length=64 * 65536,
                ),
                "/dynamic": lambda req: f"dynamic {req.query}",
            }
        ),
        "news.test": EchoSite(),
        "https://dual.test": StaticSite({"/": "secure side"}),
        "http://dual.test": StaticSite({"/": "plain side"}),
    }


@pytest.fixture
def web() -> Iterator[TestWeb]:
    with TestWeb(_sites()) as server:
        yield server


def _get(web: TestWeb, host: str, target: str, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    conn.request("GET", target, headers={"Host": host, **headers})
    return conn.getresponse()


def _tunnel(web: TestWeb, host: str, timeout: float = 5) -> http.client.HTTPSConnection:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", web.port, timeout=timeout, context=context)
    conn.set_tunnel(host, 443)
    return conn


def _wait_for(
    web: TestWeb, predicate: Callable[[list[AccessEntry]], bool], timeout: float = 2.0
) -> list[AccessEntry]:
    deadline = time.monotonic() + timeout
    while True:
        entries = web.log
        if predicate(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


def test_origin_form_request_is_served_and_logged(web: TestWeb) -> None:
    """An origin-form request with a Host header is served by that host's site and fully logged."""
    response = _get(web, "shop.test", "/p/1?x=1", **{"User-Agent": "probe/1.0"})
    body = response.read()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert body == b"<p>product one</p>"
    [entry] = web.log
    assert (entry.method, entry.scheme, entry.host, entry.port) == ("GET", "http", "shop.test", 80)
    assert (entry.path, entry.status, entry.bytes_sent) == ("/p/1?x=1", 200, len(body))
    assert entry.user_agent == "probe/1.0"
    assert entry.unknown_host is False


def test_proxy_form_request_is_served_and_logged(web: TestWeb) -> None:
    """An absolute-form proxy request reaches the named host, keeping port and query."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": web.proxy_url}))
    request = urllib.request.Request("http://news.test/echo?a=1", headers={"User-Agent": "ua-proxy"})
    with opener.open(request, timeout=5) as response:
        assert response.read() == b"GET http://news.test/echo?a=1 ua=ua-proxy body=b''"
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    conn.request("POST", "http://NEWS.test:8080/form", body=b"k=v", headers={"User-Agent": "ua2"})
    assert conn.getresponse().read() == b"POST http://news.test:8080/form ua=ua2 body=b'k=v'"
    first, second = web.requests(host="news.test")
    assert (first.port, first.path, first.user_agent, first.status) == (80, "/echo?a=1", "ua-proxy", 200)
    assert (second.method, second.port, second.path) == ("POST", 8080, "/form")


def test_static_site_lookup_and_helpers(web: TestWeb) -> None:
    """StaticSite prefers path?query, falls back to the path, 404s unknown paths and keeps repeated headers."""
    assert _get(web, "shop.test", "/search?q=special").read() == b"special result"
    assert _get(web, "shop.test", "/search?q=other").read() == b"generic search"
    assert _get(web, "shop.test", "/dynamic?z=9").read() == b"dynamic z=9"
    assert _get(web, "shop.test", "/missing").status == 404
    moved = _get(web, "shop.test", "/old")
    assert (moved.status, moved.getheader("Location")) == (301, "/p/1")
    tagged = _get(web, "shop.test", "/tagged")
    assert tagged.headers.get_all("X-Robots-Tag") == ["noindex", "nofollow"]
    assert web.paths("shop.test") == [
        "/search?q=special",
        "/search?q=other",
        "/dynamic?z=9",
        "/missing",
        "/old",
        "/tagged",
    ]


def test_keep_alive_and_head(web: TestWeb) -> None:
    """Several requests share one connection and HEAD announces the length without a body."""
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/p/1", headers={"Host": "shop.test"})
        assert conn.getresponse().read() == b"<p>product one</p>"
    conn.request("HEAD", "/p/1", headers={"Host": "shop.test"})
    head = conn.getresponse()
    assert head.getheader("Content-Length") == str(len(b"<p>product one</p>"))
    assert head.read() == b""
    assert [e.bytes_sent for e in web.log] == [18, 18, 18, 0]


def test_unknown_host_gets_502_and_is_flagged(web: TestWeb) -> None:
    """A host missing from the sites mapping is answered 502 and flagged in the log."""
    response = _get(web, "nowhere.test", "/x")
    assert response.status == 502
    assert response.read() == b"unknown test host: nowhere.test"
    [entry] = web.log
    assert entry.unknown_host and entry.status == 502
    assert web.unknown_hosts() == ["nowhere.test"]


def test_scheme_specific_sites_over_connect_tunnel(web: TestWeb) -> None:
    """CONNECT+TLS requests are served as https and scheme-specific sites are kept apart from http."""
    secure = _tunnel(web, "dual.test")
    secure.request("GET", "/", headers={"User-Agent": "tls-ua"})
    assert secure.getresponse().read() == b"secure side"
    secure.request("GET", "/")  # second request inside the same tunnel
    assert secure.getresponse().read() == b"secure side"
    plain = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    plain.request("GET", "http://dual.test/")
    assert plain.getresponse().read() == b"plain side"
    shared = _tunnel(web, "shop.test")
    shared.request("GET", "/p/1")
    assert shared.getresponse().read() == b"<p>product one</p>"

    https_entries = web.requests(host="dual.test", scheme="https")
    assert [(e.port, e.path, e.status) for e in https_entries] == [(443, "/", 200), (443, "/", 200)]
    assert https_entries[0].user_agent == "tls-ua"
    assert web.paths("dual.test", scheme="http") == ["/"]
    assert web.requests(host="shop.test")[0].scheme == "https"
    assert not any(e.method == "CONNECT" for e in web.log)


def test_connect_to_unknown_host_is_refused(web: TestWeb) -> None:
    """CONNECT to an unknown host (or an http-only site) is refused with 502 and flagged."""
    web.add_site("http://plainonly.test", StaticSite({"/": "x"}))
    for host in ("ghost.test", "plainonly.test"):
        conn = _tunnel(web, host)
        with pytest.raises(OSError, match="502"):
            conn.request("GET", "/")
    entries = web.log
    assert [(e.method, e.host, e.status, e.unknown_host) for e in entries] == [
        ("CONNECT", "ghost.test", 502, True),
        ("CONNECT", "plainonly.test", 502, True),
    ]


def test_hang_holds_until_client_gives_up_and_stop_is_prompt() -> None:
    """A hanging response never answers, is logged with status 0, and does not delay stop()."""
    web = TestWeb(_sites()).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=0.3)
        conn.request("GET", "/hang", headers={"Host": "shop.test"})
        with pytest.raises(TimeoutError):
            conn.getresponse()
        conn.close()
        entries = _wait_for(web, lambda log: len(log) == 1)
        assert [(e.path, e.status, e.bytes_sent) for e in entries] == [("/hang", 0, 0)]

        lingering = _tunnel(web, "shop.test", timeout=60)
        lingering.request("GET", "/hang")
        time.sleep(0.1)  # lets the request reach its handler (not a verdict: the log below is)
    finally:
        web.stop()
    # stop() cut the hanging connection itself (the client sees the close, not
    # its own 60 s timeout) and the handler logged its entry before stop()
    # returned: decided by what happened, not by how long it took.
    with pytest.raises(Exception) as cut:  # noqa: PT011 - RemoteDisconnected, a reset or a TLS EOF alike
        lingering.getresponse()
    assert not isinstance(cut.value, TimeoutError), cut.value
    assert [e.scheme for e in web.log] == ["http", "https"]


def test_drop_closes_without_response(web: TestWeb) -> None:
    """A dropped response closes the connection with nothing sent."""
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=2)
    conn.request("GET", "/drop", headers={"Host": "shop.test"})
    with pytest.raises(http.client.RemoteDisconnected):
        conn.getresponse()
    [entry] = _wait_for(web, lambda log: len(log) == 1)
    assert (entry.status, entry.bytes_sent) == (0, 0)


def test_delay_postpones_the_response(web: TestWeb) -> None:
    """A delayed response arrives no sooner than its delay."""
    started = time.monotonic()
    response = _get(web, "shop.test", "/slow")
    assert response.read() == b"late"
    assert time.monotonic() - started >= 0.3


def test_trickled_body_counts_bytes_sent_before_client_leaves(
    web: TestWeb, capfd: pytest.CaptureFixture[str]
) -> None:
    """A slow chunked body stops quietly when the client leaves, counting only bytes sent."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=5)
    sock.sendall(b"GET /trickle HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 2000:
        data += sock.recv(65536)
    header, _, body_start = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 100000" in header
    sock.close()
    [entry] = _wait_for(web, lambda log: len(log) == 1)
    assert len(body_start) <= entry.bytes_sent <= len(body_start) + 3000
    assert entry.status == 200
    assert "Traceback" not in capfd.readouterr().err


def test_streamed_body_from_factory(web: TestWeb) -> None:
    """A body_factory body is streamed in full with the announced Content-Length."""
    response = _get(web, "shop.test", "/big")
    assert response.getheader("Content-Length") == str(64 * 65536)
    assert len(response.read()) == 64 * 65536
    assert web.log[0].bytes_sent == 64 * 65536


def test_env_points_every_proxy_variable_here(web: TestWeb) -> None:
    """env() routes http and https through the proxy and empties no_proxy."""
    env = web.env()
    assert env["http_proxy"] == env["https_proxy"] == env["HTTP_PROXY"] == env["HTTPS_PROXY"]
    assert env["http_proxy"] == f"http://127.0.0.1:{web.port}"
    assert env["no_proxy"] == env["NO_PROXY"] == ""
    assert web.env({"PATH": "/bin"})["PATH"] == "/bin"


def test_many_small_requests_are_served_and_logged(web: TestWeb) -> None:
    """Hundreds of small pages are served on fresh and reused connections, each logged (speed is the benchmarks' business)."""
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    for _ in range(200):
        conn.request("GET", "/p/1", headers={"Host": "shop.test"})
        conn.getresponse().read()
    for _ in range(100):
        _get(web, "shop.test", "/p/1").read()
    assert len(web.requests(host="shop.test", path_prefix="/p/")) == 300
    web.clear_log()
    assert web.log == []


def test_subprocess_entry_prints_ready_and_serves(tmp_path: Path) -> None:
    """python -m crawler.testing.web prints READY, serves the named sites, logs to file and stops on SIGTERM."""
    (tmp_path / "demo_sites.py").write_text(
        textwrap.dedent(
            """
            from crawler.testing.web import StaticSite

            def build():
                return {"demo.test": StaticSite({"/": "demo home"})}
            """
        )
    )
    log_file = tmp_path / "access.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(tmp_path)])}
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler.testing.web", "--port", "0", "--sites", "demo_sites:build",
         "--log-file", str(log_file)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[0] == "READY"
        port = int(ready[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "http://demo.test/")
        assert conn.getresponse().read() == b"demo home"
        conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0, stderr
    [entry] = load_access_log(log_file)
    assert (entry.host, entry.path, entry.status) == ("demo.test", "/", 200)


def test_a_client_trusting_the_test_ca_verifies_each_test_host_and_nothing_else() -> None:
    """TLS: each *.test name asked for by SNI gets a certificate for exactly that name, issued by the test CA;
    another name gets the default certificate, which a verifying client refuses for it."""
    from crawler.testing.web import ca_certificate_file

    sites = {"shop.test": StaticSite({"/": html("<p>shop</p>")}), "shop.example": StaticSite({"/": html("<p>x</p>")})}
    with TestWeb(sites) as web:
        context = ssl.create_default_context(cafile=str(ca_certificate_file()))
        conn = http.client.HTTPSConnection("127.0.0.1", web.port, timeout=5, context=context)
        conn.set_tunnel("shop.test", 443)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        untrusting = http.client.HTTPSConnection("127.0.0.1", web.port, timeout=5, context=ssl.create_default_context())
        untrusting.set_tunnel("shop.test", 443)
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.request("GET", "/")
        other = http.client.HTTPSConnection("127.0.0.1", web.port, timeout=5, context=context)
        other.set_tunnel("shop.example", 443)
        with pytest.raises(ssl.SSLCertVerificationError, match="shop.example"):
            other.request("GET", "/")
