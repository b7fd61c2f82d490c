"""All COMPLIANCE_* settings, read once into a frozen, validated Config.

The table in docs/settings.md documents each of these; keep them in step.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler import __version__

# The compliance core (robots, opt-outs, identity) is imported where a Config
# is built, not here: every command imports this module for its paths, and
# Scrapy imports every command for every `scrapy` call.

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
    "COMPLIANCE_DATA_DIR": "var",
    "COMPLIANCE_ALLOW_CONTENT_TYPES": "",
    "COMPLIANCE_ALLOW_NETWORKS": "",
    "COMPLIANCE_MAX_LINKS_PER_PAGE": 1000,
    "COMPLIANCE_MAX_RETRY_AFTER": 3600.0,
    "COMPLIANCE_BACKOFF_BASE": 1.0,
    "COMPLIANCE_BACKOFF_MAX": 300.0,
    "COMPLIANCE_GC_FREEZE": True,
}

logger = logging.getLogger("crawler.compliance")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it and says what to set."""


_CRAWL_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def flag(settings: BaseSettings, name: str, default: bool = False) -> bool:
    """A boolean setting; ConfigError (one line, naming it) for a value that is not one."""
    try:
        return settings.getbool(name, default)
    except ValueError:
        raise ConfigError(f"{name}: expected a boolean (true/false, 1/0), got {settings.get(name)!r}") from None


