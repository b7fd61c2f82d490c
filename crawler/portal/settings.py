"""The portal's settings (COMPLIANCE_OBJECTION_*, COMPLIANCE_ADMIN_TOKEN, ...), read and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

    from crawler.compliance.store import Store
    from crawler.portal.objections import ObjectionBook

DEFAULT_RATE_LIMIT = "5/minute;30/hour"


@dataclass(frozen=True)
class PortalSettings:
    pending_days: float
    #: None: the admin pages are off (there is no default token).
    admin_token: str | None
    #: Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's list syntax); empty: none.
    trusted_proxies: tuple[str, ...]
    #: Per client, for filing objections, verifying and logging in (limits' syntax, ';'-separated).
    rate_limit: str
    contact: str
    purposes: tuple[str, ...]


def portal_settings(settings: BaseSettings) -> PortalSettings:
    from crawler.compliance.optouts import parse_purposes
    from crawler.config import ConfigError

    raw_days = settings.get("COMPLIANCE_OBJECTION_PENDING_DAYS", 14)
    try:
        days = float(raw_days)
    except (TypeError, ValueError):
        raise ConfigError(f"COMPLIANCE_OBJECTION_PENDING_DAYS: expected a number of days, got {raw_days!r}") from None
    if not 0 < days <= 365:
        raise ConfigError(f"COMPLIANCE_OBJECTION_PENDING_DAYS: must be more than 0 and at most 365, got {raw_days!r}")
    token = str(settings.get("COMPLIANCE_ADMIN_TOKEN") or "").strip() or None
    if token is not None and len(token) < 16:
        raise ConfigError("COMPLIANCE_ADMIN_TOKEN: at least 16 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    proxies = settings.get("COMPLIANCE_TRUSTED_PROXIES") or ()
    if isinstance(proxies, str):
        proxies = [p.strip() for p in proxies.split(",") if p.strip()]
    if "*" in proxies:
        raise ConfigError("COMPLIANCE_TRUSTED_PROXIES: '*' would let any client choose its own address; list the proxies")
    rate = str(settings.get("COMPLIANCE_PORTAL_RATE_LIMIT") or DEFAULT_RATE_LIMIT)
    try:
        from limits import parse_many
    except ImportError:
        parse_many = None  # `scrapy objection` without the portal extra: the limit is the portal's concern
    if parse_many is not None:
        try:
            parse_many(rate)
        except ValueError as exc:
            raise ConfigError(f"COMPLIANCE_PORTAL_RATE_LIMIT: {rate!r}: {exc}") from None
    return PortalSettings(
        pending_days=days, admin_token=token, trusted_proxies=tuple(proxies), rate_limit=rate,
        contact=str(settings.get("COMPLIANCE_CONTACT") or ""),
        purposes=tuple(sorted(parse_purposes(settings.get("COMPLIANCE_PURPOSES", "search,train-ai,archive")))),
    )  # fmt: skip


def open_book(settings: BaseSettings, store: Store, policies: Any) -> ObjectionBook:
    """The objection book on ``store``, completing objections as ``scrapy notice add`` would (files, purge locations)."""
    from crawler.config import machine_name, notices_dir
    from crawler.notices_cli import extra_locations
    from crawler.portal.objections import Completion, ObjectionBook

    try:
        directory: Path | None = notices_dir(settings)
    except Exception:  # noqa: BLE001 - outside a project with no policy folder: the store alone holds notices
        directory = None
    completion = Completion(
        machine=machine_name(settings), policies=policies, notices_dir=directory,
        extra_locations=lambda: extra_locations(settings),
    )  # fmt: skip
    return ObjectionBook(store, pending_days=portal_settings(settings).pending_days, completion=completion)
