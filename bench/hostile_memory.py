"""Peak memory of a crawl under hostile pages: one crawl per page, its peak RSS.

    .venv/bin/python bench/hostile_memory.py [--limit-mib 300] [--json FILE]

Each hostile page of ``crawler.testing.sites.hostile_size_sites()`` is served
by the test web (in this process, on 127.0.0.1, as the crawl's HTTP proxy)
and crawled alone by ``scrapy crawl site`` with the whole compliance stack
and its default limits (DOWNLOAD_MAXSIZE 8 MiB, COMPLIANCE_MAX_LINKS_PER_PAGE
1000):

* ``gzip-bomb-10MB``: 10 MB of gzip that inflate to 10 GiB;
* ``gzip-bomb-1MB``: 1 MB that inflate to 1 GiB (cut while decompressing);
* ``endless-body``: a body that never ends;
* ``links-200k``: one page with 200,000 links;
* ``robots-50MB``: a 50 MB robots.txt.

The peak RSS is the crawl process's own (``ru_maxrss`` from ``os.wait4``, so
neither this process nor the server is counted). It prints one line per
page and exits 1 if a crawl fails or goes over ``--limit-mib``; the numbers
depend on the machine, so the tests (tests/test_network.py) assert the
refusals and bounds, not these.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.testing.runner import FAST_SETTINGS, policy_dir_with_pace
from crawler.testing.sites import hostile_size_sites
from crawler.testing.web import TestWeb

PROJECT_DIR = Path(__file__).resolve().parent.parent
NETGUARD_DIR = PROJECT_DIR / "crawler" / "testing" / "netguard"

PAGES = {
    "gzip-bomb-10MB": "http://bomb.test/big",
    "gzip-bomb-1MB": "http://bomb.test/small",
    "endless-body": "http://endless.test/",
    "links-200k": "http://links.test/",
    "robots-50MB": "http://bigrobots.test/",
}


def crawl(web: TestWeb, url: str, folder: Path) -> tuple[int, float, float, str]:
    """Crawl ``url`` alone; returns (exit status, peak RSS in MiB, seconds, the refusal reasons it logged)."""
    settings = {
        **FAST_SETTINGS, "DOWNLOAD_TIMEOUT": 120, "LOG_LEVEL": "INFO",
        "COMPLIANCE_CONTACT": "mailto:bench@example.invalid",
        "COMPLIANCE_STORE": f"sqlite:///{folder / 'store.sqlite3'}",
        "COMPLIANCE_POLICY_DIR": str(policy_dir_with_pace(folder / "policies")),
        "COMPLIANCE_DATA_DIR": str(folder / "var"),
    }  # fmt: skip
    # Only the site spider's start page: a bomb linked from it would be a second page.
    command = [sys.executable, "-m", "scrapy", "crawl", "site", "-a", f"url={url}", "-s", "DEPTH_LIMIT=1"]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    env = {**os.environ, **web.env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(NETGUARD_DIR), os.environ.get("PYTHONPATH")]))}
    log_path = folder / "crawl.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    text = log_path.read_text(encoding="utf-8", errors="replace")
    reasons = sorted({line.split("refused (", 1)[1].split(")", 1)[0] for line in text.splitlines() if "refused (" in line})
    dropped = [line for line in text.splitlines() if "'compliance/links/dropped'" in line]
    detail = ", ".join(reasons) + (f"; {dropped[0].strip().rstrip(',')}" if dropped else "")
    return process.returncode, usage.ru_maxrss / 1024, elapsed, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mib", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = []
    failed = False
    with TestWeb(hostile_size_sites()) as web, tempfile.TemporaryDirectory() as tmp:
        print(f"hostile_memory: one crawl per hostile page, peak RSS of the crawl process (limit {args.limit_mib:g} MiB)")
        print(f"{'page':<16} {'exit':>4} {'peak RSS MiB':>12} {'seconds':>8}  refusals / bounds")
        for name, url in PAGES.items():
            folder = Path(tmp) / name
            folder.mkdir()
            code, rss, elapsed, detail = crawl(web, url, folder)
            over = rss > args.limit_mib
            failed |= code != 0 or over
            print(f"{name:<16} {code:>4} {rss:>12.1f} {elapsed:>8.1f}  {detail}{'  OVER LIMIT' if over else ''}", flush=True)
            results.append({"page": name, "url": url, "exit": code, "peak_rss_mib": round(rss, 1), "seconds": round(elapsed, 1), "detail": detail})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
