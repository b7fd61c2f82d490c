"""How long the framework's commands take to start, against ``scrapy version`` in the same run.

    python bench/command_startup.py [--runs 15]

Scrapy imports every command module (ours come through the
``scrapy.commands`` entry points) for every invocation, so a heavy import at
module level would slow every ``scrapy`` command of every project that
installs the package. Each command here runs from inside this project on a
fresh store, alternating with ``scrapy version``; the figure is the ratio of
medians (target: ``notice list`` at most 1.3x ``scrapy version``). The
machine is shared and noisy: only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "notice list": ["notice", "list"],
    "items count": ["items", "count"],
    "policy list": ["policy", "list"],
}


def timed(args: list[str], store: str, *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "scrapy", *args, "-s", f"COMPLIANCE_STORE={store}", *extra],
                          cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"scrapy {' '.join(args)} failed:\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = f"sqlite:///{scratch}/bench.sqlite3"
        timed(["notice", "list"], store)  # create the store once; warm the file cache
        # The same with one notice filed (in the store and as a file in its own policy folder):
        # listing then validates the notice, which loads the public suffix list.
        filed, policies = f"sqlite:///{scratch}/filed.sqlite3", f"{scratch}/policies"
        with_notice = ("-s", f"COMPLIANCE_POLICY_DIR={policies}", "-s", f"COMPLIANCE_DATA_DIR={scratch}/var")
        Path(policies).mkdir()
        timed(["notice", "add", "--domain", "news.test", "--sender", "News Inc.", "--received", "2026-12-01",
               "--keep-existing"], filed, *with_notice)  # fmt: skip
        times: dict[str, list[float]] = {"version": [], **{name: [] for name in COMMANDS}, "notice list (1 notice)": []}
        for _ in range(options.runs):
            for name, args in [("version", ["version"]), *COMMANDS.items()]:
                times[name].append(timed(args, store))
            times["notice list (1 notice)"].append(timed(["notice", "list"], filed, *with_notice))
    base = statistics.median(times["version"])
    print(f"{'command':<24} {'median s':>9} {'ratio to scrapy version':>24}")
    for name, values in times.items():
        print(f"{name:<24} {statistics.median(values):>9.3f} {statistics.median(values) / base:>24.2f}")


if __name__ == "__main__":
    main()
