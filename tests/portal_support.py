"""The portal test helpers (crawler/testing/portal.py), with the network guard of this project's tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from crawler.testing import portal
from crawler.testing.plugin import serving
from crawler.testing.portal import (
    CONTACT, OwnedSite, bystander, csrf_of, file_objection, free_port, portal_settings, requests_after_objection, session,
)  # fmt: skip

from conftest import GUARD_ENV

__all__ = ["ADMIN_TOKEN", "CONTACT", "OwnedSite", "bystander", "csrf_of", "file_objection", "free_port", "portal_settings",
           "requests_after_objection", "running_portal", "session"]  # fmt: skip

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


@contextlib.contextmanager
def running_portal(web_env: Mapping[str, str], settings: Mapping[str, Any], log: Path, port: int | None = None,
                   trust_test_web: bool = True) -> Iterator[Any]:  # fmt: skip
    """The portal, with the network guard on its path (no packet leaves loopback)."""
    with portal.running_portal(web_env, settings, log, port, env=GUARD_ENV, trust_test_web=trust_test_web) as running:
        yield running


@pytest.fixture
def owned() -> Iterator[Any]:
    """The test web with an owned site (``web.owned``: the owner places the token there) and a bystander.

    The bystander is a long chain of pages too, so a crawl keeps fetching it after owner.test goes quiet.
    """
    site = OwnedSite()
    with serving({"owner.test": site, "bystander.test": OwnedSite(pages=2000)}) as web:
        web.owned = site  # type: ignore[attr-defined]
        yield web
