"""Signs every request as it leaves for the network (Web Bot Auth)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scrapy.exceptions import NotConfigured

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger("crawler.identity")


class RequestSigningMiddleware:
    """Adds ``Signature-Input``, ``Signature`` (and ``Signature-Agent``) to every http(s) request.

    Placed last among the downloader middlewares (the add-on gives it 980),
    so it sees each request right before the downloader queues it: pages,
    robots.txt and tdmrep.json fetches (they go through the engine's
    downloader too), redirects and retries (new requests that pass through
    the chain again, and get a fresh signature), in every worker of a
    cluster. A request answered from the HTTP cache never reaches it and
    is never sent. Signature headers a spider set are replaced.

    Without a key file, the first crawl creates one and says so in one
    INFO line; the private key is never logged (``SigningKey`` has no
    printable private half).
    """

    def __init__(self, crawler: Crawler) -> None:
        from crawler.config import ConfigError
        from crawler.identity import keyring
        from crawler.identity.config import identity_settings
        from crawler.identity.signing import RequestSigner

        try:
            options = identity_settings(crawler.settings)
        except ConfigError as exc:
            # The crawl command's preflight reports this before start; a
            # crawl started another way must not go out unsigned.
            raise RuntimeError(str(exc)) from None
        if not options.enabled:
            raise NotConfigured("COMPLIANCE_SIGNING is off: requests go out unsigned")
        ring, created = keyring.load_or_create(options.key_path)
        if created:
            logger.info(
                "created a new signing key %s in %s (publish its directory: scrapy identity directory)",
                ring.current.key_id, options.key_path,
            )  # fmt: skip
        self.signer = RequestSigner(ring.current, lifetime=options.lifetime, agent=options.agent)
        self.stats = crawler.stats
        crawler.stats.set_value("compliance/identity/key_id", ring.current.key_id)  # type: ignore[union-attr]

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RequestSigningMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        if not request.url.startswith(("https://", "http://")):
            return
        headers = request.headers
        for name, value in self.signer.headers(request.method, request.url).items():
            headers[name] = value
        self.stats.inc_value("compliance/identity/signed")  # type: ignore[union-attr]
