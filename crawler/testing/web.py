"""A local, multi-host "test web" for exercising crawlers without the Internet.

One threaded HTTP server on ``127.0.0.1`` impersonates any number of made-up
hosts (``shop.test``, ``news.test``, ...).  It answers both as an origin server
(origin-form requests carrying a ``Host`` header) and as an HTTP proxy
(absolute-form requests and ``CONNECT`` tunnels), so a crawler only has to be
pointed at it through the standard ``http_proxy``/``https_proxy`` environment
variables (see :meth:`TestWeb.env`).  Host names are never resolved: the name
in the request selects a :class:`Site` from the mapping given to
:class:`TestWeb`, and any other name gets a ``502`` that is flagged in the
access log so a test can fail loudly.

``CONNECT`` tunnels are terminated here with certificates issued by a test
certificate authority generated once per process with ``cryptography`` (a
``*.test`` name asked for by SNI gets a certificate for exactly that name);
crawlers such as Scrapy do not verify certificates by default, so ``https://``
sites work unchanged, and a client that must verify trusts
:func:`ca_certificate_file` (e.g. through ``SSL_CERT_FILE``).

Typical use::

    sites = {"shop.test": StaticSite({"/": html("<a href='/p/1'>p1</a>")})}
    with TestWeb(sites) as web:
        run_crawler(env={**os.environ, **web.env()})
        assert web.paths("shop.test") == ["/robots.txt", "/", "/p/1"]

It can also run in its own process (for benchmarks and demos)::

    python -m crawler.testing.web --port 0 --sites mypkg.sites:SITES

which prints ``READY <port>`` once listening and stops on SIGTERM/SIGINT.

Only the standard library and ``cryptography`` are used; this module must not
import Scrapy so that it can serve a crawler running in another process.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime
import email.utils
import html as html_lib
import importlib
import io
import ipaddress
import json
import mimetypes
import os
import select
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

__all__ = [
    "AccessEntry",
    "PageValue",
    "Site",
    "StaticSite",
    "TestWeb",
    "WebRequest",
    "WebResponse",
    "as_response",
    "ca_certificate_file",
    "certificate_files",
    "html",
    "load_access_log",
    "load_sites",
    "main",
    "redirect",
    "text",
]

# Idle keep-alive connections would otherwise pin a handler thread forever if a
# client forgets them; a minute is far longer than any test waits between
# requests on one connection.
_IDLE_TIMEOUT = 60.0
# Large bodies are written in slices so that the byte count in the access log
# reflects what was handed to the kernel before a client disconnect.
_WRITE_SIZE = 64 * 1024
# Bodies up to this size go out in the same send as the headers: one syscall
# per small page is what makes a few hundred requests per second cheap.
_COALESCE_LIMIT = 256 * 1024
# Poll interval for loops that must notice both a client hang-up and stop();
# short enough that stop() stays well under a second.
_POLL = 0.05
# How long log readers wait for responses whose bytes are already on the wire
# to be recorded (see TestWeb._snapshot).
_SETTLE_TIMEOUT = 1.0
_NO_BODY_STATUSES = frozenset({204, 304})


# --------------------------------------------------------------------------
# Requests, responses, sites
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WebRequest:
    """One HTTP request as seen by a :class:`Site`.

    ``host`` is the lower-cased host name without port; ``port`` defaults to
    80/443 by scheme; ``path`` is the raw (still percent-encoded) path and
    ``query`` the raw query string without ``?``.  ``headers`` has lower-case
    keys; repeated request headers are joined with ``", "``.
    """

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str
    headers: dict[str, str]
    user_agent: str
    body: bytes = b""

    @property
    def target(self) -> str:
        """The path with ``?query`` appended when there is a query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def url(self) -> str:
        """The absolute URL of the request (default ports omitted)."""
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.target}"


