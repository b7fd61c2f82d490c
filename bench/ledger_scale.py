"""Ledger scale: a million entries in the transparency log, and what a proof costs at that size.

Appends ``--entries`` (default 1,000,000) ``purge.completed``-sized entries
to a fresh store through the store's own path (``Store.append_ledger_batch``:
hash chain, Merkle nodes, one signed tree head per batch of ``--batch``),
plus ``--single`` appends one at a time (one head each, as ``notice add`` and
``purge`` do), then reports:

- appends per second, batched and single;
- an inclusion proof (``Store.inclusion_proof``) and a consistency proof
  (``Store.consistency_proof``) at the full size: the median and worst of
  ``--proofs`` random ones each, every one checked with the standalone
  verifier's math (its time is not counted);
- the number of node rows a proof reads (at most 2 log2 n, by construction:
  no scan), and the storage per entry (database size / entries; and the
  tree's own share, the ``ledger_nodes`` and ``ledger_heads`` tables, via
  SQLite's dbstat when available).

    .venv/bin/python bench/ledger_scale.py [--entries N] [--batch N] [--single N] [--proofs N] [--store URL] [--json FILE]
    .venv/bin/python bench/ledger_scale.py --quick        # 20,000 entries, a minute or less
    .venv/bin/python bench/ledger_scale.py --prove-only URL  # only the proofs, on a store built before (--keep)

The proofs are timed in a fresh process over the finished store, as the
portal serves them: the process that appended a million entries carries
their garbage. Like the portal once it has started, that process freezes
what startup built out of the garbage collector's full passes (``gc.freeze``):
a full pass over SQLAlchemy's ~45,000 objects stopped one proof in a few
hundred for 10-15 ms. The report says how long the collector ran during the
timed proofs.

``--store postgresql+psycopg://...`` runs it on PostgreSQL (storage per entry
is then from pg_total_relation_size).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def payload(n: int) -> dict[str, object]:
    """About the size of a real purge receipt's ledger entry."""
    return {"purge_id": f"{n:032x}", "notice_id": f"2026-11-26-site{n % 997}-test", "reason": f"notice for site{n % 997}.test",
            "operator": "ops@crawler-01", "scope": {"domains": [f"site{n % 997}.test"], "resolved_domains": [f"site{n % 997}.test"]},
            "started_at": "2026-11-26T10:00:00+00:00", "finished_at": "2026-11-26T10:00:02+00:00",
            "counts": {"store": n % 50}, "total_deleted": n % 50, "manual_action_required": [], "deferred": [], "notes": {}}  # fmt: skip


