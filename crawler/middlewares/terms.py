"""Notices and platform terms at download time: either can change while a request waits.

The same decision is taken before scheduling (crawler.extensions.scheduling);
this second check catches requests queued before a policy was tightened, and
paces every host at the rate its policy (or policies/default.yaml) sets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scrapy.utils.httpobj import urlparse_cached

from crawler.pacing import pace
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler


class TermsMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TermsMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        decision = self.runtime.notices.decide(request.url)
        if not decision.allowed:
            self.runtime.refuse_request(decision, "download", request)
        policies = self.runtime.policies
        decision = policies.decide(request.url, datetime.now(UTC).date())
        if not decision.allowed:
            self.runtime.refuse_request(decision, "download", request)
        rate = policies.rate_for(urlparse_cached(request).hostname or "")
        pace(self.crawler, request, rate.min_delay, rate.max_concurrency)
        request.meta["compliance_terms"] = {"reason": decision.reason, "source": decision.source, "policies": policies.version}