@dataclass
class WebResponse:
    """What a :class:`Site` answers, including misbehaviours to simulate.

    Attributes:
        status: HTTP status code.
        headers: Header pairs in order; a name may repeat (e.g. several
            ``X-Robots-Tag``).  ``Content-Length``/``Connection`` are added
            automatically unless given here (giving them disables keep-alive,
            since the framing is then the caller's responsibility).  Values
            are sent UTF-8 encoded so that non-ASCII headers can be tested.
        body: Body; a ``str`` is sent UTF-8 encoded.
        delay: Seconds to wait before sending the status line.
        hang: Never answer; keep the connection open until the client gives
            up or the server stops.
        drop: Close the connection without sending anything.
        chunk_size: If > 0, write the body in pieces of at most this size.
        chunk_delay: Pause between pieces (for slow bodies).
        body_factory: Produces the body lazily (e.g. 20 MiB without holding it
            in memory); ``body`` is ignored when set.
        content_length: Announced length for ``body_factory`` bodies; without
            it the body is delimited by closing the connection.
        reason: Reason phrase; defaults to the standard one for ``status``.
        hold_after: If > 0, send this many body bytes, then hold the rest
            until the client hangs up (logged as such: ``bytes_sent`` stays at
            what was sent) or ``hold_timeout`` passes (then the rest goes out).
            An oracle for "the client stopped reading here" that depends on
            what the client did, not on how fast it did it.
        hold_timeout: Seconds to hold before sending the rest anyway.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | str = b""
    delay: float = 0.0
    hang: bool = False
    drop: bool = False
    chunk_size: int = 0
    chunk_delay: float = 0.0
    body_factory: Callable[[], Iterable[bytes]] | None = None
    content_length: int | None = None
    reason: str | None = None
    hold_after: int = 0
    hold_timeout: float = 30.0

    def body_bytes(self) -> bytes:
        """Return ``body`` as bytes (UTF-8 for ``str``)."""
        return self.body.encode("utf-8") if isinstance(self.body, str) else bytes(self.body)

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


PageValue = Union[WebResponse, str, bytes, Callable[[WebRequest], "WebResponse | str | bytes"]]
"""What :class:`StaticSite` accepts per path."""


def html(
    body_html: str,
    title: str = "Test page",
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (),
) -> WebResponse:
    """Return an HTML page response.

    ``body_html`` is wrapped in a minimal HTML5 document with ``title``,
    unless it already is a whole document (starts with ``<!doctype`` or
    ``<html``), which is then sent unchanged.
    """
    stripped = body_html.lstrip().lower()
    if stripped.startswith(("<!doctype", "<html")):
        document = body_html
    else:
        document = (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html_lib.escape(title)}</title></head>\n"
            f"<body>{body_html}</body></html>\n"
        )
    return WebResponse(
        status=status,
        headers=[("Content-Type", "text/html; charset=utf-8"), *headers],
        body=document.encode("utf-8"),
    )


def text(
    body: str,
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (),
    content_type: str = "text/plain; charset=utf-8",
) -> WebResponse:
    """Return a plain-text response (e.g. ``robots.txt``)."""
    return WebResponse(
        status=status,
        headers=[("Content-Type", content_type), *headers],
        body=body.encode("utf-8"),
    )


def redirect(
    location: str,
    status: int = 301,
    headers: Iterable[tuple[str, str]] = (),
) -> WebResponse:
    """Return a redirect to ``location`` with a tiny HTML body."""
    escaped = html_lib.escape(location)
    return WebResponse(
        status=status,
        headers=[
            ("Location", location),
            ("Content-Type", "text/html; charset=utf-8"),
            *headers,
        ],
        body=f'<!DOCTYPE html><a href="{escaped}">moved</a>\n'.encode(),
    )


def as_response(value: WebResponse | str | bytes, path: str = "") -> WebResponse:
    """Coerce a page value into a :class:`WebResponse`.

    A ``str`` becomes a ``text/html; charset=utf-8`` 200 page; ``bytes`` a 200
    response whose ``Content-Type`` is guessed from ``path``'s extension
    (``application/octet-stream`` when unknown).
    """
    if isinstance(value, WebResponse):
        return value
    if isinstance(value, str):
        return WebResponse(
            headers=[("Content-Type", "text/html; charset=utf-8")],
            body=value.encode("utf-8"),
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        guessed, _ = mimetypes.guess_type(path)
        return WebResponse(
            headers=[("Content-Type", guessed or "application/octet-stream")],
            body=bytes(value),
        )
    raise TypeError(f"cannot turn {type(value).__name__} into a WebResponse")


class Site:
    """A made-up web site: subclass and implement :meth:`handle`.

    ``handle`` is called from server threads, concurrently for concurrent
    requests, so implementations must be thread-safe.
    """

    def handle(self, req: WebRequest) -> WebResponse:
        """Answer ``req``."""
        raise NotImplementedError


class StaticSite(Site):
    """A site made of a fixed table of pages keyed by exact path.

    Lookup tries ``path?query`` first (when there is a query), then ``path``.
    A value may be a :class:`WebResponse`, a ``str`` (HTML page), ``bytes``
    (type guessed from the path) or a callable taking the :class:`WebRequest`
    and returning any of those.  Missing paths get ``default_status`` with a
    short plain-text body.
    """

    def __init__(
        self,
        pages: Mapping[str, PageValue] | None = None,
        *,
        default_status: int = 404,
    ) -> None:
        self.pages: dict[str, PageValue] = dict(pages or {})
        self.default_status = default_status

    def handle(self, req: WebRequest) -> WebResponse:
        """Serve the page registered for the request's path."""
        value: PageValue | None = None
        if req.query:
            value = self.pages.get(f"{req.path}?{req.query}")
        if value is None:
            value = self.pages.get(req.path)
        if value is None:
            return text("not found\n", status=self.default_status)
        if callable(value) and not isinstance(value, WebResponse):
            value = value(req)
        return as_response(value, req.path)


