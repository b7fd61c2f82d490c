"""The compliance test kit as a pytest plugin (entry point ``pytest11``: installed with the package).

Fixtures:

- ``compliance_web``: the multi-host test web on 127.0.0.1 (origin and HTTP
  proxy, with an access log) serving the project's hostile hosts: robots.txt
  edge cases, images in disguise, opt-out signals, platforms under their
  terms, and a large slow host for notices. A test fails if a crawl asked for
  a host it does not serve.
- ``run_compliance_crawl(spider_or_name, urls, settings=None)``: runs a spider
  (a class, or a name in the current Scrapy project; ``"site"`` is this
  project's generic spider) with the compliance stack, through the test web,
  in its own process guarded so nothing leaves 127.0.0.1, into a fresh store.
  Returns a :class:`ComplianceResult`: what the server saw, what was stored,
  what was refused and why.

Assertions (``from crawler.testing.assertions import ...``) read like the
guarantees: ``assert_no_disallowed_fetch``, ``assert_no_images``,
``assert_nothing_stored_for``, ``assert_no_requests_to``, ``assert_refused``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Plain asserts in the helpers get pytest's detailed messages too.
pytest.register_assert_rewrite("crawler.testing.assertions")

from crawler.testing.web import AccessEntry, TestWeb, WebRequest

NETGUARD = Path(__file__).parent / "netguard"


def hostile_sites() -> dict[str, Any]:
    """Every scripted host of the project's own tests, for anyone's tests."""
    from crawler.testing import sites

    found: dict[str, Any] = {}
    for family in (sites.robots_sites, sites.image_sites, sites.optout_sites, sites.platform_sites, sites.notice_sites):
        found.update(family())
    return found


def guarded_env(web: TestWeb | None = None) -> dict[str, str]:
    """Environment for a crawl subprocess: the test web as proxy and the network guard loaded."""
    env = web.env(dict(os.environ)) if web is not None else dict(os.environ)
    paths = [str(NETGUARD), *[p for p in sys.path if p], env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))
    return env


@dataclass
class ComplianceResult:
    """What one compliance crawl did, read from the server's access log and the store."""

    returncode: int
    log: str
    crawl_id: str
    store_url: str
    web: TestWeb = field(repr=False)
    bot_name: str = "EthicalCrawler"
    requests: list[AccessEntry] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stats(self) -> dict[str, str]:
        """The crawl's final stats as text (``'compliance/refused/robots.disallow': '3'``)."""
        return dict(re.findall(r"'([\w/.\-]+)': ([^,\n]+)", self.log.rsplit("Dumping Scrapy stats", 1)[-1]))

    @property
    def stderr(self) -> str:
        """The crawl's log (Scrapy logs to stderr)."""
        return self.log

    @property
    def store(self) -> Any:
        """The crawl's store (a :class:`crawler.compliance.store.Store`)."""
        from crawler.compliance.store import Store

        return Store(self.store_url)

    def check(self) -> ComplianceResult:
        assert self.returncode == 0, f"the crawl exited {self.returncode}:\n{self.log[-3000:]}"
        return self

    def paths(self, host: str) -> list[str]:
        return [e.path for e in self.requests if e.host == host]

    def _served(self, scheme: str, host: str, port: int, path: str) -> Any:
        site = self.web.site_for(scheme, host)
        if site is None:
            return None
        path_part, _, query = path.partition("?")
        request = WebRequest("GET", scheme, host, port, path_part, query, {}, "")
        return site.handle(request)

    def robots_for(self, scheme: str, host: str, port: int) -> Callable[[str], bool] | None:
        """How the host's robots.txt, as the test web serves it, answers for a URL (None: allow all)."""
        from crawler.compliance.robots import RobotsRules, RobotsState, classify_status

        response = self._served(scheme, host, port, "/robots.txt")
        if response is None:
            return None
        state = classify_status(response.status)
        if state is RobotsState.UNREACHABLE:
            return lambda url: False
        if state is not RobotsState.RULES:
            return None
        rules = RobotsRules(response.body_bytes(), f"{scheme}://{host}/robots.txt")
        return lambda url: rules.decide(url, self.bot_name).allowed

    def is_image_response(self, entry: AccessEntry) -> bool:
        response = self._served(entry.scheme, entry.host, entry.port, entry.path)
        if response is None:
            return False
        content_type = (response.header("Content-Type") or "").lower()
        return content_type.startswith("image/")


