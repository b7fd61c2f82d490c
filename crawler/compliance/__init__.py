"""The pure compliance core: every decision the crawler makes, as plain Python.

Nothing in this package imports Scrapy. The Scrapy adapters in
``crawler.middlewares``, ``crawler.pipelines``, ``crawler.extensions`` and
``crawler.commands`` only translate between Scrapy objects and these functions.
"""

from crawler.compliance.decision import ALLOW, Decision

__all__ = ["ALLOW", "Decision"]
