"""How fast is the platform-terms decision, and does it grow with the number of policies?

Generates policy directories with 10 and with 10,000 platform policies,
loads each, and times ``PolicySet.decide`` over a fixed mix of URLs (hosts
under a policy and hosts without one) on one core. Prints decisions/s for
both and their ratio. Targets: >= 100,000 decisions/s, and the 10,000-policy
rate >= 0.8 of the 10-policy rate.

    .venv/bin/python bench/policy_decisions.py [--decisions N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.compliance.policy import load_policies  # noqa: E402

TODAY = date(2026, 11, 26)


def write_policies(root: Path, count: int) -> None:
    (root / "platforms").mkdir(parents=True)
    (root / "default.yaml").write_text("collection: allowed-per-robots\nrate:\n  min_delay: 0.5\n")
    for i in range(count):
        collection = ("consent-required", "forbidden", "allowed", "allowed-per-robots")[i % 4]
        consents = (
            "consents:\n  - granted_by: legal\n    reference: C-1\n    paths: [/ok/]\n"
            "    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n"
            if collection == "consent-required" else ""
        )
        paths = "paths:\n  - deny: /private/\n  - allow: /private/open\n" if collection.startswith("allowed") else ""
        (root / "platforms" / f"p{i}.yaml").write_text(
            f"id: p{i}\nname: Platform {i}\nowner: Owner {i}\ndomains: [site{i}.example, alias{i}.example]\n"
            f"terms:\n  url: https://site{i}.example/terms\n  clause: No robots.\n  reviewed: 2026-11-01\n"
            f"collection: {collection}\n{consents}{paths}"
        )


def urls(count: int) -> list[str]:
    """A fixed mix: 1,000 URLs, half on policy hosts (of the first 10), half elsewhere."""
    mix = []
    for i in range(1000):
        p = i % min(count, 10)
        mix.append(
            [f"https://www.site{p}.example/ok/page{i}", f"https://alias{p}.example/private/x{i}",
             f"https://news{i}.other.example/article/{i}", f"http://blog{i}.test/post?id={i}"][i % 4]
        )  # fmt: skip
    return mix


def rate(count: int, decisions: int, rounds: int = 5) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "policies"
        write_policies(root, count)
        started = time.perf_counter()
        policies, errors = load_policies(root)
        load_s = time.perf_counter() - started
        if policies is None:
            sys.exit(f"generated policies are invalid: {errors[:3]}")
    mix = urls(count)
    decide = policies.decide
    for url in mix:  # warm the caches both sizes have
        decide(url, TODAY)
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(decisions):
            decide(mix[i % 1000], TODAY)
        results.append(decisions / (time.perf_counter() - started))
    best = statistics.median(results)
    print(f"{count:>6} policies: loaded in {load_s:6.2f}s, {best:>10,.0f} decisions/s (median of {rounds})")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200_000)
    args = parser.parse_args()
    small = rate(10, args.decisions)
    large = rate(10_000, args.decisions)
    ratio = large / small
    print(f"ratio 10,000 / 10 policies: {ratio:.2f} (target >= 0.80); "
          f"slowest rate {min(small, large):,.0f}/s (target >= 100,000/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
