"""All COMPLIANCE_* settings, read once into a frozen, validated Config.

The table in README.md ("Settings") documents each of these; keep them in step.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from crawler import __version__
from crawler.compliance.optouts import parse_purposes
from crawler.compliance.identity import IdentityError, user_agent, validate_contact, validate_product_token
from crawler.compliance.robots import MAX_TTL

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

DEFAULTS: dict[str, object] = {
    "COMPLIANCE_CONTACT": "",
    "COMPLIANCE_BOT_NAME": "EthicalCrawler",
    "COMPLIANCE_STORE": "sqlite:///var/compliance.sqlite3",
    "COMPLIANCE_POLICY_DIR": "policies",
    "COMPLIANCE_CRAWL_ID": "",
    "COMPLIANCE_ROBOTS_TTL": 86400.0,
    "COMPLIANCE_ROBOTS_CACHE_SIZE": 10000,
    "COMPLIANCE_ROBOTS_RETRY_DELAY": 60.0,
    "COMPLIANCE_MAX_CRAWL_DELAY": 30.0,
    "COMPLIANCE_STORE_BATCH_SIZE": 100,
    "COMPLIANCE_STORE_FLUSH_INTERVAL": 2.0,
    "COMPLIANCE_ITEM_TEXT_MAX": 100_000,
    "COMPLIANCE_PURPOSES": "search,train-ai,archive",
    "COMPLIANCE_DISTRIBUTED": False,
    "COMPLIANCE_REDIS_URL": "redis://127.0.0.1:6379/0",
    "COMPLIANCE_ALLOW_CONTENT_TYPES": "",
}


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it and says what to set."""


_CRAWL_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Config:
    contact: str
    bot_name: str
    store_url: str
    policy_dir: str
    crawl_id: str
    robots_ttl: float
    robots_cache_size: int
    robots_retry_delay: float
    max_crawl_delay: float
    store_batch_size: int
    store_flush_interval: float
    item_text_max: int
    purposes: frozenset[str]
    distributed: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Media types collected although not text (docs/images.md, "Opting in"); image signatures still apply.
    allow_content_types: frozenset[str] = frozenset()

    @property
    def user_agent(self) -> str:
        return user_agent(self.bot_name, __version__, self.contact)

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Config:
        """Read and check every setting; raise ConfigError naming the first bad one."""

        def number(name: str, kind: type = float, minimum: float | None = None, maximum: float | None = None) -> float:
            raw = settings.get(name, DEFAULTS[name])
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: expected a {kind.__name__}, got {raw!r}") from None
            if minimum is not None and value < minimum:
                raise ConfigError(f"{name}: must be at least {minimum}, got {raw!r}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{name}: must be at most {maximum}, got {raw!r}")
            return value

        try:
            contact = validate_contact(settings.get("COMPLIANCE_CONTACT"))
            bot_name = validate_product_token(str(settings.get("COMPLIANCE_BOT_NAME") or DEFAULTS["COMPLIANCE_BOT_NAME"]))
        except IdentityError as exc:
            raise ConfigError(str(exc)) from None
        crawl_id = str(settings.get("COMPLIANCE_CRAWL_ID") or "")
        if crawl_id and not _CRAWL_ID_RE.fullmatch(crawl_id):
            raise ConfigError(f"COMPLIANCE_CRAWL_ID: {crawl_id!r} must be 1-64 letters, digits or '_.:-'")
        if settings.getbool("ROBOTSTXT_OBEY"):
            raise ConfigError(
                "ROBOTSTXT_OBEY is True, but this framework enforces robots.txt itself (RFC 9309: "
                "5xx means disallow all, 24 h cache, per scheme and port), and Scrapy's middleware "
                "would fetch every robots.txt a second time and allow all on errors. "
                "Fix: 1. remove ROBOTSTXT_OBEY from your settings, or 2. set ROBOTSTXT_OBEY = False."
            )
        _refuse_media_pipelines(settings)
        distributed = settings.getbool("COMPLIANCE_DISTRIBUTED")
        if distributed and not crawl_id:
            raise ConfigError(
                "COMPLIANCE_DISTRIBUTED is on but COMPLIANCE_CRAWL_ID is not set. Every worker of one crawl must "
                "share it (it names the Redis queue and seen-set). Fix: pass the same -s COMPLIANCE_CRAWL_ID=NAME to every worker."
            )
        redis_url = str(settings.get("COMPLIANCE_REDIS_URL") or DEFAULTS["COMPLIANCE_REDIS_URL"])
        if distributed and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"COMPLIANCE_REDIS_URL: {redis_url!r} is not a redis:// URL")
        try:
            purposes = parse_purposes(settings.get("COMPLIANCE_PURPOSES", DEFAULTS["COMPLIANCE_PURPOSES"]))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            contact=contact,
            bot_name=bot_name,
            store_url=str(settings.get("COMPLIANCE_STORE") or DEFAULTS["COMPLIANCE_STORE"]),
            policy_dir=str(settings.get("COMPLIANCE_POLICY_DIR") or DEFAULTS["COMPLIANCE_POLICY_DIR"]),
            crawl_id=crawl_id or new_crawl_id(),
            robots_ttl=number("COMPLIANCE_ROBOTS_TTL", float, 0.001, MAX_TTL),
            robots_cache_size=int(number("COMPLIANCE_ROBOTS_CACHE_SIZE", int, 1)),
            robots_retry_delay=number("COMPLIANCE_ROBOTS_RETRY_DELAY", float, 0.001),
            max_crawl_delay=number("COMPLIANCE_MAX_CRAWL_DELAY", float, 0),
            store_batch_size=int(number("COMPLIANCE_STORE_BATCH_SIZE", int, 1)),
            store_flush_interval=number("COMPLIANCE_STORE_FLUSH_INTERVAL", float, 0),
            item_text_max=int(number("COMPLIANCE_ITEM_TEXT_MAX", int, 0)),
            purposes=purposes,
            distributed=distributed,
            redis_url=redis_url,
            allow_content_types=parse_content_types(settings.get("COMPLIANCE_ALLOW_CONTENT_TYPES")),
        )


