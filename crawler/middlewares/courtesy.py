"""Courtesy under distress, in a crawl: 429, 5xx and timeouts pause the whole host.

The decision is the pure core's (crawler/compliance/courtesy.py); this module
applies it where a request really leaves and a response really arrives: the
transfer gate (crawler/extensions/notices.py wraps the downloader's handler
dispatcher). There, after a request has left its download slot and before
the transfer starts, :meth:`HostCourtesy.wait_turn` holds it while its host
is paused; and the answer (or the network failure) is judged there, before
the slot or the cluster lets the next request of the host go, so no request
slips out between a 503 and the pause it causes. In a cluster the pause, the
failure count and the skip live in Redis (crawler/cluster.py) and hold every
worker.

Scrapy's RetryMiddleware still decides *whether* to retry (RETRY_TIMES,
RETRY_HTTP_CODES); its retry is a new request that passes the transfer gate
like any other, so it waits for the host's pause instead of leaving at once.
Two thin middlewares complete this:

- :class:`CourtesyGate` (before robots.txt) refuses requests to a skipped
  host, so not even its robots.txt is fetched again;
- :class:`CourtesyRetryGuard` (between the downloader and RetryMiddleware)
  refuses the request whose answer skipped its host, so it is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn
from weakref import WeakKeyDictionary

from scrapy.utils.httpobj import urlparse_cached

from crawler.compliance.courtesy import HostBoard, Outcome, Verdict, judge, parse_retry_after
from crawler.compliance.decision import Decision
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger("crawler.compliance")

#: Request meta: the host's courtesy generation when the request left (see the core's docstring).
GENERATION_META = "compliance_courtesy_generation"
#: Request meta: the Decision that skipped the host, set on the request whose answer caused it.
SKIP_META = "compliance_courtesy_skip"
SKIP_REASON = "courtesy.retry-after-too-long"
#: A skipped host stays skipped at most this long (a crawl rarely lasts a week; a Retry-After of a year is "never").
MAX_SKIP = 7 * 86_400.0
#: Network failures that count like a 5xx: the host did not answer in time, or dropped the connection.
#: (A name that does not resolve is not the host's distress, and is not counted.)
_FAILURES = (
    "scrapy.exceptions.DownloadTimeoutError",
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.DownloadFailedError",
    "scrapy.exceptions.ResponseDataLossError",
    "twisted.internet.error.TimeoutError",
    "twisted.internet.error.TCPTimedOutError",
    "twisted.internet.error.ConnectionRefusedError",
    "twisted.internet.error.ConnectError",
    "twisted.internet.error.ConnectionLost",
    "twisted.internet.error.ConnectionDone",
    "twisted.web._newclient.ResponseNeverReceived",
    "twisted.web._newclient.ResponseFailed",
)

_INSTANCES: WeakKeyDictionary[Crawler, HostCourtesy] = WeakKeyDictionary()


def _failure_types() -> tuple[type[BaseException], ...]:
    from scrapy.utils.misc import load_object

    found = []
    for path in _FAILURES:
        try:
            found.append(load_object(path))
        except (ImportError, AttributeError, NameError):  # a name a future Scrapy or Twisted dropped
            continue
    return tuple(found)


def host_of_request(request: Request) -> str:
    return (urlparse_cached(request).hostname or "").lower()


class HostCourtesy:
    """One crawl's courtesy: the host board (or the cluster's), the rules, stats and log lines."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        self.rules = self.runtime.config.courtesy
        self.board = HostBoard(time.monotonic)
        self.failure_types = _failure_types()
        self._signer: Any = None
        self._signer_found = False
        #: host -> (monotonic end of its pause, cause), for the live progress line (crawler/extensions/progress.py).
        self.pauses: dict[str, tuple[float, str]] = {}

    @classmethod
    def of(cls, crawler: Crawler) -> HostCourtesy:
        found = _INSTANCES.get(crawler)
        if found is None:
            found = _INSTANCES[crawler] = cls(crawler)
        return found

    # -- before a transfer -------------------------------------------------------

    def refuse_skipped(self, request: Request, detail: str, gate: str) -> NoReturn:
        decision = Decision.refuse(
            SKIP_REASON, rule=f"Retry-After above COMPLIANCE_MAX_RETRY_AFTER {self.rules.max_retry_after:g}s",
            source=host_of_request(request), detail=detail,
        )  # fmt: skip
        self.runtime.refuse_request(decision, gate, request)

    def check_skipped(self, request: Request, gate: str) -> None:
        detail = self.board.skipped(host_of_request(request))
        if detail is not None:
            self.refuse_skipped(request, detail, gate)

    def adopt_cluster_skip(self, request: Request, host: str) -> NoReturn:
        """Another worker skipped ``host``: remember it here too (so robots.txt is not asked again), and refuse."""
        found = self.runtime.cluster.host_skipped(host)
        detail, seconds = found if found is not None else ("skipped by another worker of the cluster", 60.0)
        self.board.skip(host, seconds, detail)
        self.refuse_skipped(request, detail, "transfer")

    async def wait_turn(self, request: Request) -> bool:
        """Single process: hold ``request`` while its host is paused; True when it waited."""
        host = host_of_request(request)
        waited = False
        while True:
            wait, generation, skipped = self.board.turn(host)
            if skipped is not None:
                self.refuse_skipped(request, skipped, "transfer")
            if wait <= 0:
                request.meta[GENERATION_META] = generation
                return waited
            waited = True
            await asyncio.sleep(wait)

    def resign(self, request: Request) -> None:
        """Sign ``request`` again after a pause: its signature was made before it waited and may have expired."""
        if not self._signer_found:
            from crawler.identity.middleware import RequestSigningMiddleware

            downloader = self.crawler.engine.downloader  # type: ignore[union-attr]
            self._signer = next((m for m in downloader.middleware.middlewares if isinstance(m, RequestSigningMiddleware)), None)
            self._signer_found = True
        if self._signer is not None:
            self._signer.process_request(request)

    # -- after a transfer --------------------------------------------------------

    def answered(self, request: Request, response: Response) -> None:
        """Judge a response that crossed the transfer gate (a cached one never does)."""
        retry_after = None
        if response.status == 429 or response.status >= 500:
            raw = response.headers.get(b"Retry-After")
            date = response.headers.get(b"Date")
            retry_after = parse_retry_after(
                raw.decode("latin-1") if raw else None, datetime.now(UTC), date.decode("latin-1") if date else None
            )
        self._judge(request, Outcome(response.status, retry_after))

    def failed(self, request: Request, exc: BaseException) -> None:
        """Judge a transfer that failed: timeouts and dropped connections count like a 5xx."""
        if isinstance(exc, self.failure_types):
            self._judge(request, Outcome(None, failure=type(exc).__name__))

    def _judge(self, request: Request, outcome: Outcome) -> None:
        generation = request.meta.get(GENERATION_META)
        if generation is None:
            return
        host = host_of_request(request)
        cluster = self.runtime.cluster
        if not outcome.distress:
            had = cluster.host_succeeded(host, generation) if cluster is not None else self.board.succeeded(host, generation)
            if had:
                self._stat("compliance/courtesy/recovered")
                logger.info("Host %s answered again after %d failure(s) in a row; its back-off is reset", host, had,
                            extra={"spider": self.crawler.spider})  # fmt: skip
            return
        failures = cluster.host_failed(host, generation) if cluster is not None else self.board.failed(host, generation)
        verdict = judge(outcome, failures or 0, self.rules, counted=failures is not None)
        self._apply(request, host, outcome, verdict)

    def _apply(self, request: Request, host: str, outcome: Outcome, verdict: Verdict) -> None:
        cluster = self.runtime.cluster
        spider = self.crawler.spider
        if verdict.action == "skip":
            seconds = min(verdict.seconds, MAX_SKIP)
            detail = f"{outcome.describe()} from {request.url}; the host is skipped for {seconds:g}s"
            self.board.skip(host, seconds, detail)
            if cluster is not None:
                cluster.skip_host(host, seconds, detail)
            self._stat("compliance/courtesy/skipped_hosts")
            logger.warning("Skipping host %s: %s asks for longer than COMPLIANCE_MAX_RETRY_AFTER %gs", host,
                           outcome.describe(), self.rules.max_retry_after, extra={"spider": spider})  # fmt: skip
            request.meta[SKIP_META] = detail
            return
        if verdict.action != "pause":
            return
        left = cluster.pause_host(host, verdict.seconds) if cluster is not None else self.board.pause(host, verdict.seconds)
        self.pauses[host] = (time.monotonic() + left, verdict.cause)
        self._stat("compliance/courtesy/paused")
        self._stat(f"compliance/courtesy/paused/{verdict.cause}")
        self._stat("compliance/courtesy/pause_seconds", verdict.seconds)
        counted = f"failure {verdict.failures} in a row" if verdict.failures else "an answer to an earlier request"
        logger.info("Pausing host %s for %.3gs (%s): %s, %s", host, left, verdict.cause, outcome.describe(), counted,
                    extra={"spider": spider})  # fmt: skip

    def waiting(self) -> dict[str, str]:
        """The hosts this process knows to be paused now, and why (``retry-after``, ``backoff``)."""
        now = time.monotonic()
        for host in [h for h, (until, _) in self.pauses.items() if until <= now]:
            del self.pauses[host]
        return {host: cause for host, (_, cause) in self.pauses.items()}

    def _stat(self, key: str, value: float = 1) -> None:
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value(key, value)


class CourtesyGate:
    """Refuses requests to a skipped host before robots.txt is consulted (its robots.txt included)."""

    def __init__(self, crawler: Crawler) -> None:
        self.courtesy = HostCourtesy.of(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CourtesyGate:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        self.courtesy.check_skipped(request, "download")


class CourtesyRetryGuard:
    """Refuses the request whose answer skipped its host (a Retry-After above the cap), before RetryMiddleware retries it."""

    def __init__(self, crawler: Crawler) -> None:
        self.courtesy = HostCourtesy.of(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CourtesyRetryGuard:
        return cls(crawler)

    def process_response(self, request: Request, response: Response) -> Response:
        detail = request.meta.pop(SKIP_META, None)
        if detail is not None:
            self.courtesy.refuse_skipped(request, detail, "download")
        return response

