"""Purge speed: one domain's items out of a large SQLite store, and the memory it takes.

Builds a store of ``--total`` items (default 1,000,000) of which ``--purged``
(default 200,000) belong to ``target.test`` (half of them on subdomains), the
rest spread over 400 other domains. Then, each on a fresh copy of that store
and each in a fresh process, alternating:

- ``purge``: the project's purge (``crawler.compliance.purge.run_purge``): chunked,
  resumable, counted per chunk, receipt and ledger entries included;
- ``baseline``: one plain ``DELETE FROM items WHERE domain = ?`` in one
  transaction, what one would write by hand with no receipt and no resumption.

Prints items purged per second for both, their ratio, and the peak resident
memory growth of the purge (VmHWM after the purge minus VmRSS before it) for a
small and the full purge, to show memory does not grow with the number purged.

    .venv/bin/python bench/purge_speed.py [--total N] [--purged N] [--pairs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(path: Path, total: int, purged: int) -> None:
    from crawler.compliance.store import Store

    Store(f"sqlite:///{path}").dispose()  # the schema, exactly as the project creates it
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    rows = []
    for i in range(total):
        if i % (total // purged) == 0 and i // (total // purged) < purged:
            host = "target.test" if i % 2 else f"s{i % 7}.target.test"
            domain = "target.test"
        else:
            domain = f"d{i % 400}.test"
            host = domain
        rows.append(("bench", f"http://{host}/p/{i}", host, domain, f"title {i}", "text " * 20, "2026-11-26 00:00:00.000000", "{}"))
        if len(rows) == 50_000:
            db.executemany("INSERT INTO items (crawl_id, url, host, domain, title, text, fetched_at, data) VALUES (?,?,?,?,?,?,?,?)", rows)
            rows.clear()
    if rows:
        db.executemany("INSERT INTO items (crawl_id, url, host, domain, title, text, fetched_at, data) VALUES (?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _memory() -> dict[str, int]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            key, value = line.split(":")
            found[key] = int(value.split()[0])
    return found


def child(kind: str, path: str) -> None:
    """One measurement, in its own process so memory figures are its own."""
    from crawler.compliance.notices import CompiledScope, Scope
    from crawler.compliance.purge import PurgeRequest, run_purge
    from crawler.compliance.store import Store

    store = Store(f"sqlite:///{path}")
    expected = store.count_items("target.test")
    before = _memory()["VmRSS"]
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to now
    start = time.perf_counter()
    if kind == "purge":
        scope = CompiledScope.build(Scope(domains=["target.test"]), None)
        request = PurgeRequest(scope, {"domains": ["target.test"]}, "benchmark", "bench")
        receipt = run_purge(store, request, "bench")
        deleted = receipt["counts"]["store"]
    else:
        with store.engine.begin() as conn:
            deleted = conn.exec_driver_sql("DELETE FROM items WHERE domain = 'target.test'").rowcount
    elapsed = time.perf_counter() - start
    peak = _memory()["VmHWM"]
    assert deleted == expected and store.count_items("target.test") == 0, (deleted, expected)
    print(json.dumps({"kind": kind, "deleted": deleted, "seconds": elapsed, "rss_growth_kib": peak - before}))


def measure(kind: str, template: Path, workdir: Path) -> dict[str, float]:
    copy = workdir / f"{kind}.sqlite3"
    shutil.copy(template, copy)
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(copy)], capture_output=True, text=True, check=True, cwd=ROOT)
    copy.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(copy) + suffix).unlink(missing_ok=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--purged", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="purge-bench-") as tmp:
        workdir = Path(tmp)
        figures: dict[str, list[dict[str, float]]] = {"purge": [], "baseline": [], "memory_small": []}
        small = workdir / "small.sqlite3"
        big = workdir / "big.sqlite3"
        t0 = time.perf_counter()
        build(big, args.total, args.purged)
        build(small, args.total, args.purged // 8)
        print(f"built two stores of {args.total:,} items in {time.perf_counter() - t0:.1f} s")
        for pair in range(args.pairs):
            order = ("purge", "baseline") if pair % 2 == 0 else ("baseline", "purge")
            for kind in order:
                result = measure(kind, big, workdir)
                figures[kind].append(result)
                print(f"pair {pair + 1} {kind:<8} {result['deleted']:,} items in {result['seconds']:.2f} s "
                      f"= {result['deleted'] / result['seconds']:,.0f} items/s, RSS growth {result['rss_growth_kib'] / 1024:.1f} MiB")  # fmt: skip
        figures["memory_small"].append(measure("purge", small, workdir))
        rate = statistics.median(r["deleted"] / r["seconds"] for r in figures["purge"])
        base = statistics.median(r["deleted"] / r["seconds"] for r in figures["baseline"])
        grow_big = statistics.median(r["rss_growth_kib"] for r in figures["purge"]) / 1024
        grow_small = figures["memory_small"][0]["rss_growth_kib"] / 1024
        print(f"\npurge: median {rate:,.0f} items/s (target >= 100,000); plain DELETE: {base:,.0f} items/s; ratio {rate / base:.2f}")
        print(f"peak RSS growth: {grow_small:.1f} MiB purging {args.purged // 8:,} items, {grow_big:.1f} MiB purging {args.purged:,}")
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "median_items_per_s": rate,
                                                   "baseline_items_per_s": base}, indent=2))  # fmt: skip
        return 0 if rate >= 100_000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