def storage(store: object, url: str) -> dict[str, float]:
    """Bytes on disk: the whole database file, and each ledger table with its indexes where the engine says."""
    if url.startswith("sqlite"):
        import sqlite3

        store.dispose()  # type: ignore[attr-defined]
        path = Path(url.split("///", 1)[1])
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes: dict[str, float] = {"database": path.stat().st_size}
        try:
            for table in ("ledger", "ledger_nodes", "ledger_heads"):
                sizes[table] = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = ? OR name IN "
                                            "(SELECT name FROM sqlite_master WHERE tbl_name = ?)", (table, table)).fetchone()[0] or 0  # fmt: skip
        except sqlite3.DatabaseError:
            pass  # SQLite built without dbstat: the file size alone
        conn.close()
        return sizes
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return {table: conn.exec_driver_sql(f"SELECT pg_total_relation_size('{table}')").scalar() or 0
                for table in ("ledger", "ledger_nodes", "ledger_heads")}  # fmt: skip


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def prove(url: str, count: int) -> dict[str, object]:
    """Time ``count`` random inclusion and consistency proofs at the store's full size, each checked with the verifier."""
    import gc

    from crawler.compliance.store import Store
    from crawler.transparency import tree as tree_core
    from crawler.verify_receipt import verify_consistency, verify_inclusion

    store = Store(url)
    size = store.ledger_tree_size()
    head = store.latest_tree_head()
    assert head is not None and head["tree_size"] == size
    root = bytes.fromhex(head["root_hash"])
    # As the portal does once it has started (`scrapy compliance serve`, crawler/commands/compliance.py): what startup built is
    # left out of the garbage collector's full passes.
    gc.collect()
    gc.freeze()
    collecting = [0.0]  # the collector's time inside the proof being timed (seconds)
    timed = False

    def gc_pause(phase: str, info: dict[str, int]) -> None:
        if timed:
            collecting[0] += -time.perf_counter() if phase == "start" else time.perf_counter()

    gc.callbacks.append(gc_pause)
    rng = random.Random(9162)
    inclusion, consistency, reads, gc_time = [], [], [], []
    for _ in range(count):
        seq = rng.randint(1, size)
        collecting[0], timed, t0 = 0.0, True, time.perf_counter()
        proof = store.inclusion_proof(seq, size)
        inclusion.append(time.perf_counter() - t0)
        timed = False
        gc_time.append(collecting[0])
        entry = store.ledger_entry(seq)
        assert entry is not None
        verify_inclusion(seq - 1, size, entry.leaf_hash(), proof, root)
        reads.append(sum(len(tree_core.range_nodes(s, e)) for s, e in tree_core.inclusion_ranges(seq - 1, size)))
    for old in (rng.randint(1, size - 1) for _ in range(count)):
        collecting[0], timed, t0 = 0.0, True, time.perf_counter()
        proof = store.consistency_proof(old, size)
        consistency.append(time.perf_counter() - t0)
        timed = False
        gc_time.append(collecting[0])
        verify_consistency(old, size, proof, store.tree_root(old), root)
    gc.callbacks.remove(gc_pause)
    store.dispose()
    ms = lambda value: round(value * 1000, 3)  # noqa: E731
    return {
        "inclusion_ms_median": ms(statistics.median(inclusion)), "inclusion_ms_p99": ms(_quantile(inclusion, 0.99)),
        "inclusion_ms_max": ms(max(inclusion)), "inclusion_slowest_is_proof_no": inclusion.index(max(inclusion)) + 1,
        "consistency_ms_median": ms(statistics.median(consistency)), "consistency_ms_p99": ms(_quantile(consistency, 0.99)),
        "consistency_ms_max": ms(max(consistency)),
        "proofs_over_10_ms": sum(t > 0.010 for t in inclusion) + sum(t > 0.010 for t in consistency),
        "gc_ms_during_proofs": ms(sum(gc_time)), "gc_ms_in_one_proof_max": ms(max(gc_time)),
        # A proof over 10 ms in which the collector did not run: the machine's noise, or the proof itself.
        "proofs_over_10_ms_without_gc": sum(t > 0.010 and g == 0 for t, g in zip(inclusion + consistency, gc_time, strict=True)),
        "nodes_read_per_inclusion_max": max(reads),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--single", type=int, default=2000, help="appends one at a time, one signed head each")
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--store", default=None, help="a SQLAlchemy URL (default: a fresh SQLite file in a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="20,000 entries")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the built store (its URL is printed)")
    parser.add_argument("--prove-only", metavar="URL", default=None, help="time proofs on this store only (no appends)")
    args = parser.parse_args()
    if args.prove_only:
        print(json.dumps(prove(args.prove_only, args.proofs), indent=2))
        return 0
    if args.quick:
        args.entries, args.single, args.proofs = 20_000, 500, 100

    from crawler.compliance.store import Store
    from crawler.identity.signing import SigningKey

    folder = tempfile.mkdtemp(prefix="ledger-scale-")
    url = args.store or f"sqlite:///{folder}/ledger.sqlite3"
    key = SigningKey.generate()
    store = Store(url, head_key=key)
    bulk = args.entries - args.single
    started = time.perf_counter()
    for first in range(0, bulk, args.batch):
        store.append_ledger_batch([("purge.completed", payload(n)) for n in range(first, min(first + args.batch, bulk))])
        if first and first % 100_000 == 0:
            print(f"  {first:>9,} entries, {first / (time.perf_counter() - started):,.0f}/s", file=sys.stderr)
    batched = time.perf_counter() - started
    started = time.perf_counter()
    for n in range(bulk, args.entries):
        store.append_ledger("purge.completed", payload(n))
    single = time.perf_counter() - started
    store.dispose()
    # The proofs, in a fresh process over the finished file (see the module text).
    done = subprocess.run([sys.executable, __file__, "--prove-only", url, "--proofs", str(args.proofs)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    proofs = json.loads(done.stdout)
    size = store.ledger_tree_size()
    signed_heads = sum(1 for _ in store.tree_heads())
    sizes = storage(store, url)
    result = {
        "entries": size, "batch": args.batch, "engine": store.engine.dialect.name,
        "batched_appends_per_s": round(bulk / batched) if bulk else None,
        "single_appends_per_s": round(args.single / single) if args.single else None,
        **proofs,
        "bytes_per_entry": {name: round(value / size, 1) for name, value in sizes.items()},
        "signed_heads": signed_heads,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    store.dispose()
    if args.keep:
        print(f"kept: {url}", file=sys.stderr)
    elif not args.store:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
