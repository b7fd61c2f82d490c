"""The data-protection settings (``COMPLIANCE_RETENTION_*``, ``COMPLIANCE_ERASURE_*``, ``COMPLIANCE_EXPORT_*``), read and checked.

Takes any mapping with Scrapy's ``get`` (a ``Settings``); imports nothing
from Scrapy. A bad value is a :class:`crawler.config.ConfigError` naming the
setting, what was found and what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "COMPLIANCE_RETENTION_AUTO": True,
    "COMPLIANCE_RETENTION_INTERVAL": 86400.0,
    "COMPLIANCE_RETENTION_LOCK_TTL": 600.0,
    "COMPLIANCE_ERASURE_KEY": "",
    "COMPLIANCE_ERASURE_PHONE_REGION": "",
    "COMPLIANCE_ERASURE_CHECK_INTERVAL": 1.0,
    "COMPLIANCE_EXPORT_WEBHOOKS": {},
    "COMPLIANCE_EXPORT_DEADLINE_DAYS": 30,
    "COMPLIANCE_EXPORT_DESTINATIONS": {},
}


_TRUTH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class DataProtectionConfig:
    retention_auto: bool
    retention_interval: float
    retention_lock_ttl: float
    #: None outside a project with a relative COMPLIANCE_DATA_DIR (then erasing needs COMPLIANCE_ERASURE_KEY).
    erasure_key: Path | None
    phone_region: str | None
    erasure_check_interval: float
    webhooks: dict[str, str] = field(default_factory=dict)
    deadline_days: int = 30
    #: Feed URI -> destination name (a feed is its URI's destination unless named here).
    destinations: dict[str, str] = field(default_factory=dict)
    #: None outside a project with a relative COMPLIANCE_DATA_DIR (a purge then says so in its receipt).
    outbox: Path | None = None


def _number(settings: Any, name: str, minimum: float) -> float:
    from crawler.config import ConfigError

    raw = settings.get(name, DEFAULTS[name])
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum:g}, got {raw!r}")
    return value


def _mapping(settings: Any, name: str) -> dict[str, str]:
    from crawler.config import ConfigError

    raw = settings.get(name) or {}
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a dict (or a JSON object) of names to values, got {raw!r}") from None
    if hasattr(raw, "copy_to_dict"):
        raw = raw.copy_to_dict()
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"{name}: expected a dict of strings to strings, got {raw!r}")
    return dict(raw)


def read(settings: Any) -> DataProtectionConfig:
    from crawler.config import ConfigError, _resolved, data_dir

    try:
        data: Path | None = data_dir(settings)
    except ConfigError:
        data = None
    key = str(settings.get("COMPLIANCE_ERASURE_KEY") or "")
    region = str(settings.get("COMPLIANCE_ERASURE_PHONE_REGION") or "").strip().upper() or None
    if region is not None:
        import phonenumbers

        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"COMPLIANCE_ERASURE_PHONE_REGION: {region!r} is not a region libphonenumber knows (e.g. US, GB, DE, FR)")
    webhooks = _mapping(settings, "COMPLIANCE_EXPORT_WEBHOOKS")
    for destination, url in webhooks.items():
        if not re.match(r"^https?://", url):
            raise ConfigError(f"COMPLIANCE_EXPORT_WEBHOOKS: {destination!r}: {url!r} is not an http(s) URL")
    raw_auto = settings.get("COMPLIANCE_RETENTION_AUTO", True)
    auto = raw_auto if isinstance(raw_auto, bool) else _TRUTH.get(str(raw_auto).strip().lower())
    if auto is None:  # not read as "off": retention would silently stop applying
        raise ConfigError(f"COMPLIANCE_RETENTION_AUTO: expected a boolean (true/false, 1/0), got {raw_auto!r}")
    return DataProtectionConfig(
        retention_auto=auto,
        retention_interval=_number(settings, "COMPLIANCE_RETENTION_INTERVAL", 0),
        retention_lock_ttl=_number(settings, "COMPLIANCE_RETENTION_LOCK_TTL", 1),
        erasure_key=_resolved("COMPLIANCE_ERASURE_KEY", key) if key else (data / "erasure-key" if data else None),
        phone_region=region,
        erasure_check_interval=_number(settings, "COMPLIANCE_ERASURE_CHECK_INTERVAL", 0),
        webhooks=webhooks,
        deadline_days=int(_number(settings, "COMPLIANCE_EXPORT_DEADLINE_DAYS", 1)),
        destinations=_mapping(settings, "COMPLIANCE_EXPORT_DESTINATIONS"),
        outbox=data / "outbox" if data else None,
    )
