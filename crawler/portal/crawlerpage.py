"""The page that explains the crawler, as the portal serves it at ``/``.

One function, :func:`crawler_page_content`, gives the page as data. Until
``scrapy compliance page`` (the crawler page of the "verifiable identity"
work) lands, it builds a minimal page from the real configuration here;
then its body becomes a call to that renderer's content function, and
the portal's template shows whatever it returns (the keys below are the
minimum the template needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


def crawler_page_content(settings: BaseSettings) -> dict[str, Any]:
    from crawler.config import Config
    from crawler.identity.config import identity_settings
    from crawler.identity.signing import DIRECTORY_PATH

    config = Config.from_settings(settings)
    identity = identity_settings(settings)
    operator = str(settings.get("COMPLIANCE_OPERATOR_NAME") or "").strip() or f"the operator reachable at {config.contact}"
    return {
        "operator": operator,
        "contact": config.contact,
        "product_token": config.bot_name,
        "user_agent": config.user_agent,
        "purposes": sorted(config.purposes),
        "how_to_block": [
            f"robots.txt: a group for User-agent: {config.bot_name} (RFC 9309), e.g. 'Disallow: /'; Crawl-delay is honoured",
            "X-Robots-Tag or <meta name=\"robots\"> noindex / noai, TDMRep (tdm-reservation), Content-Usage (IETF aipref)",
        ],
        "how_to_object": "File an objection at /objections/new: collection from its scope stops within a second; "
        "once you prove control of the site, what we hold is purged and you get a receipt you can check.",
        "key_directory": DIRECTORY_PATH if identity.enabled else None,
    }
