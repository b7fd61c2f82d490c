"""Every request carries the honest User-Agent, whatever a spider set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler


class IdentityMiddleware:
    """Overwrites ``User-Agent`` with ``<bot>/<version> (+<contact>)``.

    Scrapy's own UserAgentMiddleware only fills the header in when a spider
    has not; a compliant crawler never presents itself as something else.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.user_agent = ComplianceRuntime.of(crawler).config.user_agent

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> IdentityMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        request.headers[b"User-Agent"] = self.user_agent