_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


def parse_content_types(raw: object) -> frozenset[str]:
    """COMPLIANCE_ALLOW_CONTENT_TYPES: a list or a comma-separated string of media types (``application/pdf``)."""
    if not raw:
        return frozenset()
    items = raw.split(",") if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple | set | frozenset) else None
    if items is None:
        raise ConfigError(f"COMPLIANCE_ALLOW_CONTENT_TYPES: expected a list of media types, got {raw!r}")
    types = set()
    for item in items:
        media = str(item).strip().lower()
        if not media:
            continue
        if not _MEDIA_TYPE_RE.fullmatch(media):
            raise ConfigError(f"COMPLIANCE_ALLOW_CONTENT_TYPES: {item!r} is not a media type like 'application/pdf'")
        if media.startswith("image/"):
            raise ConfigError(
                f"COMPLIANCE_ALLOW_CONTENT_TYPES: {media!r} is an image type; images are never collected "
                "(facial images are biometric data, GDPR Art. 9(1)). Fix: remove it."
            )
        types.add(media)
    return frozenset(types)


def _refuse_media_pipelines(settings: BaseSettings) -> None:
    """Scrapy's ImagesPipeline, FilesPipeline and any MediaPipeline download
    files named by items: exactly what this framework exists to prevent."""
    from scrapy.pipelines.media import MediaPipeline
    from scrapy.utils.misc import load_object

    pipelines = settings.getwithbase("ITEM_PIPELINES") if hasattr(settings, "getwithbase") else {}
    for path, order in dict(pipelines).items():
        if order is None:
            continue
        try:
            component = load_object(path) if isinstance(path, str) else path
        except (ImportError, NameError, ValueError):
            continue  # Scrapy reports an unloadable component itself
        if isinstance(component, type) and issubclass(component, MediaPipeline):
            name = path if isinstance(path, str) else f"{component.__module__}.{component.__qualname__}"
            raise ConfigError(
                f"ITEM_PIPELINES enables {name}, a media pipeline that downloads images or files named by items. "
                "This framework never collects images (facial images are biometric data, GDPR Art. 9(1)). "
                f"Fix: remove {name!r} from ITEM_PIPELINES (or set it to None), and drop IMAGES_STORE/FILES_STORE."
            )


def machine_name(settings: BaseSettings) -> str:
    """This machine's name in the store (``COMPLIANCE_MACHINE``, else the host name): which files are local."""
    import socket

    return str(settings.get("COMPLIANCE_MACHINE") or socket.gethostname())


def new_crawl_id() -> str:
    """Sortable and unique: ``20261126T120000Z-1a2b3c``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