# --------------------------------------------------------------------------
# Access log
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessEntry:
    """One served (or refused) request.

    ``time`` is when the request line was read; ``path`` includes ``?query``;
    ``status`` is the status line actually sent, ``0`` when none was (drop,
    hang, or the server stopped during ``delay``); ``bytes_sent`` counts body
    bytes handed to the socket; ``unknown_host`` marks hosts not in ``sites``.
    A refused ``CONNECT`` is logged with method ``CONNECT`` and an empty path.
    ``signature`` is what the web's ``request_verifier`` said about the
    request (``"valid"``, or why not); empty when the web has no verifier.
    """

    time: float
    method: str
    scheme: str
    host: str
    port: int
    path: str
    status: int
    bytes_sent: int
    user_agent: str
    unknown_host: bool
    signature: str = ""


def load_access_log(path: str | os.PathLike[str]) -> list[AccessEntry]:
    """Read a JSON-lines access log written with ``TestWeb(log_file=...)``."""
    entries: list[AccessEntry] = []
    with open(path, encoding="utf-8") as fp:
        for line in fp:
            if line.strip():
                entries.append(AccessEntry(**json.loads(line)))
    return entries


# --------------------------------------------------------------------------
# TLS material
# --------------------------------------------------------------------------

_CERT_LOCK = threading.Lock()
_CERT_FILES: tuple[Path, Path] | None = None
_TLS_CONTEXT: ssl.SSLContext | None = None
#: The test web's own certificate authority (key, certificate), and one server context per host name it was asked for.
_CA: tuple[Any, Any] | None = None
_HOST_CONTEXTS: dict[str, ssl.SSLContext] = {}


