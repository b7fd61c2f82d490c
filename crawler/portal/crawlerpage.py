"""The page that explains the crawler, as the portal serves it at ``/``.

The same content as ``scrapy compliance page`` writes
(:func:`crawler.identity.page.content_from_settings`), with objections filed
through the portal's own form. Without a usable key file the page is still
served, saying so where the key directory would be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

    from crawler.compliance.policy import PolicySet

#: Where the portal takes objections (crawler/portal/app.py).
OBJECTION_PATH = "/objections/new"


def crawler_page_content(settings: BaseSettings, policies: PolicySet) -> dict[str, Any]:
    from crawler.identity.page import PageSettingError, content_from_settings

    rate = policies.default.rate
    try:
        return content_from_settings(settings, rate.min_delay, rate.max_concurrency, objection_url=OBJECTION_PATH)
    except PageSettingError as exc:
        # The key file is missing or unreadable: a page without the keys, saying why.
        unsigned = content_from_settings(_without_signing(settings), rate.min_delay, rate.max_concurrency, objection_url=OBJECTION_PATH)
        unsigned["identity"]["signing"] = True
        unsigned["identity"]["text"] = f"Every request is signed (Web Bot Auth), but the key directory cannot be shown now: {exc}."
        return unsigned


def _without_signing(settings: BaseSettings) -> BaseSettings:
    copied = settings.copy()
    copied.set("COMPLIANCE_SIGNING", False, priority="cmdline")
    return copied