@dataclass(frozen=True)
class Config:
    contact: str
    bot_name: str
    store_url: str
    #: The project's policy folder (None: outside a project, the shipped policies apply alone).
    policy_dir: str | None
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
    #: Where the crawl keeps files of its own (unwritten batches): COMPLIANCE_DATA_DIR, resolved.
    data_dir: str = "var"
    #: COMPLIANCE_POLICY_DIR was named: the folder must exist (the default one may not).
    policy_dir_required: bool = False
    #: Media types collected although not text (docs/images.md, "Opting in"); image signatures still apply.
    allow_content_types: frozenset[str] = frozenset()
    #: COMPLIANCE_ALLOW_NETWORKS: the non-public networks and names this crawl may reach (a NetworkPolicy).
    allow_networks: Any = None
    #: Requests kept per response (links of one page); the rest are counted and dropped.
    max_links_per_page: int = 1000
    #: COMPLIANCE_PROGRESS: "auto" (a live line on a terminal), or a boolean (crawler/progress_display.py).
    progress: str = "auto"
    #: Retry-After cap and exponential back-off (a crawler.compliance.courtesy.CourtesyRules).
    courtesy: Any = None
    #: COMPLIANCE_GC_FREEZE: keep what start-up built out of the garbage collector's full passes while crawling.
    gc_freeze: bool = True

    @property
    def user_agent(self) -> str:
        from crawler.compliance.identity import user_agent

        return user_agent(self.bot_name, __version__, self.contact)

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Config:
        """Read and check every setting; raise ConfigError naming the first bad one."""
        from crawler.compliance.identity import IdentityError, validate_contact, validate_product_token
        from crawler.compliance.network import NetworkPolicy, NetworkSettingError
        from crawler.compliance.optouts import parse_purposes
        from crawler.compliance.robots import MAX_TTL
        from crawler.progress_display import progress_setting

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
        _refuse_media_pipelines(settings)
        distributed = flag(settings, "COMPLIANCE_DISTRIBUTED")
        if distributed and not crawl_id:
            raise ConfigError(
                "COMPLIANCE_DISTRIBUTED is on but COMPLIANCE_CRAWL_ID is not set. Every worker of one crawl must "
                "share it (it names the Redis queue and seen-set). Fix: pass the same -s COMPLIANCE_CRAWL_ID=NAME to every worker."
            )
        redis_url = str(settings.get("COMPLIANCE_REDIS_URL") or DEFAULTS["COMPLIANCE_REDIS_URL"])
        if distributed and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"COMPLIANCE_REDIS_URL: {redis_url!r} is not a redis:// URL")
        if distributed:
            _require_cluster_extra()
        resolved_store = store_url(settings)
        _require_store_driver(resolved_store)
        try:
            purposes = parse_purposes(settings.get("COMPLIANCE_PURPOSES", DEFAULTS["COMPLIANCE_PURPOSES"]))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        from crawler.compliance.courtesy import CourtesyRules

        backoff_base = number("COMPLIANCE_BACKOFF_BASE", float, 0)
        backoff_max = number("COMPLIANCE_BACKOFF_MAX", float, 0)
        if backoff_max < backoff_base:
            raise ConfigError(f"COMPLIANCE_BACKOFF_MAX: must be at least COMPLIANCE_BACKOFF_BASE ({backoff_base:g}), got {backoff_max:g}")
        max_retry_after = number("COMPLIANCE_MAX_RETRY_AFTER", float, 0, 86_400 * 365)
        try:
            courtesy = CourtesyRules(max_retry_after=max_retry_after, backoff_base=backoff_base, backoff_max=backoff_max)
        except ValueError as exc:  # NaN or infinity
            raise ConfigError(f"COMPLIANCE_MAX_RETRY_AFTER / COMPLIANCE_BACKOFF_BASE / COMPLIANCE_BACKOFF_MAX: {exc}") from None
        try:
            allow_networks = NetworkPolicy.parse(settings.get("COMPLIANCE_ALLOW_NETWORKS"))
        except NetworkSettingError as exc:
            raise ConfigError(str(exc)) from None
        try:
            progress = progress_setting(settings.get("COMPLIANCE_PROGRESS"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            contact=contact,
            bot_name=bot_name,
            store_url=resolved_store,
            policy_dir=policy_dir(settings),
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
            data_dir=str(data_dir(settings)),
            policy_dir_required=policy_dir_required(settings),
            allow_content_types=parse_content_types(settings.get("COMPLIANCE_ALLOW_CONTENT_TYPES")),
            allow_networks=allow_networks,
            max_links_per_page=int(number("COMPLIANCE_MAX_LINKS_PER_PAGE", int, 1)),
            progress=progress,
            courtesy=courtesy,
            gc_freeze=flag(settings, "COMPLIANCE_GC_FREEZE", True),
        )


#: Install hint for the optional dependencies of a distributed crawl.
CLUSTER_EXTRA = "pip install 'ethical-crawler[cluster]'"


def _require_cluster_extra() -> None:
    """A distributed crawl needs Redis' client and scrapy-redis: say so in one line before anything starts."""
    try:
        import redis  # noqa: F401
        import scrapy_redis  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"COMPLIANCE_DISTRIBUTED is on, but the cluster dependencies are not installed ({exc}). "
            f"Fix: {CLUSTER_EXTRA}, or set COMPLIANCE_DISTRIBUTED = False."
        ) from None


def _require_store_driver(store_url: str) -> None:
    """The store's database driver (psycopg for PostgreSQL, from the postgres extra) is installed."""
    from crawler.compliance.store import StoreError, database_url

    try:
        database_url(store_url)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


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


# -- where things are: relative paths resolve against the project root ------------------------


def project_root() -> Path | None:
    """The folder of the nearest ``scrapy.cfg`` at or above the current folder (None outside a project).

    Every relative path the framework reads or writes (the store, the policy
    folder, its own files) is taken from here, so a command run from any
    subfolder of a project finds the same store and notice registry.
    """
    from scrapy.utils.conf import closest_scrapy_cfg

    found = closest_scrapy_cfg()
    return Path(found).parent if found else None


def _resolved(setting: str, value: str) -> Path:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    root = project_root()
    if root is None:
        raise ConfigError(
            f"{setting}: {value!r} is a relative path, and there is no Scrapy project here (no scrapy.cfg in "
            f"{Path.cwd()} or above) to resolve it against. Fix: run from inside your project, or give an absolute path "
            f"(-s {setting}=/absolute/path)."
        )
    return root / path