def certificate_files() -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)`` of this process's default server certificate.

    Generated on first use (SAN ``*.test``, ``localhost``, ``127.0.0.1``), issued
    by this process's test certificate authority (:func:`ca_certificate_file`),
    in a temporary directory that is removed at interpreter exit.
    """
    global _CERT_FILES
    with _CERT_LOCK:
        if _CERT_FILES is None:
            _CERT_FILES = _generate_certificate()
        return _CERT_FILES


def ca_certificate_file() -> Path:
    """The certificate of this process's test certificate authority (PEM).

    A client that trusts it (e.g. ``SSL_CERT_FILE`` for OpenSSL) accepts the
    certificate the test web presents for a ``*.test`` name it is asked for
    by SNI: one issued for exactly that name. Any other name gets the default
    certificate, which does not validly name it.
    """
    return certificate_files()[0].with_name("ca.pem")


def _server_tls_context() -> ssl.SSLContext:
    """Return the shared server-side TLS context (created once per process)."""
    global _TLS_CONTEXT
    cert_path, key_path = certificate_files()
    with _CERT_LOCK:
        if _TLS_CONTEXT is None:
            context = _context_for(cert_path, key_path)
            context.sni_callback = _choose_certificate
            _TLS_CONTEXT = context
        return _TLS_CONTEXT


def _context_for(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    # Offering only http/1.1 stops ALPN-capable clients from trying h2,
    # which this server does not speak.
    context.set_alpn_protocols(["http/1.1"])
    return context


def _choose_certificate(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _context: ssl.SSLContext) -> None:
    """SNI: a ``*.test`` name gets a certificate issued for it; others keep the default one."""
    host = (name or "").lower().rstrip(".")
    if not host.endswith(".test") or not all(c.isalnum() or c in ".-" for c in host) or len(host) > 253:
        return
    directory = certificate_files()[0].parent
    with _CERT_LOCK:
        context = _HOST_CONTEXTS.get(host)
        if context is None:
            context = _HOST_CONTEXTS[host] = _context_for(*_issue(host, directory))
    sock.context = context


def _issue(host: str, directory: Path, names: Sequence[Any] = ()) -> tuple[Path, Path]:
    """A server certificate for ``host`` (or ``names``) issued by the test CA, written as PEM files in ``directory``."""
    # Imported here because cryptography is comparatively slow to import and
    # only these one-off steps need it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    assert _CA is not None
    ca_key, ca_cert = _CA
    # EC keys are generated in microseconds, unlike RSA, keeping start() fast.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Back-dated so a client with a slightly skewed clock still accepts it.
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(list(names) or [x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / f"{host}.pem"
    key_path = directory / f"{host}.key.pem"
    # The chain: the leaf, then the CA (a client that trusts the CA needs nothing else).
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _generate_certificate() -> tuple[Path, Path]:
    """Create the test CA and the default server certificate it issues; write them as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    global _CA
    directory = Path(tempfile.mkdtemp(prefix="crawler-testweb-"))
    atexit.register(shutil.rmtree, directory, True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crawler test web CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _CA = (ca_key, ca_cert)
    names = [x509.DNSName("*.test"), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert_path, key_path = _issue("default", directory, names)
    return cert_path.rename(directory / "cert.pem"), key_path.rename(directory / "key.pem")


# --------------------------------------------------------------------------
# Server internals
# --------------------------------------------------------------------------


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """Split ``host[:port]`` (or ``[v6]:port``) into a normalised host and port."""
    authority = authority.strip().rpartition("@")[2]
    if authority.startswith("["):
        end = authority.find("]")
        host = authority[1:end] if end != -1 else authority[1:]
        rest = authority[end + 1 :] if end != -1 else ""
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = default_port
    # A trailing dot names the same host; folding it keeps site lookup simple.
    return host.lower().rstrip("."), port


def _parse_site_key(key: str) -> tuple[str | None, str]:
    """Turn a ``sites`` key into ``(scheme or None, host)``."""
    if "://" in key:
        scheme, _, rest = key.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme in site key {key!r}")
        host, _ = _split_authority(rest.split("/", 1)[0], 0)
        return scheme, host
    host, _ = _split_authority(key, 0)
    return None, host


def _pieces(source: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Yield non-empty slices of at most ``size`` bytes from ``source``."""
    for block in source:
        view = memoryview(block)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])


def _close_tls(sock: ssl.SSLSocket, *, notify: bool) -> None:
    """Close a TLS socket, sending close_notify first when ``notify``."""
    try:
        if notify:
            # Non-blocking so unwrap() sends our close_notify without waiting
            # for the peer's; clients reading a close-delimited body then see
            # a clean end instead of a truncation.
            sock.setblocking(False)
            try:
                sock.unwrap()
            except (OSError, ValueError):
                pass
    finally:
        sock.close()


class _SendallWriter(io.BufferedIOBase):
    """A ``wfile`` that always writes everything (plain ``makefile('wb', 0)`` may not)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class _Progress:
    """Mutable progress of one response, readable even after an exception."""

    __slots__ = ("began", "sent", "status")

    def __init__(self) -> None:
        self.status = 0
        self.sent = 0
        self.began = False


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can cut them."""

    daemon_threads = True
    # The default backlog of 5 drops SYNs under a crawler's burst of parallel
    # connections, which costs a one-second retransmit each time.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], web: TestWeb) -> None:
        self.web = web
        self.stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._open_socks: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup;
        # this server promises never to touch DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.stopping.is_set()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._run_handler,
            args=(request, client_address),
            name="testweb-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._open_socks.add(request)
            self._handler_threads.add(thread)
        thread.start()

    def _run_handler(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._open_socks.discard(request)
                self._handler_threads.discard(threading.current_thread())

    def track(self, sock: socket.socket) -> None:
        """Register a socket (e.g. a TLS wrapper) to be cut by stop()."""
        with self._conn_lock:
            self._open_socks.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        """Forget a socket registered with :meth:`track`."""
        with self._conn_lock:
            self._open_socks.discard(sock)

    def cut_connections(self) -> None:
        """Shut down every open connection so blocked handler threads return."""
        with self._conn_lock:
            socks = list(self._open_socks)
        for sock in socks:
            try:
                # The plain-socket method on purpose: SSLSocket.shutdown would
                # drop its SSL object under a thread that is still using it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass

    def join_handlers(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds in total for handler threads to end."""
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response is routine for a test web (timeouts,
        # early aborts); only genuine bugs deserve a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Per-connection handler: origin-form, absolute-form and CONNECT."""

    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body may leave in separate sends; without TCP_NODELAY the
    # second one can wait for a delayed ACK (~40 ms) on keep-alive connections.
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server_version = "crawler-testweb"

    def setup(self) -> None:
        super().setup()
        self.wfile = _SendallWriter(self.connection)
        self._tunnel: tuple[str, int] | None = None
        self._tls: ssl.SSLSocket | None = None
        self._abrupt = False
        self._request_time = time.time()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # The access log is the record; stderr chatter would drown test output.
        pass

    def parse_request(self) -> bool:
        # Called right after the request line is read, which is the moment the
        # access log's timestamp should describe.
        self._request_time = time.time()
        return super().parse_request()

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            # Covers resets, broken pipes, TLS errors and timeouts: the
            # connection is simply over.
            self.close_connection = True
        except ValueError:
            # Only stop() closing files under us produces this.
            if not self.server.stopping.is_set():
                raise

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass
        if self._tls is not None:
            self.server.untrack(self._tls)
            _close_tls(self._tls, notify=not self._abrupt)

    # -- request parsing ---------------------------------------------------

    def _raw_target(self) -> str:
        # parse_request rewrites a leading "//" in self.path; tests of URL
        # normalisation need the target exactly as the client sent it.
        words = self.requestline.split()
        return words[1] if len(words) >= 2 else self.path

    def _target(self) -> tuple[str, str, int, str, str]:
        """Return ``(scheme, host, port, path, query)`` for the current request."""
        raw = self._raw_target()
        absolute = raw[:8].lower().startswith(("http://", "https://"))
        if absolute:
            parts = urlsplit(raw)
            path, query = parts.path or "/", parts.query
        else:
            path, _, query = raw.partition("?")
            query = query.partition("#")[0]
        if self._tunnel is not None:
            # Inside a tunnel the CONNECT target decides, whatever the form.
            host, port = self._tunnel
            return "https", host, port, path, query
        if absolute:
            scheme = parts.scheme.lower()
            host, port = _split_authority(parts.netloc, 443 if scheme == "https" else 80)
            return scheme, host, port, path, query
        host, port = _split_authority(self.headers.get("Host", ""), 80)
        return "http", host, port, path, query

    def _read_body(self) -> bytes:
        """Read the request body so the connection can be reused."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            return b""
        data = self.rfile.read(length) if length > 0 else b""
        if len(data) < length:
            self.close_connection = True
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.rfile.readline(65537)
            if not size_line:
                self.close_connection = True
                break
            try:
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                self.close_connection = True
                break
            if size == 0:
                # Trailers must be consumed too, or the next request would be
                # parsed from them.
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)
        return b"".join(chunks)

    def _lower_headers(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return merged

    # -- dispatch ------------------------------------------------------------

    def _serve(self) -> None:
        """Handle any non-CONNECT method."""
        scheme, host, port, path, query = self._target()
        body = self._read_body()
        headers = self._lower_headers()
        user_agent = headers.get("user-agent", "")
        req = WebRequest(
            method=self.command,
            scheme=scheme,
            host=host,
            port=port,
            path=path,
            query=query,
            headers=headers,
            user_agent=user_agent,
            body=body,
        )
        web = self.server.web
        signature = web._verify(req)
        site = web.site_for(scheme, host)
        if site is None:
            response = _unknown_host_response(host)
        else:
            response = self._call_site(site, req)
        progress = _Progress()
        try:
            self._send(response, progress, head_only=self.command == "HEAD")
        except OSError:
            self.close_connection = True
            self._abrupt = True
        except Exception:
            # A failing body_factory is a fixture bug: say so, but keep serving.
            traceback.print_exc()
            self.close_connection = True
            self._abrupt = True
        finally:
            web._record(
                AccessEntry(
                    time=self._request_time,
                    method=self.command,
                    scheme=scheme,
                    host=host,
                    port=port,
                    path=req.target,
                    status=progress.status,
                    bytes_sent=progress.sent,
                    user_agent=user_agent,
                    unknown_host=site is None,
                    signature=signature,
                ),
                began=progress.began,
            )

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def do_CONNECT(self) -> None:
        """Open a TLS tunnel to a known host and keep serving inside it."""
        if self._tunnel is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, "CONNECT inside a tunnel")
            self.close_connection = True
            return
        host, port = _split_authority(self._raw_target(), 443)
        web = self.server.web
        if web.site_for("https", host) is None:
            self._refuse_connect(host, port)
            return
        self.connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tls = _server_tls_context().wrap_socket(
            self.connection, server_side=True, do_handshake_on_connect=False
        )
        # Registered before the handshake so stop() can interrupt a client
        # that connects and then never speaks TLS.
        self._tls = tls
        self.server.track(tls)
        tls.do_handshake()
        self.rfile.close()
        self.connection = tls
        self.rfile = tls.makefile("rb")
        self.wfile = _SendallWriter(tls)
        self._tunnel = (host, port)
        self.close_connection = False

    def _refuse_connect(self, host: str, port: int) -> None:
        body = f"unknown test host: {host}".encode()
        head = (
            "HTTP/1.1 502 Bad Gateway\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        web = self.server.web
        progress = _Progress()
        web._response_started()
        progress.began = True
        progress.status = 502
        self.close_connection = True
        try:
            self.connection.sendall(head + body)
            progress.sent = len(body)
        except OSError:
            self._abrupt = True
        finally:
            web._record(
                AccessEntry(
                    time=self._request_time,
                    method="CONNECT",
                    scheme="https",
                    host=host,
                    port=port,
                    path="",
                    status=progress.status,
                    bytes_sent=progress.sent,
                    user_agent=self.headers.get("User-Agent", ""),
                    unknown_host=True,
                ),
                began=True,
            )

    def _call_site(self, site: Site, req: WebRequest) -> WebResponse:
        try:
            return as_response(site.handle(req), req.path)
        except Exception as exc:
            # A broken fixture must be visible, not silently turned into a 500.
            traceback.print_exc()
            self.server.web._errors.append(exc)
            return text(f"site error: {exc!r}\n", status=500)

    # -- response writing ----------------------------------------------------

    def _send(self, resp: WebResponse, progress: _Progress, *, head_only: bool) -> None:
        """Write ``resp`` honouring its behaviours; update ``progress`` as it goes."""
        stopping = self.server.stopping
        if resp.drop:
            self.close_connection = True
            self._abrupt = True
            return
        if resp.hang:
            self._hang()
            return
        if resp.delay > 0 and stopping.wait(resp.delay):
            self.close_connection = True
            self._abrupt = True
            return

        status = resp.status
        bodiless_status = status in _NO_BODY_STATUSES or 100 <= status < 200
        send_body = not (head_only or bodiless_status)
        length: int | None
        static_body: bytes | None = None
        if resp.body_factory is not None:
            length = resp.content_length
        else:
            static_body = resp.body_bytes()
            length = len(static_body)

        user_names = {name.lower() for name, _ in resp.headers}
        closing = (
            self.close_connection
            or self.request_version != "HTTP/1.1"
            or (length is None and send_body)
            or "content-length" in user_names
            or "connection" in user_names
        )
        lines = [f"HTTP/1.1 {status} {resp.reason or _reason(status)}"]
        if "date" not in user_names:
            lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if "server" not in user_names:
            lines.append(f"Server: {self.server_version}")
        lines.extend(f"{name}: {value}" for name, value in resp.headers)
        if length is not None and not bodiless_status and "content-length" not in user_names:
            lines.append(f"Content-Length: {length}")
        if closing and "connection" not in user_names:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

        self.close_connection = closing
        conn = self.connection
        self.server.web._response_started()
        progress.began = True
        progress.status = status

        if not send_body:
            conn.sendall(head)
            return
        if static_body is not None and 0 < resp.hold_after < len(static_body):
            conn.sendall(head + static_body[: resp.hold_after])
            progress.sent = resp.hold_after
            deadline = time.monotonic() + resp.hold_timeout
            while time.monotonic() < deadline and not stopping.is_set():
                if self._client_gone():
                    self.close_connection = True
                    self._abrupt = True
                    return
                stopping.wait(_POLL)
            conn.sendall(static_body[resp.hold_after :])
            progress.sent = len(static_body)
            return
        if static_body is not None and resp.chunk_size <= 0 and len(static_body) <= _COALESCE_LIMIT:
            conn.sendall(head + static_body)
            progress.sent = len(static_body)
            return

        source: Iterable[bytes]
        if static_body is not None:
            source = (static_body,)
        else:
            assert resp.body_factory is not None
            source = resp.body_factory()
        size = resp.chunk_size if resp.chunk_size > 0 else _WRITE_SIZE
        pending_head = head
        for index, piece in enumerate(_pieces(source, size)):
            if index and resp.chunk_delay > 0:
                if stopping.wait(resp.chunk_delay) or self._client_gone():
                    # Stop quietly: the count so far is what the client got.
                    self.close_connection = True
                    self._abrupt = True
                    return
            conn.sendall(pending_head + piece if pending_head else piece)
            pending_head = b""
            progress.sent += len(piece)
        if pending_head:
            conn.sendall(pending_head)
        if length is not None and progress.sent != length:
            # The announced framing was wrong; the connection cannot be reused.
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Return True if the peer has closed or reset the connection."""
        conn = self.connection
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if not readable:
                return False
            # socket.socket.recv on purpose: it peeks at the raw TCP stream
            # even for a TLS socket, where EOF is what we want to detect.
            return socket.socket.recv(conn, 1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _hang(self) -> None:
        """Hold the connection without answering until the client or server quits."""
        self.close_connection = True
        self._abrupt = True
        conn = self.connection
        stopping = self.server.stopping
        while not stopping.is_set():
            try:
                readable, _, _ = select.select([conn], [], [], _POLL)
                if readable and not conn.recv(65536):
                    return
            except (OSError, ValueError):
                return


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _unknown_host_response(host: str) -> WebResponse:
    return text(f"unknown test host: {host}", status=502)


# --------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------


class TestWeb:
    """One local server impersonating many hosts, as origin and as proxy.

    Args:
        sites: Maps ``"host"`` (both schemes) or ``"http://host"`` /
            ``"https://host"`` (one scheme; wins over the plain key) to a
            :class:`Site`.
        port: Port to listen on; ``0`` picks a free one.
        log_file: If given, every access-log entry is also appended to this
            file as a JSON line (see :func:`load_access_log`).
        request_verifier: If given, called with every :class:`WebRequest`
            before its site answers; what it returns (``"valid"``, or why
            not) is the access-log entry's ``signature``. An exception it
            raises is recorded as ``"error: ..."``. Settable later as the
            ``request_verifier`` attribute.

    Use as a context manager or call :meth:`start`/:meth:`stop`.
    """

    # The name starts with "Test", and pytest would otherwise try to collect
    # it from any test module that imports it.
    __test__ = False

    def __init__(
        self,
        sites: Mapping[str, Site],
        *,
        port: int = 0,
        log_file: str | os.PathLike[str] | None = None,
        request_verifier: Callable[[WebRequest], str] | None = None,
    ) -> None:
        self.request_verifier = request_verifier
        self._sites: dict[tuple[str | None, str], Site] = {}
        for key, site in sites.items():
            self.add_site(key, site)
        self._requested_port = port
        self._log_file = Path(log_file) if log_file is not None else None
        self._log_fp: io.TextIOWrapper | None = None
        self._entries: list[AccessEntry] = []
        self._log_cond = threading.Condition()
        self._in_flight = 0
        self._errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- sites ---------------------------------------------------------------

    def add_site(self, key: str, site: Site) -> None:
        """Add or replace a site (``"host"`` or ``"scheme://host"`` key)."""
        if not isinstance(site, Site):
            raise TypeError(f"site for {key!r} is {type(site).__name__}, not a Site")
        self._sites[_parse_site_key(key)] = site

    def site_for(self, scheme: str, host: str) -> Site | None:
        """Return the site serving ``scheme://host``, or None if unknown."""
        site = self._sites.get((scheme, host))
        if site is None:
            site = self._sites.get((None, host))
        return site

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> TestWeb:
        """Bind 127.0.0.1 and serve in a background thread; return self."""
        if self._server is not None:
            raise RuntimeError("TestWeb already started")
        # Done up front so a broken cryptography install fails here, not in
        # the middle of a crawl.
        _server_tls_context()
        server = _Server(("127.0.0.1", self._requested_port), self)
        if self._log_file is not None:
            self._log_fp = open(self._log_file, "a", encoding="utf-8")  # noqa: SIM115
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL},
            name="testweb-serve",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections (including hanging ones)."""
        server = self._server
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(1.0)
        # Lets cut connections log their entries before callers read the log.
        server.join_handlers(0.5)
        self._server = None
        self._thread = None
        with self._log_cond:
            if self._log_fp is not None:
                self._log_fp.close()
                self._log_fp = None

    def __enter__(self) -> TestWeb:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is currently started."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while running)."""
        if self._server is None:
            raise RuntimeError("TestWeb is not running")
        return int(self._server.server_address[1])

    @property
    def proxy_url(self) -> str:
        """``http://127.0.0.1:PORT``, usable as HTTP and HTTPS proxy."""
        return f"http://127.0.0.1:{self.port}"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return proxy environment variables routing a subprocess here.

        Only the proxy variables are returned unless ``base`` is given (e.g.
        ``os.environ``), in which case they are laid over a copy of it.
        ``no_proxy`` is emptied so that no made-up host bypasses the proxy.
        """
        url = self.proxy_url
        variables = {
            "http_proxy": url,
            "https_proxy": url,
            "HTTP_PROXY": url,
            "HTTPS_PROXY": url,
            "no_proxy": "",
            "NO_PROXY": "",
        }
        return {**base, **variables} if base is not None else variables

    # -- access log ----------------------------------------------------------

    def _verify(self, req: WebRequest) -> str:
        verifier = self.request_verifier
        if verifier is None:
            return ""
        try:
            return str(verifier(req))
        except Exception as exc:  # noqa: BLE001 - a verdict, whatever went wrong
            return f"error: {type(exc).__name__}: {exc}"

    def _response_started(self) -> None:
        with self._log_cond:
            self._in_flight += 1

    def _record(self, entry: AccessEntry, *, began: bool) -> None:
        line = json.dumps(dataclasses.asdict(entry)) + "\n" if self._log_fp else None
        with self._log_cond:
            self._entries.append(entry)
            if began:
                self._in_flight -= 1
            if line is not None and self._log_fp is not None:
                self._log_fp.write(line)
                self._log_fp.flush()
            self._log_cond.notify_all()

    def _snapshot(self) -> list[AccessEntry]:
        # An entry is appended just after its last byte is sent, so a client
        # could read the log a hair before its own request appears.  Waiting
        # for responses already being written closes that race; requests
        # still in delay/hang do not count, so this never waits on them.
        with self._log_cond:
            self._log_cond.wait_for(lambda: self._in_flight <= 0, timeout=_SETTLE_TIMEOUT)
            entries = list(self._entries)
        entries.sort(key=lambda entry: entry.time)
        return entries

    @property
    def log(self) -> list[AccessEntry]:
        """A snapshot of the access log, in the order request lines were read."""
        return self._snapshot()

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by site handlers (each also answered with a 500)."""
        return list(self._errors)

    def requests(
        self,
        host: str | None = None,
        scheme: str | None = None,
        path_prefix: str | None = None,
    ) -> list[AccessEntry]:
        """Return log entries matching all given filters."""
        wanted_host = host.lower() if host is not None else None
        return [
            entry
            for entry in self._snapshot()
            if (wanted_host is None or entry.host == wanted_host)
            and (scheme is None or entry.scheme == scheme)
            and (path_prefix is None or entry.path.startswith(path_prefix))
        ]

    def paths(self, host: str, scheme: str | None = None) -> list[str]:
        """Return the requested paths (with query) for ``host``, in order."""
        return [entry.path for entry in self.requests(host=host, scheme=scheme)]

    def wait_for_requests(
        self, host: str, count: int, *, timeout: float = 60.0, process: Any = None, after: float | None = None
    ) -> int:
        """Block until ``host`` has been asked ``count`` times (counting only
        requests logged later than ``after``, a ``time.time()``, if given),
        ``timeout`` seconds passed, or ``process`` (a ``subprocess.Popen``, say
        the crawl) ended.

        Returns how many requests ``host`` has seen, for the caller to assert on.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = sum(1 for e in self.requests(host=host) if after is None or e.time > after)
            if seen >= count or time.monotonic() >= deadline or (process is not None and process.poll() is not None):
                return seen
            time.sleep(0.02)

    def unknown_hosts(self) -> list[str]:
        """Return the distinct unknown host names requested, first seen first."""
        seen: dict[str, None] = {}
        for entry in self._snapshot():
            if entry.unknown_host:
                seen.setdefault(entry.host, None)
        return list(seen)

    def clear_log(self) -> None:
        """Forget all access-log entries (the log file is left alone)."""
        with self._log_cond:
            self._entries.clear()


# --------------------------------------------------------------------------
# Separate-process entry point
# --------------------------------------------------------------------------


def load_sites(spec: str) -> Mapping[str, Site]:
    """Resolve ``MODULE:ATTR`` to a sites mapping.

    ``ATTR`` may be dotted and may name a mapping or a zero-argument callable
    returning one.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTR, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Mapping) and callable(obj):
        obj = obj()
    if not isinstance(obj, Mapping):
        raise TypeError(f"{spec} is {type(obj).__name__}, not a mapping of sites")
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``--sites MODULE:ATTR`` until SIGTERM/SIGINT; print ``READY <port>``."""
    parser = argparse.ArgumentParser(
        prog="python -m crawler.testing.web",
        description="Serve made-up test sites as origin server and HTTP proxy.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--sites", required=True, help="MODULE:ATTR naming the sites mapping")
    parser.add_argument("--log-file", help="append access-log entries here as JSON lines")
    args = parser.parse_args(argv)

    sites = load_sites(args.sites)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    web = TestWeb(sites, port=args.port, log_file=args.log_file)
    web.start()
    try:
        print(f"READY {web.port}", flush=True)
        # A timed wait keeps the main thread returning to the interpreter so
        # the signal handler gets to run promptly.
        while not stop_requested.wait(0.2):
            pass
    finally:
        web.stop()
    return 0


if __name__ == "__main__":
    # Under "python -m" this file runs as __main__, a second copy of the
    # module: sites built by the user's module subclass the real
    # crawler.testing.web.Site, so run main() from that canonical module or
    # its isinstance checks would reject them.
    if __spec__ is not None:
        sys.exit(importlib.import_module(__spec__.name).main())
    sys.exit(main())
