"""Run real crawls against the test web, in a subprocess, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.compliance.store import Store
from crawler.testing.web import TestWeb

#: Settings every test crawl uses unless it overrides them: fast, quiet, offline.
FAST_SETTINGS: dict[str, Any] = {
    "DOWNLOAD_DELAY": 0,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
    "DOWNLOAD_TIMEOUT": 5,
    "RETRY_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "LOG_LEVEL": "INFO",
    "COMPLIANCE_STORE_FLUSH_INTERVAL": 0.5,
}


def policy_dir_with_pace(dest: Path, min_delay: float = 0, max_concurrency: int = 8, platforms_from: Path | None = None) -> Path:
    """A policy directory with a fast default pace (and, with ``platforms_from``, copies of those platform policies).

    Test and benchmark crawls use it so the shipped default's polite pace
    does not slow them. The shipped platform policies apply as they always
    do (they are a floor), so the platforms stay real.
    """
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "platforms").mkdir(exist_ok=True)
    if platforms_from is not None:
        shutil.copytree(platforms_from / "platforms", dest / "platforms", dirs_exist_ok=True)
    (dest / "default.yaml").write_text(
        f"collection: allowed-per-robots\nrate:\n  min_delay: {min_delay}\n  max_concurrency: {max_concurrency}\n",
        encoding="utf-8",
    )
    return dest


def project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` that holds ``scrapy.cfg``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "scrapy.cfg").is_file():
            return candidate
    raise FileNotFoundError(f"no scrapy.cfg at or above {here}")


@dataclass
class CrawlRun:
    returncode: int
    stdout: str
    stderr: str
    store_url: str
    args: list[str] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return Store(self.store_url)

    def check(self) -> CrawlRun:
        if self.returncode != 0:
            raise AssertionError(f"crawl exited {self.returncode}: {' '.join(self.args)}\n{self.stderr[-4000:]}")
        return self


def _command_line(
    args: Sequence[str], web: TestWeb | None, settings: Mapping[str, Any] | None, env: Mapping[str, str] | None
) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, "-m", "scrapy", *args]
    for name, value in (settings or {}).items():
        command += ["-s", f"{name}={value}"]
    full_env = dict(os.environ)
    if web is not None:
        full_env.update(web.env())
    full_env.update(env or {})
    return command, full_env


def scrapy_command(
    args: Sequence[str],
    *,
    web: TestWeb | None = None,
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """``scrapy ARGS -s K=V ...`` in a subprocess, proxied through ``web``."""
    command, full_env = _command_line(args, web, settings, env)
    return subprocess.run(
        command, cwd=cwd or project_dir(), env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _site_crawl_args(
    urls: Sequence[str], store_url: str, settings: Mapping[str, Any] | None, contact: str | bool | None
) -> tuple[list[str], dict[str, Any]]:
    from crawler.testing.sites import TEST_CONTACT

    merged: dict[str, Any] = {**FAST_SETTINGS, "COMPLIANCE_STORE": store_url}
    if contact is not False:
        merged["COMPLIANCE_CONTACT"] = contact or TEST_CONTACT
    merged.update(settings or {})
    return ["crawl", "site", "-a", "url=" + ",".join(urls)], merged


def run_site_crawl(
    web: TestWeb,
    urls: Sequence[str],
    store_url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    contact: str | bool | None = None,
    timeout: float = 180,
) -> CrawlRun:
    """``scrapy crawl site -a url=...`` against the test web; returns what happened."""
    args, merged = _site_crawl_args(urls, store_url, settings, contact)
    done = scrapy_command(args, web=web, settings=merged, env=env, timeout=timeout)
    return CrawlRun(done.returncode, done.stdout, done.stderr, store_url, args)


def site_crawl_command(
    web: TestWeb, urls: Sequence[str], store_url: str, *, settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``scrapy crawl site`` against ``web``, to run it your own way (a pty, say)."""
    args, merged = _site_crawl_args(urls, store_url, settings, None)
    return _command_line(args, web, merged, env)


def start_site_crawl(
    web: TestWeb,
    urls: Sequence[str],
    store_url: str,
    *,
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """Start ``scrapy crawl site`` without waiting (its output goes to ``log_path``)."""
    command, full_env = site_crawl_command(web, urls, store_url, settings=settings, env=env)
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=project_dir(), env=full_env, stdout=log, stderr=subprocess.STDOUT)
