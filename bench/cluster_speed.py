"""Distributed crawl speed (1, 2 and 4 workers), its Redis and PostgreSQL round trips, and pacing.

Needs Redis and PostgreSQL on 127.0.0.1 (standard ports), like the tests.
Serves ``fleet.test`` (``--pages`` pages, each answered after 20 ms, four
links each) from the test web in this process, then crawls it:

- ``single``: ``scrapy crawl site``, the whole stack in one process;
- ``1 worker``: the same command and settings with ``COMPLIANCE_DISTRIBUTED=True``
  (a scrapy-redis queue and seen-set, leases, the pace script);

alternately, ``--pairs`` times: the ratios worker/single are the cluster's
cost on one machine. Both write to the same kind of store, a fresh
PostgreSQL schema per crawl, and allow at most 8 requests in flight to the
host (the single process: the policy's ``max_concurrency: 8`` on its slot;
the cluster: the same cap, held in Redis across workers). Then 2 and 4
workers share one crawl, and a stock Scrapy spider (``bench/stock_spider.py``,
``ROBOTSTXT_OBEY=True``) crawls the site once for reference.

Figures per crawl:

- pages/s: responses / the crawl's own ``elapsed_time_seconds`` (spider open
  to close: interpreter start-up is not counted) for one process; for N
  workers, pages fetched / wall time from the first start to the last exit;
- CPU ms per page: the crawl process's CPU time from spider open to close
  (``time.process_time``), summed over workers, per response;
- Redis and PostgreSQL round trips per page, counted in each process
  (``bench/roundtrips.py``): the figures that do not depend on this machine.

Then three workers crawl ``paced.fleet.test`` (Crawl-delay 0.3 s) and the
gaps between consecutive requests the host saw are reported: the pacing
error is how far the smallest and the median gap fall from 0.3 s.

    .venv/bin/python bench/cluster_speed.py [--pages 1500] [--pairs 5] [--json FILE]
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
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from crawl_speed import parse_stats  # noqa: E402

from crawler.testing.runner import policy_dir_with_pace, start_site_crawl  # noqa: E402
from crawler.testing.sites import TEST_CONTACT, cluster_sites  # noqa: E402
from crawler.testing.web import TestWeb  # noqa: E402

REDIS_URL = os.environ.get("COMPLIANCE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("COMPLIANCE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NETGUARD = ROOT / "crawler" / "testing" / "netguard"
PAGE_FILES = ("/robots.txt", "/.well-known/tdmrep.json")
TARGET_SPEED, TARGET_CPU = 0.90, 1.15


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
    paths = [str(NETGUARD)] if NETGUARD.is_dir() else []
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, str(BENCH), env.get("PYTHONPATH", "")]))
    return env


def pages_fetched(web: TestWeb, host: str, since: int) -> int:
    return len({e.path for e in web.log[since:] if e.host == host and e.path not in PAGE_FILES})


def run_stock(web: TestWeb, workdir: Path) -> float:
    since = len(web.log)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "scrapy", "runspider", str(BENCH / "stock_spider.py"), "-O", str(workdir / "stock.jsonl"),
         "-a", "url=http://fleet.test/", "-s", "ROBOTSTXT_OBEY=True", "-s", "CONCURRENT_REQUESTS=16",
         "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=8", "-s", "LOG_LEVEL=WARNING", "-s", "TELNETCONSOLE_ENABLED=False"],
        cwd=workdir, env=env_for(web), check=True, capture_output=True,
    )  # fmt: skip
    return pages_fetched(web, "fleet.test", since) / (time.monotonic() - started)


def run_crawl(web: TestWeb, workers: int, host: str, workdir: Path, extensions: dict[str, int] | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One crawl of ``host``: ``workers`` cluster workers, or (0) the single-process stack; its figures."""
    import redis

    schema, store_url = fresh_schema()
    job = f"bench-{uuid.uuid4().hex[:8]}"
    policies = policy_dir_with_pace(workdir / f"policies-{job}", 0, 8)
    settings: dict[str, Any] = {
        "COMPLIANCE_CRAWL_ID": job, "COMPLIANCE_POLICY_DIR": str(policies), "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 8, "LOG_LEVEL": "INFO", "COMPLIANCE_CONTACT": TEST_CONTACT,
        "EXTENSIONS": json.dumps({"roundtrips.RoundTrips": 0, **(extensions or {})}), **(extra or {}),
    }  # fmt: skip
    if workers:
        settings.update({"COMPLIANCE_DISTRIBUTED": True, "COMPLIANCE_REDIS_URL": REDIS_URL})
    since = len(web.log)
    started = time.monotonic()
    procs = [start_site_crawl(web, [f"http://{host}/"], store_url, env=env_for(web), log_path=workdir / f"{job}-{n}.log",
                              settings={**settings, "ROUNDTRIPS_FILE": str(workdir / f"{job}-{n}.json")})
             for n in range(max(workers, 1))]  # fmt: skip
    codes = [p.wait(900) for p in procs]
    wall = time.monotonic() - started
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"compliance:{job}:*"):
        client.delete(key)
    drop_schema(schema)
    if any(codes):
        raise SystemExit(f"a crawl process failed: exit codes {codes}; logs in {workdir}")
    counts = [json.loads((workdir / f"{job}-{n}.json").read_text()) for n in range(len(procs))]
    stats = [parse_stats((workdir / f"{job}-{n}.log").read_text()) for n in range(len(procs))]
    responses = sum(int(s.get("response_received_count", 0)) for s in stats)
    redis_counts: Counter[str] = sum((Counter(c["redis"]) for c in counts), Counter())
    pg_counts: Counter[str] = sum((Counter(c["postgres"]) for c in counts), Counter())
    fetched = pages_fetched(web, host, since)
    one = stats[0]
    return {
        "since": since, "pages": fetched, "responses": responses,
        "pages_per_s": (responses / float(one["elapsed_time_seconds"])) if len(procs) == 1 else fetched / wall,
        "cpu_ms_per_page": 1000 * sum(c["crawl_cpu_s"] for c in counts) / responses,
        "redis_per_page": redis_counts["round trips"] / responses,
        "postgres_per_page": pg_counts["round trips"] / responses,
        "redis_commands": dict(redis_counts), "postgres_statements": dict(pg_counts),
    }  # fmt: skip