def run_crawl(
    web: TestWeb, spider: str | type, urls: Sequence[str], tmp_path: Path, settings: Mapping[str, Any] | None = None,
    *, contact: bool = True,
) -> ComplianceResult:  # fmt: skip
    """Run ``spider`` with the compliance stack through ``web`` (see the module docstring)."""
    import subprocess

    from crawler.compliance.store import Store
    from crawler.testing.runner import FAST_SETTINGS, policy_dir_with_pace, project_dir
    from crawler.testing.sites import TEST_CONTACT

    crawl_id = f"t{uuid.uuid4().hex[:12]}"
    store_url = f"sqlite:///{tmp_path / f'{crawl_id}.sqlite3'}"
    merged: dict[str, Any] = {**FAST_SETTINGS, "COMPLIANCE_STORE": store_url, "COMPLIANCE_CONTACT": TEST_CONTACT,
                              "COMPLIANCE_CRAWL_ID": crawl_id, "COMPLIANCE_DATA_DIR": str(tmp_path / f"{crawl_id}-data")}  # fmt: skip
    if "COMPLIANCE_POLICY_DIR" not in (settings or {}):
        merged["COMPLIANCE_POLICY_DIR"] = str(policy_dir_with_pace(tmp_path / f"{crawl_id}-policies"))
    merged.update(settings or {})
    if not contact:
        merged.pop("COMPLIANCE_CONTACT")  # to test what happens without one
    store_url = str(merged["COMPLIANCE_STORE"])
    crawl_id = str(merged["COMPLIANCE_CRAWL_ID"])
    target = spider if isinstance(spider, str) else f"{spider.__module__}:{spider.__qualname__}"
    settings_file = tmp_path / f"{crawl_id}-settings.json"
    settings_file.write_text(json.dumps(merged, default=str), encoding="utf-8")
    command = [sys.executable, "-m", "crawler.testing.spider_runner", target, *urls, "--settings-json", str(settings_file)]
    try:
        cwd = project_dir()  # the user's Scrapy project: its settings, its spiders by name
    except FileNotFoundError:
        cwd = Path.cwd()
    before = len(web.log)
    done = subprocess.run(command, cwd=cwd, env=guarded_env(web), capture_output=True, text=True, timeout=300, check=False)
    result = ComplianceResult(done.returncode, done.stderr + done.stdout, crawl_id, store_url, web,
                              bot_name=str(merged.get("COMPLIANCE_BOT_NAME", "EthicalCrawler")))  # fmt: skip
    result.requests = web.log[before:]
    if Path(store_url.removeprefix("sqlite:///")).exists():
        store = Store(store_url)
        result.items = [i for i in store.iter_items() if i.get("crawl_id") == crawl_id]
        # (a store shared by several crawls keeps theirs; this result is this crawl's)
        result.refusals = store.refusals(crawl_id)
        store.dispose()
    return result


@contextlib.contextmanager
def serving(sites: Mapping[str, Any]) -> Iterator[TestWeb]:
    """A running test web for ``sites``; on leaving, fails if anything asked for a host it does not serve."""
    with TestWeb(sites) as web:
        yield web
        unknown = web.unknown_hosts()
        assert not unknown, f"requests for hosts the test web does not serve: {unknown}"


@pytest.fixture
def compliance_sites() -> dict[str, Any]:
    """The hosts the test web serves: the hostile ones. Override it to serve your own pages too::

        # conftest.py
        import pytest
        from crawler.testing.plugin import hostile_sites
        from crawler.testing.web import StaticSite

        @pytest.fixture
        def compliance_sites():
            return {**hostile_sites(), "shop.example.test": StaticSite({"/": "<html>...</html>", "/robots.txt": "..."})}
    """
    return hostile_sites()


@pytest.fixture
def compliance_web(compliance_sites: dict[str, Any]) -> Iterator[TestWeb]:
    """The test web serving ``compliance_sites`` (see the module docstring); fails the test on requests for unknown hosts."""
    with serving(compliance_sites) as web:
        yield web


@pytest.fixture
def run_compliance_crawl(compliance_web: TestWeb, tmp_path: Path) -> Callable[..., ComplianceResult]:
    """``run_compliance_crawl(spider_or_name, urls, settings=None) -> ComplianceResult``."""

    def run(spider: str | type, urls: Sequence[str], settings: Mapping[str, Any] | None = None) -> ComplianceResult:
        return run_crawl(compliance_web, spider, urls, tmp_path, settings)

    return run
