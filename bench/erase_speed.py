"""Erasure costs: finding one person among a million items, keeping the index, and the suppression check.

    .venv/bin/python bench/erase_speed.py [--items 1000000] [--write-items 200000] [--pages 500] [--pairs 2] [--skip-crawl]

Three measurements (see bench/README.md, "Erasure"):

1. ``erase``: a SQLite store of ``--items`` synthetic items (about 60 words
   each, 3 of them holding one person's e-mail address, one written with
   Gmail dots and a tag); the time to find them through the FTS5 index and
   verify them (:func:`crawler.dataprotection.search.find`) and the time of
   the whole erase purge of the store (:func:`crawler.compliance.purge.run_purge`
   with the found items). Target: under 2 s.
2. ``index cost``: items written per second through ``Store.write`` in
   batches of 1,000, into a fresh store without the FTS5 index and into one
   with it (alternately, ``--pairs`` each), ``--write-items`` items each.
   Target: the index costs at most 10 %.
3. ``suppression``: ``scrapy crawl site`` over ``--pages`` local pages
   (``crawler.testing.sites.linked_site``) with an empty suppression list
   and with 10,000 suppressed identifiers (8,000 e-mail addresses, 1,000
   phone numbers, 1,000 two-word names, so every kind of candidate is
   extracted and hashed on every page), alternately; pages per second from
   each crawl's own stats. Target: at most 3 % slower.

Both comparisons also report a ``cpu_cost``: the same ratio from the CPU
time used (by this process for the writes, by the crawl process for the
crawls), steadier than the clock when other work shares the machine.

Measurements, not tests: the exit status is 0 unless a step fails.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("alpha beta gamma delta epsilon zeta theta iota kappa lambda omicron sigma tau upsilon phi chi psi omega "
         "river mountain city market garden station library museum bridge harbour").split()  # fmt: skip


def synthetic_rows(count: int, start: int, rng: random.Random) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    rows = []
    for n in range(start, start + count):
        text = " ".join(rng.choice(WORDS) for _ in range(60))
        domain = f"site{n % 500}.test"
        rows.append({"crawl_id": "bench", "url": f"http://{domain}/page/{n}", "host": domain, "domain": domain,
                     "title": f"Page {n}", "text": text, "fetched_at": now, "data": {}, "item_key": f"k{n}"})  # fmt: skip
    return rows


def fill(store: object, count: int, seed: int = 1, person_at: tuple[int, ...] = ()) -> float:
    """Write ``count`` items in batches of 1,000; seconds taken."""
    rng = random.Random(seed)
    started = time.perf_counter()
    for start in range(0, count, 1000):
        rows = synthetic_rows(min(1000, count - start), start, rng)
        for row in rows:
            number = int(str(row["url"]).rsplit("/", 1)[1])
            if number in person_at:
                row["text"] = str(row["text"]) + (" write to J.ane.Doe+press@gmail.com" if number % 2 else " janedoe@gmail.com")
        store.write(rows, [])  # type: ignore[attr-defined]
    return time.perf_counter() - started


def bench_erase(items: int) -> dict[str, object]:
    from crawler.compliance.purge import PurgeRequest, run_purge
    from crawler.compliance.store import Store, items as items_table
    from crawler.dataprotection.identifiers import normalise
    from crawler.dataprotection.itemscope import ItemScope
    from crawler.dataprotection.search import find
    from crawler.dataprotection.tables import ensure_schema

    with tempfile.TemporaryDirectory() as scratch:
        store = Store(f"sqlite:///{scratch}/erase.sqlite3")
        ensure_schema(store)
        person_at = (11, items // 2 + 1, items - 3)
        fill_seconds = fill(store, items, person_at=person_at)
        identifier = normalise("email", "janedoe@gmail.com")
        started = time.perf_counter()
        found = find(store, [identifier], None)
        find_seconds = time.perf_counter() - started
        assert len(found) == 3, found
        scope = ItemScope(frozenset(url for url, _ in found.values()), items_table.c.id.in_(sorted(found)), "erasure bench")
        started = time.perf_counter()
        receipt = run_purge(store, PurgeRequest(scope, {"erasure": "bench"}, "bench", "bench"), "here")  # type: ignore[arg-type]
        purge_seconds = time.perf_counter() - started
        assert receipt["counts"]["store"] == 3
        return {"items": items, "fill_seconds": round(fill_seconds, 1), "find_seconds": round(find_seconds, 3),
                "purge_seconds": round(purge_seconds, 3), "erase_seconds": round(find_seconds + purge_seconds, 3)}  # fmt: skip


def bench_index(count: int, pairs: int) -> dict[str, object]:
    from crawler.compliance.store import Store
    from crawler.dataprotection.tables import _READY, ensure_schema

    rates: dict[str, list[float]] = {"without": [], "with": []}
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(pairs):
        for kind in ("without", "with"):
            with tempfile.TemporaryDirectory() as scratch:
                store = Store(f"sqlite:///{scratch}/w.sqlite3")
                if kind == "with":
                    ensure_schema(store)
                else:
                    _READY.add(store.engine)  # a store that never gets the index
                started = time.process_time()
                seconds = fill(store, count)
                cpu[kind].append(time.process_time() - started)
                rates[kind].append(count / seconds)
                store.dispose()
    without, with_index = statistics.median(rates["without"]), statistics.median(rates["with"])
    return {"items": count, "pairs": pairs, "without_per_s": round(without), "with_per_s": round(with_index),
            "cost": round(1 - with_index / without, 3), "all": {k: [round(v) for v in vs] for k, vs in rates.items()},
            # CPU seconds of this process (the writes run in it): steadier than the clock on a busy machine.
            "cpu_cost": round(1 - statistics.median(cpu["without"]) / statistics.median(cpu["with"]), 3)}  # fmt: skip


def crawl_rate(web: object, store_url: str, settings: dict[str, object], pages: int) -> tuple[float, float]:
    """Pages per second (the crawl's own stats) and CPU milliseconds per page (the crawl process's)."""
    import resource

    from crawler.testing.runner import run_site_crawl

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_site_crawl(web, ["http://bench.test/page/0"], store_url, settings=settings, timeout=900)  # type: ignore[arg-type]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.check()
    stats = run.stderr
    received = int(re.search(r"'response_received_count': (\d+)", stats).group(1))  # type: ignore[union-attr]
    elapsed = float(re.search(r"'elapsed_time_seconds': ([\d.]+)", stats).group(1))  # type: ignore[union-attr]
    assert received >= pages, (received, pages)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return received / elapsed, cpu / received * 1000


def bench_suppression(pages: int, pairs: int) -> dict[str, object]:
    from crawler.compliance.store import Store
    from crawler.dataprotection.identifiers import normalise
    from crawler.dataprotection.suppression import add_entries, load_or_create_key
    from crawler.testing.plugin import serving
    from crawler.testing.runner import policy_dir_with_pace
    from crawler.testing.sites import linked_site

    rates: dict[str, list[float]] = {"empty": [], "10000": []}
    cpu: dict[str, list[float]] = {"empty": [], "10000": []}
    people = [normalise("email", f"person{n}@example.org") for n in range(8000)]
    people += [normalise("phone", f"+1415555{n:04d}") for n in range(1000)]
    people += [normalise("name", f"First{n} Last{n}") for n in range(1000)]
    with serving({"bench.test": linked_site(pages)}) as web, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        policies = policy_dir_with_pace(root / "policies", 0, 16)
        for run in range(pairs):
            for kind in ("empty", "10000"):
                data = root / f"var-{kind}-{run}"
                store_url = f"sqlite:///{root}/{kind}-{run}.sqlite3"
                if kind == "10000":
                    add_entries(Store(store_url), load_or_create_key(data / "erasure-key"), people, "er-bench")
                settings = {"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_DATA_DIR": str(data), "LOG_LEVEL": "INFO",
                            "CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 16, "COMPLIANCE_ERASURE_PHONE_REGION": "US"}  # fmt: skip
                rate, ms_per_page = crawl_rate(web, store_url, settings, pages)
                rates[kind].append(rate)
                cpu[kind].append(ms_per_page)
    empty, full = statistics.median(rates["empty"]), statistics.median(rates["10000"])
    pairwise = [1 - full_rate / empty_rate for empty_rate, full_rate in zip(rates["empty"], rates["10000"], strict=True)]
    return {"pages": pages, "pairs": pairs, "empty_pages_per_s": round(empty, 1), "suppressed_pages_per_s": round(full, 1),
            "cost": round(1 - full / empty, 3), "pairwise_costs": [round(c, 3) for c in pairwise],
            "median_pairwise_cost": round(statistics.median(pairwise), 3), "all": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
            # CPU per page of the crawl process: steadier than pages/s on a busy machine.
            "cpu_ms_per_page": {k: round(statistics.median(vs), 3) for k, vs in cpu.items()},
            "cpu_cost": round(1 - statistics.median(cpu["empty"]) / statistics.median(cpu["10000"]), 3)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--write-items", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--skip-crawl", action="store_true")
    opts = parser.parse_args()
    results: dict[str, object] = {}
    results["index"] = bench_index(opts.write_items, opts.pairs)
    print(json.dumps({"index": results["index"]}), flush=True)
    results["erase"] = bench_erase(opts.items)
    print(json.dumps({"erase": results["erase"]}), flush=True)
    if not opts.skip_crawl:
        results["suppression"] = bench_suppression(opts.pages, opts.pairs)
        print(json.dumps({"suppression": results["suppression"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