def per_page(counts: dict[str, int], responses: int) -> str:
    top = sorted(((n, c) for n, c in counts.items() if n != "round trips"), key=lambda pair: -pair[1])
    return ", ".join(f"{name} {count / responses:.2f}" for name, count in top if count / responses >= 0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1500)
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs of single process / 1 worker (default 5)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--no-scaling", action="store_true", help="only the pairs (no 2 and 4 workers, stock, pacing)")
    args = parser.parse_args()
    figures: dict[str, Any] = {"pages": args.pages, "pairs": []}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp, TestWeb(cluster_sites(pages=args.pages)) as web:
        workdir = Path(tmp)
        print(f"{'pair':>4}  {'run':<9} {'pages/s':>8} {'CPU ms/page':>11} {'Redis/page':>10} {'PG/page':>8}")
        for pair in range(1, args.pairs + 1):
            runs = {"single": run_crawl(web, 0, "fleet.test", workdir), "1 worker": run_crawl(web, 1, "fleet.test", workdir)}
            for name, run in runs.items():
                print(f"{pair:>4}  {name:<9} {run['pages_per_s']:8.1f} {run['cpu_ms_per_page']:11.2f} "
                      f"{run['redis_per_page']:10.2f} {run['postgres_per_page']:8.2f}", flush=True)  # fmt: skip
            figures["pairs"].append(runs)
        speed = [p["1 worker"]["pages_per_s"] / p["single"]["pages_per_s"] for p in figures["pairs"]]
        cpu = [p["1 worker"]["cpu_ms_per_page"] / p["single"]["cpu_ms_per_page"] for p in figures["pairs"]]
        figures["speed_ratio"], figures["cpu_ratio"] = statistics.median(speed), statistics.median(cpu)
        print(f"1 worker / single process, median of {len(speed)} pairs: pages/s {figures['speed_ratio']:.2f} "
              f"(target >= {TARGET_SPEED}; per pair {', '.join(f'{r:.2f}' for r in speed)}), "
              f"CPU per page {figures['cpu_ratio']:.2f} (target <= {TARGET_CPU}; per pair {', '.join(f'{r:.2f}' for r in cpu)})")  # fmt: skip
        last = figures["pairs"][-1]
        for name in ("single", "1 worker"):
            run = last[name]
            print(f"{name}: Redis {run['redis_per_page']:.2f} round trips/page ({per_page(run['redis_commands'], run['responses']) or 'none'}); "
                  f"PostgreSQL {run['postgres_per_page']:.2f}/page ({per_page(run['postgres_statements'], run['responses'])})")  # fmt: skip
        if args.no_scaling:
            return _write(args, figures)
        stock = run_stock(web, workdir)
        figures["stock_pages_per_s"] = stock
        print(f"stock Scrapy, 1 process: {stock:7.1f} pages/s (wall time, start-up included)")
        for workers in (1, 2, 4):
            run = run_crawl(web, workers, "fleet.test", workdir)
            figures[f"workers_{workers}"] = run
            print(f"{workers} worker(s): {run['pages_per_s']:7.1f} pages/s (wall time, start-up included), "
                  f"CPU {run['cpu_ms_per_page']:.2f} ms/page, Redis {run['redis_per_page']:.2f}/page, "
                  f"PostgreSQL {run['postgres_per_page']:.2f}/page")  # fmt: skip
        since = run_crawl(web, 3, "paced.fleet.test", workdir)["since"]
        times = sorted(e.time for e in web.log[since:] if e.host == "paced.fleet.test" and e.path not in PAGE_FILES)
        gaps = [b - a for a, b in zip(times, times[1:])]
        figures["paced_gaps"] = gaps
        print(f"3 workers on a host with Crawl-delay 0.3: {len(times)} requests, smallest gap {min(gaps):.3f}s "
              f"(error {min(gaps) - 0.3:+.3f}s), median {statistics.median(gaps):.3f}s (error {statistics.median(gaps) - 0.3:+.3f}s)")  # fmt: skip
    return _write(args, figures)


def _write(args: argparse.Namespace, figures: dict[str, Any]) -> int:
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