def store_url(settings: BaseSettings) -> str:
    """COMPLIANCE_STORE with a relative SQLite path resolved against the project root.

    Outside a project, a store must be named: the default would create a
    second, empty notice registry in whatever folder a command runs from,
    and a registry nobody reads blocks nothing (fail closed).
    """
    given = settings.get("COMPLIANCE_STORE")
    value = str(given or DEFAULTS["COMPLIANCE_STORE"])
    if not given and project_root() is None:
        raise ConfigError(
            f"COMPLIANCE_STORE is not set and there is no Scrapy project here (no scrapy.cfg in {Path.cwd()} or above), "
            "so there is no store or notice registry to use. Fix: run from inside your project, or name the store "
            "(-s COMPLIANCE_STORE=sqlite:////absolute/path.sqlite3 or postgresql+psycopg://...)."
        )
    from crawler.compliance.registry import sqlite_path

    plain = sqlite_path(value) if "%" not in value else None
    if plain is not None:  # the common case, without importing SQLAlchemy (commands start faster)
        return "sqlite:///" + str(_resolved("COMPLIANCE_STORE", str(plain)))
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        return value  # the store reports a URL it cannot read, naming the setting
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return value
    return url.set(database=str(_resolved("COMPLIANCE_STORE", database))).render_as_string(hide_password=False)


def policy_dir(settings: BaseSettings) -> str | None:
    """The project's policy folder, resolved (None outside a project when none is named).

    The default, ``policies/`` of the project, need not exist: the policies
    shipped with the package (the platforms whose terms forbid collection,
    and a polite default) then apply alone, and a folder created later is
    picked up by running crawls. A folder named in COMPLIANCE_POLICY_DIR
    must exist (see :func:`policy_dir_required`).
    """
    given = settings.get("COMPLIANCE_POLICY_DIR")
    if given:
        return str(_resolved("COMPLIANCE_POLICY_DIR", str(given)))
    root = project_root()
    return str(root / str(DEFAULTS["COMPLIANCE_POLICY_DIR"])) if root is not None else None


def policy_dir_required(settings: BaseSettings) -> bool:
    """A folder named in the settings must exist; the default one may be missing."""
    return bool(settings.get("COMPLIANCE_POLICY_DIR"))


def notices_dir(settings: BaseSettings) -> Path:
    """Where notice files are read and written: POLICY_DIR/notices (``policies/notices`` of the project)."""
    found = policy_dir(settings)
    if found is None:
        _resolved("COMPLIANCE_POLICY_DIR", str(DEFAULTS["COMPLIANCE_POLICY_DIR"]))  # raises: no project
    return Path(str(found)) / "notices"


def data_dir(settings: BaseSettings) -> Path:
    """COMPLIANCE_DATA_DIR resolved: where the framework keeps files of its own (``var/`` of the project)."""
    return _resolved("COMPLIANCE_DATA_DIR", str(settings.get("COMPLIANCE_DATA_DIR") or DEFAULTS["COMPLIANCE_DATA_DIR"]))


def unwritten_dir(data: str | Path) -> Path:
    """Batches the store refused, kept for later (purge visits them like any other location)."""
    return Path(data) / "unwritten"


def unwritten_files(settings: BaseSettings) -> list[Path]:
    """The files of batches the store refused (none when COMPLIANCE_DATA_DIR cannot be resolved here)."""
    try:
        folder = unwritten_dir(data_dir(settings))
    except ConfigError:
        return []
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def machine_name(settings: BaseSettings) -> str:
    """This machine's name in the store (``COMPLIANCE_MACHINE``, else the host name): which files are local."""
    import socket

    return str(settings.get("COMPLIANCE_MACHINE") or socket.gethostname())


def new_crawl_id() -> str:
    """Sortable and unique: ``20261126T120000Z-1a2b3c``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
