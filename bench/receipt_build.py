"""Receipt build: does building a site owner's receipt grow with the ledger?

Two fresh SQLite stores, one with ``--small`` (default 100) and one with
``--large`` (default 100,000) older ledger entries (``purge.completed``-sized,
appended through ``Store.append_ledger_batch``), each then gets one objection
filed and approved through ``ObjectionBook`` (notice, pause withdrawn, outcome
entry, purge). The script then times ``build_receipt`` on each store in
alternating pairs (small, large, small, large, ...; ``--pairs``, default 7)
and reports the median of each and the ratio large/small with the per-pair
ratios. A build that reads the whole ledger shows a ratio near large/small;
one that reads only what the completion appended shows a ratio near 1.

    .venv/bin/python bench/receipt_build.py [--small N] [--large N] [--pairs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepared(path: Path, older: int) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from crawler.compliance.store import Store
    from crawler.portal.objections import ObjectionBook, parse_form

    store = Store(f"sqlite:///{path}")
    for start in range(0, older, 1000):
        store.append_ledger_batch([("purge.completed", {"purge_id": f"{n:032x}", "counts": {"store": n % 50}, "total_deleted": n % 50})
                                   for n in range(start, min(older, start + 1000))])  # fmt: skip
    book = ObjectionBook(store)
    form, errors = parse_form({"domain": "owner.test", "sender": "Owner", "email": "owner@owner.test", "kind": "Other"})
    assert form is not None, errors
    filed = book.file(form)
    receipt = book.complete(filed["id"], "approved", {"method": "operator"}, "bench")
    record = book.get(filed["id"])
    assert record is not None
    return store, record, receipt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from crawler.portal.objections import build_receipt

    with tempfile.TemporaryDirectory(prefix="receipt-bench-") as tmp:
        began = time.perf_counter()
        stores = {"small": prepared(Path(tmp) / "small.sqlite3", args.small), "large": prepared(Path(tmp) / "large.sqlite3", args.large)}
        print(f"prepared {args.small:,} and {args.large:,} older entries in {time.perf_counter() - began:.0f} s")
        times: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(args.pairs):
            for kind in ("small", "large"):
                store, record, receipt = stores[kind]
                start = time.perf_counter()
                built = build_receipt(store, record, receipt["notice"], receipt["purge"])
                times[kind].append(time.perf_counter() - start)
                assert [e["seq"] for e in built["ledger_entries"]] == [e["seq"] for e in receipt["ledger_entries"]]
        for store, _, _ in stores.values():
            store.dispose()
    ratios = [b / a for a, b in zip(times["small"], times["large"], strict=True)]
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"build_receipt, median of {args.pairs}: {median['small'] * 1000:.2f} ms with {args.small:,} older entries, "
          f"{median['large'] * 1000:.2f} ms with {args.large:,}")  # fmt: skip
    print(f"ratio large/small: {median['large'] / median['small']:.2f} (per pair: {', '.join(f'{r:.2f}' for r in ratios)})")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "times": times, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
