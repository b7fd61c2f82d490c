"""A site owner's proof of control: checked here (pure), fetched by the crawler itself (a spider, in a subprocess).

Two ways to prove control of ``D`` (the registered domain of the objection):

- ``https://D/.well-known/ethical-crawler-verification.txt`` whose first
  non-empty line is the token;
- ``<meta name="ethical-crawler-verification" content="TOKEN">`` on the home
  page ``https://D/``.

Both are fetched by :class:`OwnershipProofSpider` in a ``scrapy objection
probe`` subprocess: the crawler's own path, so every request carries its
identity (User-Agent, Web Bot Auth signature), passes the network gate
(no private address unless allowed), the notice gates, the image and size
gates, and redirects stay within ``D``. robots.txt does not apply to the
well-known file (see ``OWNERSHIP_PROOF_FETCH`` in crawler/middlewares/robots.py:
the owner placed it for this crawler to read); it applies to the home page as
to any page. The objection's own pause is lifted in that spider only (see
``ComplianceRuntime._proof_exempt_notice``); any other notice still refuses.

TLS: ``COMPLIANCE_PROOF_TLS_VERIFY`` (default on) makes the probe check
certificates (Scrapy's own downloads do not), so that a proof cannot be
answered by whoever sits on the path: the chain against the system's trust
store (OpenSSL's default paths; ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` replace
them, which is how the test kit trusts the test web's certificate) and the
host name (service_identity, refusing on any doubt: crawler/portal/tls.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from typing import Any

from crawler.compliance.notices import PROOF_SPIDER
from crawler.portal.objections import PROOF_FILE_PATH, PROOF_META_NAME, token_matches

#: At most this much of a proof response is read (a token is one line).
MAX_PROOF_BYTES = 64 * 1024


def proof_urls(domain: str) -> dict[str, str]:
    return {"file": f"https://{domain}{PROOF_FILE_PATH}", "meta": f"https://{domain}/"}


def check_file(body: bytes, token: str) -> tuple[bool, str]:
    """The well-known file: its first non-empty line must be the token."""
    text = body[:MAX_PROOF_BYTES].decode("utf-8", "replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        return False, "the file is empty"
    if token_matches(first, token):
        return True, "the file's first line is the token"
    return False, f"the file's first line is {_shown(first)}, not this objection's token"


class _MetaFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            values = {k.lower(): (v or "") for k, v in attrs}
            if values.get("name", "").strip().lower() == PROOF_META_NAME:
                self.found.append(values.get("content", "").strip())


def check_meta(body: bytes, token: str) -> tuple[bool, str]:
    """The home page: a ``<meta name="ethical-crawler-verification">`` whose content is the token."""
    finder = _MetaFinder()
    try:
        finder.feed(body[: 8 * MAX_PROOF_BYTES].decode("utf-8", "replace"))
    except Exception as exc:  # noqa: BLE001 - a page we cannot parse proves nothing; say why
        return False, f"the page could not be parsed as HTML ({type(exc).__name__})"
    if not finder.found:
        return False, f'the page has no <meta name="{PROOF_META_NAME}">'
    if any(token_matches(value, token) for value in finder.found):
        return True, "the page's meta tag holds the token"
    return False, f"the page's meta tag holds {_shown(finder.found[0])}, not this objection's token"


def _shown(text: str) -> str:
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def judge(method: str, status: int | None, body: bytes, token: str, problem: str = "") -> tuple[bool, str]:
    """One fetched proof -> (proved, why); ``problem`` is why nothing was fetched."""
    if problem:
        return False, problem
    if status != 200:
        return False, f"HTTP {status}, not 200"
    return check_file(body, token) if method == "file" else check_meta(body, token)


# -- the fetch: a spider on the crawler's own path ------------------------------------------


def _spider_class() -> type:
    from scrapy import Request, Spider

    from crawler.middlewares.robots import OWNERSHIP_PROOF_FETCH

    class OwnershipProofSpider(Spider):
        """Fetches the two proofs of control of one domain, nothing else (no links followed)."""

        name = PROOF_SPIDER
        custom_settings = {"RETRY_ENABLED": False, "REDIRECT_MAX_TIMES": 5, "COMPLIANCE_PURPOSES": "search"}

        def __init__(self, domain: str = "", token: str = "", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.domain = domain
            self.token = token
            self.allowed_domains = [domain]
            self.attempts: dict[str, dict[str, Any]] = {}

        async def start(self) -> Any:
            for method, url in proof_urls(self.domain).items():
                self.attempts[method] = {"method": method, "url": url, "proved": False, "why": "not fetched (refused before it was sent; the crawl log says why)"}
                meta = {"proof_method": method, "handle_httpstatus_list": list(range(400, 600)),
                        "download_maxsize": 8 * MAX_PROOF_BYTES}  # fmt: skip
                if method == "file":
                    meta[OWNERSHIP_PROOF_FETCH] = True
                yield Request(url, callback=self.parse, errback=self.failed, dont_filter=True, meta=meta)

        def parse(self, response: Any) -> Any:
            method = response.meta["proof_method"]
            proved, why = judge(method, response.status, response.body, self.token)
            self.attempts[method].update({
                "final_url": response.url, "status": response.status, "bytes": len(response.body),
                "content_type": (response.headers.get(b"Content-Type") or b"").decode("latin-1")[:100],
                "redirects": list(response.meta.get("redirect_urls", [])), "proved": proved, "why": why,
            })  # fmt: skip
            return None

        def failed(self, failure: Any) -> None:
            method = failure.request.meta.get("proof_method", "file")
            exc = failure.value
            from scrapy.exceptions import IgnoreRequest

            if isinstance(exc, IgnoreRequest):
                why = f"the crawler refused to fetch it: {str(exc)[:300]}"
            elif getattr(exc, "response", None) is not None:
                why = f"HTTP {exc.response.status}"
            else:
                why = f"could not fetch it: {type(exc).__name__}: {str(exc)[:200]}"
            self.attempts[method].update({"proved": False, "why": why})

    return OwnershipProofSpider


def probe(settings: Any, domain: str, token: str) -> list[dict[str, Any]]:
    """Run the proof spider in this process (``scrapy objection probe``); the attempts, in method order."""
    from scrapy.crawler import CrawlerProcess

    if settings.getbool("COMPLIANCE_PROOF_TLS_VERIFY", True):
        # Scrapy's switch (read by the httpx handler too), and a context factory
        # that checks the host name fail-closed (crawler/portal/tls.py says why
        # Twisted's alone does not), in place of any the project set.
        settings.set("DOWNLOAD_VERIFY_CERTIFICATES", True, priority="cmdline")
        settings.set("DOWNLOADER_CLIENTCONTEXTFACTORY", "crawler.portal.tls.ProofTLSPolicy", priority="cmdline")
    process = CrawlerProcess(settings, install_root_handler=False)
    crawler = process.create_crawler(_spider_class())
    process.crawl(crawler, domain=domain, token=token)
    process.start()
    spider = crawler.spider
    return list(spider.attempts.values()) if spider is not None else []


def fetch_proofs(domain: str, token: str, pause_notice_id: str, overrides: Mapping[str, str],
                 cwd: str | None = None, timeout: float = 60) -> tuple[list[dict[str, Any]], str]:  # fmt: skip
    """Run ``scrapy objection probe`` in a subprocess; (attempts, problem) where problem explains a failed run."""
    command = [sys.executable, "-m", "scrapy", "objection", "probe", "--domain", domain, "--token", token]
    for name, value in {**overrides, "COMPLIANCE_PROOF_PAUSE_NOTICE": pause_notice_id}.items():
        command += ["-s", f"{name}={value}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=dict(os.environ), check=False)
    except subprocess.TimeoutExpired:
        return [], f"the proof fetch took longer than {timeout:g} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"the proof fetch failed: {last[:300]}"
    return json.loads(lines[-1])["attempts"], ""


def summary(attempts: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, list[str]]:
    """The attempt that proved control (or None), and one line per attempt saying what was fetched and why."""
    lines = []
    for attempt in attempts:
        where = attempt.get("final_url") or attempt["url"]
        via = f" (after redirects from {attempt['url']})" if attempt.get("redirects") else ""
        got = f"HTTP {attempt['status']}, {attempt.get('bytes', 0)} bytes, {attempt.get('content_type') or 'no type'}: " if "status" in attempt else ""
        lines.append(f"{attempt['method']}: fetched {where}{via}: {got}{attempt['why']}")
    proved = next((a for a in attempts if a.get("proved")), None)
    return proved, lines
