"""Recorded real-world responses: vcrpy cassettes, recorded with ``requests`` and replayed inside Scrapy.

vcrpy patches HTTP client libraries (requests, httpx, ...), not Scrapy's
Twisted downloads. So recording uses ``requests`` under ``vcr.use_cassette``
(``scrapy cassette record``), and replay is a Scrapy download handler built on
vcrpy's own API (``Cassette.load``, ``can_play_response_for``,
``play_response``): the cassette format is vcrpy's, never re-implemented.

With ``COMPLIANCE_CASSETTE = path`` the add-on routes http and https through
:class:`CassetteDownloadHandler`. A request the cassette does not hold is an
error, not a network fetch: the crawl stays offline and deterministic, and the
``crawl`` command exits 1 naming every missing request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import NotConfigured, StopDownload
from scrapy.http import Headers
from scrapy.responsetypes import responsetypes

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger("crawler.compliance")

#: Requests a replaying crawl asked for that its cassette lacks (read by the crawl command at exit).
MISSES: list[str] = []


class CassetteError(ValueError):
    """The cassette file cannot be replayed; the message is one line naming the file (and line)."""


def check_cassette(path: str) -> None:
    """Refuse, in one line, a cassette that is missing, not a regular file, or nested too deeply.

    vcrpy composes the YAML recursively: a few hundred bytes of nested
    brackets would end in a RecursionError (or worse, in libyaml) instead of
    an error naming the file. A FIFO or a device is never opened or read.
    """
    from crawler.compliance.files import NotAFile, read_regular_file
    from crawler.compliance.yamlfile import YamlTooDeep, check_nesting

    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        raise CassetteError(f"COMPLIANCE_CASSETTE: {path} does not exist (record one with `scrapy cassette record`)") from None
    except NotAFile as exc:
        raise CassetteError(f"COMPLIANCE_CASSETTE: {exc}") from None
    except OSError as exc:
        raise CassetteError(f"COMPLIANCE_CASSETTE: {path}: cannot read ({exc.strerror or exc})") from None
    try:
        check_nesting(data, path)
    except YamlTooDeep as exc:
        raise CassetteError(f"COMPLIANCE_CASSETTE: {exc}") from None


class CassetteMiss(RuntimeError):
    """The cassette holds no response for this request; replay never goes to the network."""


def _quiet_vcr() -> None:
    """vcrpy logs every request and body it matches at DEBUG/INFO; a crawl's log is not the place."""
    for name in ("vcr", "vcr.cassette", "vcr.stubs", "vcr.matchers"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _matchers() -> tuple[Any, ...]:
    from vcr import matchers

    return (matchers.method, matchers.scheme, matchers.host, matchers.port, matchers.path, matchers.query)


def load_cassette(path: str) -> Any:
    """A vcrpy cassette for replay only (``record_mode=none``), each response playable repeatedly."""
    from vcr.cassette import Cassette
    from vcr.record_mode import RecordMode

    _quiet_vcr()
    try:
        check_cassette(path)
    except CassetteError as exc:
        raise NotConfigured(str(exc)) from None
    return Cassette.load(path=path, record_mode=RecordMode.NONE, match_on=_matchers(), allow_playback_repeats=True)


class CassetteDownloadHandler:
    """Answers every http(s) request from the cassette named by ``COMPLIANCE_CASSETTE``."""

    lazy = False

    def __init__(self, crawler: Crawler) -> None:
        path = crawler.settings.get("COMPLIANCE_CASSETTE")
        if not path:
            raise NotConfigured("COMPLIANCE_CASSETTE is not set")
        self.crawler = crawler
        self.path = str(path)
        self.cassette = load_cassette(self.path)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CassetteDownloadHandler:
        return cls(crawler)

    async def download_request(self, request: Request) -> Response:
        from vcr.request import Request as VcrRequest

        recorded = VcrRequest(request.method, request.url, request.body or None, request.headers.to_unicode_dict())
        if not self.cassette.can_play_response_for(recorded):
            message = f"{request.method} {request.url} is not in the cassette {self.path}"
            MISSES.append(message)
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/cassette/missing")
            logger.error("Cassette miss: %s (replay never goes to the network)", message)
            raise CassetteMiss(message)
        played = self.cassette.play_response(recorded)
        headers = Headers({name: values for name, values in played["headers"].items()})
        body = played["body"]["string"]
        body = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        status = int(played["status"]["code"])
        spider = self.crawler.spider
        # The same signals a network download sends: the image gates cut on them.
        for signal, extra in ((signals.headers_received, {"headers": headers, "body_length": len(body)}),
                              (signals.bytes_received, {"data": body})):  # fmt: skip
            for _, result in self.crawler.signals.send_catch_log(signal=signal, request=request, spider=spider, **extra):
                failure = getattr(result, "value", None)
                if isinstance(failure, StopDownload):
                    if failure.fail:
                        raise failure
                    body = b""
        respcls = responsetypes.from_args(headers=headers, url=request.url, body=body)
        return respcls(url=request.url, status=status, headers=headers, body=body, request=request, protocol="HTTP/1.1")

    async def close(self) -> None:
        return None


def record(urls: Iterable[str], path: str, user_agent: str, token: str, *, verify: Any = True, timeout: float = 30) -> list[str]:
    """Fetch robots.txt, /.well-known/tdmrep.json and ``urls`` with ``requests`` under vcrpy; return what was recorded.

    Pages robots.txt disallows for ``token``, and image URLs, are not fetched
    (the recorder is a crawler too); the returned list says what was skipped.
    """
    import requests
    import vcr

    _quiet_vcr()
    from crawler.compliance.content import answer_decision
    from crawler.compliance.images import url_decision
    from crawler.compliance.robots import RobotsRules, RobotsState, classify_status

    notes: list[str] = []
    def no_images(response: dict[str, Any]) -> dict[str, Any] | None:
        """vcrpy's before_record_response: an image answer (by headers or by its bytes), or any body
        that is not text, is never written (the crawl would refuse it anyway)."""
        headers = {k.lower(): ",".join(v) if isinstance(v, list) else str(v) for k, v in response.get("headers", {}).items()}
        body = (response.get("body") or {}).get("string") or b""
        decision = answer_decision(
            headers.get("content-type"), headers.get("content-disposition"), headers.get("content-encoding", ""),
            body.encode("latin-1", "replace") if isinstance(body, str) else body,
        )  # fmt: skip
        if decision.allowed:
            return response
        what = "an image answer" if decision.reason.startswith("image.") else "not text"
        notes.append(f"not recorded: {what} ({decision.rule})")
        return None

    recorder = vcr.VCR(
        record_mode="all", match_on=["method", "scheme", "host", "port", "path", "query"], before_record_response=no_images
    )
    origins: dict[str, Any] = {}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with recorder.use_cassette(str(target)), requests.Session() as session:
        session.headers["User-Agent"] = user_agent

        def get(url: str) -> requests.Response:
            response = session.get(url, timeout=timeout, allow_redirects=False, verify=verify)
            notes.append(f"recorded {url} (HTTP {response.status_code})")
            return response

        for url in urls:
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            if origin not in origins:
                robots = get(origin + "/robots.txt")
                state = classify_status(robots.status_code)
                origins[origin] = (
                    RobotsRules(robots.content, origin + "/robots.txt") if state is RobotsState.RULES else state
                )
                get(origin + "/.well-known/tdmrep.json")
            rules = origins[origin]
            if url_decision(url).allowed is False:
                notes.append(f"skipped {url}: an image URL (never collected)")
                continue
            if rules is RobotsState.UNREACHABLE or (isinstance(rules, RobotsRules) and not rules.decide(url, token).allowed):
                notes.append(f"skipped {url}: robots.txt does not allow it for {token}")
                continue
            if parts.path not in ("/robots.txt", "/.well-known/tdmrep.json"):
                get(url)
    return notes
