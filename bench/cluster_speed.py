"""Distributed crawl speed (1, 2 and 4 workers) and the pacing error on a delayed host.

Needs Redis and PostgreSQL on 127.0.0.1 (standard ports), like the tests.
Serves ``fleet.test`` (``--pages`` pages, each answered after 20 ms, four
links each) from the test web in this process, then crawls it:

- ``stock``: stock Scrapy (``bench/stock_spider.py``, ``ROBOTSTXT_OBEY=True``),
  one process, the reference every figure is divided by;
- ``N workers``: ``scrapy crawl site`` with ``COMPLIANCE_DISTRIBUTED=True``,
  N processes sharing one Redis queue and one PostgreSQL store.

Every run uses at most 8 requests in flight to the host (stock:
``CONCURRENT_REQUESTS_PER_DOMAIN=8``; the cluster: the policy's
``max_concurrency: 8``, enforced across workers). pages/s is pages fetched
divided by the wall time from the first start to the last exit.

Then three workers crawl ``paced.fleet.test`` (Crawl-delay 0.3 s) and the
gaps between consecutive requests the host saw are reported: the pacing
error is how far the smallest and the median gap fall from 0.3 s.

    .venv/bin/python bench/cluster_speed.py [--pages 1500] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.testing.runner import policy_dir_with_pace, start_site_crawl  # noqa: E402
from crawler.testing.sites import TEST_CONTACT, cluster_sites  # noqa: E402
from crawler.testing.web import TestWeb  # noqa: E402

REDIS_URL = os.environ.get("COMPLIANCE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("COMPLIANCE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NETGUARD = ROOT / "crawler" / "testing" / "netguard"


def fresh_schema() -> tuple[str, str]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    return schema, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    import sqlalchemy as sa

    with sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def env_for(web: TestWeb) -> dict[str, str]:
    env = web.env(dict(os.environ))
    if NETGUARD.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), env.get("PYTHONPATH", "")]))
    return env


def pages_fetched(web: TestWeb, host: str, since: int) -> int:
    return len({e.path for e in web.log[since:] if e.host == host and e.path not in ("/robots.txt", "/.well-known/tdmrep.json")})


def run_stock(web: TestWeb, workdir: Path) -> float:
    since = len(web.log)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "scrapy", "runspider", str(ROOT / "bench" / "stock_spider.py"), "-O", str(workdir / "stock.jsonl"),
         "-a", "url=http://fleet.test/", "-s", "ROBOTSTXT_OBEY=True", "-s", "CONCURRENT_REQUESTS=16",
         "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=8", "-s", "LOG_LEVEL=WARNING", "-s", "TELNETCONSOLE_ENABLED=False"],
        cwd=workdir, env=env_for(web), check=True, capture_output=True,
    )  # fmt: skip
    return pages_fetched(web, "fleet.test", since) / (time.monotonic() - started)


def run_cluster(web: TestWeb, workers: int, host: str, workdir: Path) -> tuple[float, int]:
    import redis

    schema, store_url = fresh_schema()
    job = f"bench-{uuid.uuid4().hex[:8]}"
    policies = policy_dir_with_pace(workdir / f"policies-{job}", 0, 8)
    settings = {"COMPLIANCE_DISTRIBUTED": True, "COMPLIANCE_CRAWL_ID": job, "COMPLIANCE_REDIS_URL": REDIS_URL,
                "COMPLIANCE_POLICY_DIR": str(policies), "CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
                "LOG_LEVEL": "INFO", "COMPLIANCE_CONTACT": TEST_CONTACT}  # fmt: skip
    since = len(web.log)
    started = time.monotonic()
    procs = [start_site_crawl(web, [f"http://{host}/"], store_url, settings=settings, env=env_for(web),
                              log_path=workdir / f"{job}-{n}.log") for n in range(workers)]  # fmt: skip
    codes = [p.wait(900) for p in procs]
    elapsed = time.monotonic() - started
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"compliance:{job}:*"):
        client.delete(key)
    drop_schema(schema)
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}; logs in {workdir}")
    return pages_fetched(web, host, since) / elapsed, since


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1500)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    figures: dict[str, object] = {"pages": args.pages}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp, TestWeb(cluster_sites(pages=args.pages)) as web:
        workdir = Path(tmp)
        stock = run_stock(web, workdir)
        print(f"stock Scrapy, 1 process: {stock:7.1f} pages/s")
        figures["stock_pages_per_s"] = stock
        for workers in (1, 2, 4):
            rate, _ = run_cluster(web, workers, "fleet.test", workdir)
            figures[f"workers_{workers}_pages_per_s"] = rate
            print(f"{workers} worker(s):            {rate:7.1f} pages/s   ratio to stock {rate / stock:.2f}")
        _, since = run_cluster(web, 3, "paced.fleet.test", workdir)
        times = sorted(e.time for e in web.log[since:] if e.host == "paced.fleet.test"
                       and e.path not in ("/robots.txt", "/.well-known/tdmrep.json"))  # fmt: skip
        gaps = [b - a for a, b in zip(times, times[1:])]
        figures["paced_gaps"] = gaps
        print(f"3 workers on a host with Crawl-delay 0.3: {len(times)} requests, smallest gap {min(gaps):.3f}s "
              f"(error {min(gaps) - 0.3:+.3f}s), median {statistics.median(gaps):.3f}s (error {statistics.median(gaps) - 0.3:+.3f}s)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
