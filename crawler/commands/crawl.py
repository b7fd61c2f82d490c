"""``scrapy crawl``, checking the compliance settings before anything starts.

Installed through the ``scrapy.commands`` entry points, so it replaces
Scrapy's own ``crawl`` in every project that installs the package. Only a
crawl that enables the compliance add-on is checked; any other crawl runs
exactly as Scrapy's command would run it.

Scrapy's own command would start the crawler and report a bad setting as a
traceback from inside an extension. This one checks first and prints one
line, and turns what went wrong during the crawl (invalid notice files, a
store that refused a batch, cassette misses) into a non-zero exit status.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from scrapy.settings import BaseSettings

ADDON = "crawler.addon.Compliance"


def compliance_enabled(settings: BaseSettings) -> bool:
    """Whether the project's ADDONS switch the compliance add-on on."""
    for addon, order in settings.getdict("ADDONS").items():
        name = addon if isinstance(addon, str) else f"{getattr(addon, '__module__', '')}.{getattr(addon, '__qualname__', '')}"
        if name == ADDON and order is not None:
            return True
    return False


def with_spider_settings(settings: BaseSettings, spidercls: type | None) -> BaseSettings:
    """The settings a crawl of ``spidercls`` will have: the project's plus the spider's ``custom_settings``."""
    if spidercls is None or not getattr(spidercls, "custom_settings", None):
        return settings
    merged = settings.copy()
    spidercls.update_settings(merged)  # type: ignore[attr-defined]
    return merged


def preflight(settings: BaseSettings, spider_name: str | None, spargs: dict[str, str]) -> str | None:
    """What stops a compliance crawl before it starts (one line), or None when it may start."""
    from crawler.cassettes import CassetteError, check_cassette
    from crawler.config import Config, ConfigError
    from crawler.runtime import load_notices_or_fail, load_policies_or_fail
    from crawler.spiders.site import SiteSpider, StartUrlError, parse_start_urls

    from crawler.cli import CommandFailed
    from crawler.compliance.registry import StoreError
    from crawler.config import flag
    from crawler.dataprotection import settings as dp_settings
    from crawler.notices_cli import extra_locations

    try:
        config = Config.from_settings(settings)
        flag(settings, "ROBOTSTXT_OBEY")
        dp_settings.read(settings)
        load_notices_or_fail(config.policy_dir, load_policies_or_fail(config.policy_dir, config.policy_dir_required))
        if settings.get("COMPLIANCE_CASSETTE"):
            check_cassette(str(settings.get("COMPLIANCE_CASSETTE")))
        if spider_name == SiteSpider.name:
            parse_start_urls(spargs.get("url"))
        check_identity(settings)
        from crawler.pacing import downloader_problem

        if (problem := downloader_problem()) is not None:
            raise ConfigError(problem)
        # The project's purge locations: a crawl whose copies a purge could not reach must not start.
        extra_locations(settings)
        check_store(config.store_url)
    except (ConfigError, StartUrlError, CassetteError, CommandFailed, StoreError) as exc:
        return f"crawl refused to start: {exc}"
    return None


def check_store(url: str) -> None:
    """The store opens (created or migrated as a crawl would): a crawl never runs without one."""
    from crawler.compliance.registry import StoreError
    from crawler.compliance.store import Store

    try:
        store = Store(url)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file that is not a database, a folder, a driver problem
        first = (str(exc).strip().splitlines() or [""])[0]
        raise StoreError(f"COMPLIANCE_STORE: cannot open {url!r}: {type(exc).__name__}: {first[:300]}") from None
    try:
        store.notice_rows()  # reads the registry the crawl enforces: a store that cannot be read stops here
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [""])[0]
        raise StoreError(f"COMPLIANCE_STORE: cannot read {url!r}: {type(exc).__name__}: {first[:300]}") from None
    finally:
        store.dispose()


def check_identity(settings: BaseSettings) -> None:
    """The signing settings and an existing key file (a missing one is created by the crawl)."""
    from crawler.config import ConfigError
    from crawler.identity import keyring
    from crawler.identity.config import identity_settings

    options = identity_settings(settings)
    if options.enabled and options.key_path.exists():
        try:
            keyring.load(options.key_path)
        except keyring.KeyFileError as exc:
            raise ConfigError(f"COMPLIANCE_SIGNING_KEY: {exc}") from None


def crawl_failures() -> tuple[list[str], int]:
    """What went wrong in this process's compliance crawls: (error lines, exit status; 0 if nothing)."""
    from crawler.cassettes import MISSES
    from crawler.extensions.policywatch import STOPPED
    from crawler.runtime import STORE_FAILURES

    lines = [f"crawl stopped: invalid notice file: {reason}" for reason in STOPPED]
    status = 2 if STOPPED else 0
    lines += list(STORE_FAILURES)
    if MISSES:
        lines += [f"cassette miss: {miss}" for miss in MISSES]
        lines.append(f"{len(MISSES)} request(s) were not in the cassette; record them or fix the spider")
    if (STORE_FAILURES or MISSES) and not status:
        status = 1
    return lines, status


def run_checked(command: Any, settings: BaseSettings, spider_name: str | None, spargs: dict[str, str], run: Callable[[], None]) -> None:
    """``run`` the stock command, with the compliance checks around it when the add-on is on.

    Before: :func:`preflight` (one line and exit status 2 on a setup error).
    After: what went wrong in the crawl (:func:`crawl_failures`) as error
    lines and a non-zero exit status. Shared by ``crawl`` and ``runspider``.
    """
    if not compliance_enabled(settings):
        run()
        return
    refusal = preflight(settings, spider_name, spargs)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        command.exitcode = 2
        return
    run()
    lines, status = crawl_failures()
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    command.exitcode = max(command.exitcode, status)


class ProgressOption:
    """``--no-progress`` for ``crawl`` and ``runspider``: no live line on the terminal (COMPLIANCE_PROGRESS=0)."""

    settings: BaseSettings | None

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)  # type: ignore[misc]
        parser.add_argument("--no-progress", action="store_true", help="no live progress line on the terminal")

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)  # type: ignore[misc]
        if opts.no_progress and self.settings is not None:
            self.settings.set("COMPLIANCE_PROGRESS", "0", priority="cmdline")


class Command(ProgressOption, ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        spidercls = None
        if args and self.crawler_process is not None:
            try:
                spidercls = self.crawler_process.spider_loader.load(args[0])
            except KeyError:
                pass  # Scrapy's own command says so
        settings = with_spider_settings(self.settings, spidercls)
        run_checked(self, settings, args[0] if args else None, opts.spargs, lambda: super(Command, self).run(args, opts))
