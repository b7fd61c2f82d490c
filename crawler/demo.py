"""``make demo``: the compliance stack crawling a bundled local web.

Starts the demo web on 127.0.0.1 (made-up ``*.test`` hosts reached through
it as a proxy), runs ``scrapy crawl site`` through the real CLI, prints what
was stored, what was refused and why, and what each host saw, then stops.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from crawler.compliance.optouts import describe_signals
from crawler.compliance.store import Store
from crawler.testing.runner import project_dir, run_site_crawl, scrapy_command, start_site_crawl
from crawler.testing.sites import demo_sites, notice_sites
from crawler.testing.web import TestWeb

START_URLS = [
    "http://shop.test/", "http://down.test/", "http://moved.test/", "http://slow.test/", "http://images.test/",
    "http://www.facebook.com/", "http://hop.test/", "http://optout.test/", "http://aipref.test/", "http://tdm.test/",
]  # fmt: skip


def _rule(text: str, width: int = 78) -> str:
    return f"\n== {text} " + "=" * max(0, width - len(text) - 4)


def main() -> int:
    root = project_dir()
    store_path = root / "var" / "demo.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    store_url = f"sqlite:///{store_path}"
    started = time.monotonic()
    with TestWeb(demo_sites()) as web:
        print(f"Demo web on {web.proxy_url}, serving: {', '.join(sorted(demo_sites()))}")
        print(f"Crawling: scrapy crawl site -a url={','.join(START_URLS)}")
        run = run_site_crawl(web, START_URLS, store_url, settings={"LOG_LEVEL": "WARNING"})
        log = web.log
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        print(f"demo crawl failed with exit status {run.returncode}", file=sys.stderr)
        return 1
    store = Store(store_url)

    print(_rule("What each host saw (the server's access log)"))
    seen = Counter((e.scheme, e.host) for e in log)
    for (scheme, host), count in sorted(seen.items(), key=lambda p: p[0][1]):
        paths = ", ".join(e.path for e in log if e.host == host and e.scheme == scheme)
        print(f"  {scheme}://{host:<16} {count:>3} request(s): {paths[:90]}{'...' if len(paths) > 90 else ''}")
    slow = [e.time for e in log if e.host == "slow.test"]
    if len(slow) > 2:
        gaps = [b - a for a, b in zip(slow[1:], slow[2:])]
        print(f"  slow.test publishes Crawl-delay: 0.6 -> smallest gap between its pages: {min(gaps):.2f}s")

    print(_rule("Stored (one item per HTML page)"))
    for host, count in store.items_per_host():
        print(f"  {host:<20} {count:>3} item(s)")
    print(f"  total: {store.count_items()}   (scrapy items count / scrapy items export -o FILE)")

    print(_rule("Refused, by reason"))
    for reason, count in store.refusal_counts():
        print(f"  {reason:<32} {count:>3}")
    print(_rule("Example refusals: the rule and where it lives"))
    shown: Counter[str] = Counter()
    for refusal in store.refusals():
        if shown[refusal["reason"]] >= 2 or refusal["reason"].startswith(("image.", "terms.", "optout.")):
            continue
        shown[refusal["reason"]] += 1
        print(f"  {refusal['url']}\n    {refusal['reason']} at {refusal['gate']}: {refusal['rule']}\n    source: {refusal['source']}")
    print(_rule("Images refused, by gate (never requested, cut off, or scrubbed)"))
    for refusal in store.refusals():
        if refusal["reason"].startswith("image."):
            path = refusal["url"].removeprefix("http://images.test")
            print(f"  {refusal['gate']:<9} {refusal['reason']:<19} {path:<24} {refusal['rule']}"
                  + (f" ({refusal['detail']})" if refusal["detail"] else ""))
    huge = [e for e in log if e.host == "images.test" and e.path == "/huge"]
    if huge:
        print(f"  the 20 MiB disguised image at /huge: the server sent {huge[0].bytes_sent} byte(s) before the crawler hung up")
    print(_rule("Opt-out signals (purposes: search, train-ai, archive)"))
    stored_signals = {
        item["url"]: ((item.get("provenance") or {}).get("optouts") or {}).get("signals") or {} for item in store.iter_items()
    }
    for host in ("optout.test", "aipref.test", "tdm.test"):
        for entry in log:
            if entry.host != host or entry.path in ("/robots.txt", "/.well-known/tdmrep.json"):
                continue
            url = f"http://{host}{entry.path}"
            refusal = next((r for r in store.refusals() if r["url"] == url and r["reason"].startswith("optout.")), None)
            if 300 <= entry.status < 400:
                verdict = "a redirect: its target is judged by its own rules"
            elif url in stored_signals:
                verdict = f"stored; signals: {describe_signals(stored_signals[url])}"
            else:
                verdict = f"NOT stored: {refusal['reason']} ({refusal['rule']}; {refusal['source']})" if refusal else "not stored"
            print(f"  {url:<38} {verdict}")
    print(_rule("Platform terms (policies/platforms/*.yaml)"))
    facebook = [e for e in log if e.host.endswith("facebook.com")]
    print(f"  requests that reached www.facebook.com, robots.txt included: {len(facebook)}")
    for refusal in store.refusals():
        if refusal["reason"].startswith("terms."):
            via = f" ({refusal['detail']})" if refusal["detail"] else ""
            print(f"  {refusal['url']}{via}  {refusal['reason']} at {refusal['gate']}\n    {refusal['rule']}\n    source: {refusal['source']}")
    print("\n$ scrapy policy check http://www.facebook.com/")
    check = scrapy_command(["policy", "check", "http://www.facebook.com/"], settings={"COMPLIANCE_STORE": store_url})
    print("  " + check.stdout.strip().replace("\n", "\n  "))
    report = root / "var" / "demo-report.html"
    print(f"\n$ scrapy compliance report --html {report.relative_to(root)}   (first lines)")
    done = scrapy_command(["compliance", "report", "--html", str(report)], settings={"COMPLIANCE_STORE": store_url})
    print("\n".join("  " + line for line in done.stdout.splitlines()[:14]))
    print(f"  ... the full report, with charts, is in {report.relative_to(root)} (open it in a browser)")
    if notice_demo(root) != 0:
        return 1
    if portal_demo(root) != 0:
        return 1
    print(f"\nDone in {time.monotonic() - started:.1f}s. Store: {store_path.relative_to(root)}")
    return 0


def notice_demo(root: Path) -> int:
    """A cease-and-desist filed mid-crawl from a second process: the host goes quiet, its data is purged."""
    import json
    import shutil

    var = root / "var"
    policies = var / "demo-policies"
    shutil.rmtree(policies, ignore_errors=True)
    shutil.copytree(root / "policies", policies, ignore=shutil.ignore_patterns("notices"))
    store_path = var / "demo-notice.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    store_url = f"sqlite:///{store_path}"
    feed = var / "demo-feed.jl"
    feed.unlink(missing_ok=True)
    settings = {"COMPLIANCE_POLICY_DIR": str(policies), "LOG_LEVEL": "WARNING", "FEEDS": json.dumps({str(feed): {"format": "jsonlines"}})}
    print(_rule("A cease-and-desist, mid-crawl, from a second process"))
    with TestWeb(notice_sites()) as web:
        crawl = start_site_crawl(web, ["http://bigsocial.test/", "http://bystander.test/"], store_url,
                                 settings=settings, log_path=var / "demo-notice-crawl.log")  # fmt: skip
        while len(web.paths("bigsocial.test")) < 8 and crawl.poll() is None:
            time.sleep(0.05)
        began = min(e.time for e in web.log)
        command = ["notice", "add", "--domain", "bigsocial.test", "--sender", "BigSocial Inc., Legal Department",
                   "--received", time.strftime("%Y-%m-%d"), "--id", "demo-cease-and-desist"]  # fmt: skip
        print(f"  crawl running (pid {crawl.pid}); in another process: scrapy {' '.join(command)}")
        done = scrapy_command(command, settings={"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policies)})
        returned = time.time()
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            crawl.kill()
            return 1
        crawl.wait(120)
        log = web.log
    print(f"  `notice add` returned {returned - began:.1f}s into the crawl")
    print("  requests to bigsocial.test per half second (| = the moment `notice add` returned):")
    buckets = Counter(int((e.time - began) * 2) for e in log if e.host.endswith("bigsocial.test"))
    for bucket in range(0, int((max(e.time for e in log) - began) * 2) + 1):
        marker = " |" if bucket == int((returned - began) * 2) else "  "
        print(f"   {bucket / 2:5.1f}s{marker} {'#' * buckets.get(bucket, 0)}")
    late = [e for e in log if e.host.endswith("bigsocial.test") and e.time > returned]
    print(f"  requests to bigsocial.test that started after `notice add` returned: {len(late)}")
    receipt = json.loads(done.stdout)["purge"]
    print("  the purge receipt (printed by `notice add`):")
    short = {k: receipt[k] for k in ("purge_id", "notice_id", "operator", "started_at", "finished_at", "counts",
                                     "manual_action_required", "deferred", "ledger_entry")}  # fmt: skip
    print("    " + json.dumps(short, indent=2).replace("\n", "\n    "))
    store = Store(store_url)
    print(f"  after the crawl: items for bigsocial.test {store.count_items('bigsocial.test')}, "
          f"for bystander.test {store.count_items('bystander.test')}; "
          f"feed records for bigsocial.test: {sum('bigsocial.test' in line for line in feed.read_text().splitlines())}")
    print("\n$ scrapy ledger show")
    shown = scrapy_command(["ledger", "show"], settings={"COMPLIANCE_STORE": store_url})
    print("\n".join("  " + line for line in shown.stdout.rstrip().splitlines()))
    print("$ scrapy ledger verify")
    verified = scrapy_command(["ledger", "verify"], settings={"COMPLIANCE_STORE": store_url})
    print("  " + verified.stdout.strip())
    return verified.returncode


def portal_demo(root: Path) -> int:
    """A site owner objects through the portal: the crawl goes quiet, they prove control, the data is purged, the receipt checks."""
    import json
    import re
    import subprocess

    from crawler.testing.portal import OwnedSite, bystander, csrf_of, file_objection, portal_settings, running_portal, session
    from crawler.testing.runner import policy_dir_with_pace

    var = root / "var"
    store_path = var / "demo-portal.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    store_url = f"sqlite:///{store_path}"
    policies = policy_dir_with_pace(var / "demo-portal-policies", min_delay=0.05, max_concurrency=1)
    settings = portal_settings(store_url, policies, var / "demo-portal")
    owned = OwnedSite()
    print(_rule("A site owner objects through the portal (scrapy compliance serve)"))
    with TestWeb({"owner.test": owned, "bystander.test": bystander()}) as web:
        crawl = start_site_crawl(web, ["http://owner.test/", "http://bystander.test/"], store_url,
                                 settings={"COMPLIANCE_POLICY_DIR": str(policies), "COMPLIANCE_DATA_DIR": str(var / "demo-portal"),
                                           "LOG_LEVEL": "WARNING"}, log_path=var / "demo-portal-crawl.log")  # fmt: skip
        try:
            with running_portal(web.env(), settings, var / "demo-portal.log") as portal:
                print(f"  portal running at {portal.url}/ (pid {portal.process.pid}); crawl running (pid {crawl.pid})")
                web.wait_for_requests("owner.test", 10, process=crawl)
                client = session()
                page = file_objection(client, portal.url)
                filed = page.submitted_at
                found = re.search(r'id="token">([^<]+)<', page.text)
                if page.status_code != 200 or found is None:
                    print(f"  filing the objection failed: HTTP {page.status_code}", file=sys.stderr)
                    return 1
                print(f"  a script filed an objection for owner.test at {page.url}: pending, collection paused")
                time.sleep(2.5)
                seen = web.requests(host="owner.test")
                before = sum(e.time <= filed for e in seen)
                late = sum(e.time > filed + 1.0 for e in seen)
                print(f"  owner.test saw {before} request(s) before the objection and {late} more than 1 s after it")
                owned.file_token = found.group(1)
                print("  the owner puts the token at https://owner.test/.well-known/ethical-crawler-verification.txt; Verify")
                verified = client.post(page.url + "/verify", data={"csrftoken": csrf_of(page.text)})
                receipt = client.get(page.url.split("?")[0] + "/receipt.json")
                if receipt.status_code != 200:
                    print(f"  verification failed:\n{verified.text[-1500:]}", file=sys.stderr)
                    return 1
        finally:
            crawl.terminate()
            crawl.wait(60)
    data = receipt.json()
    path = var / "demo-portal-receipt.json"
    path.write_text(receipt.text, encoding="utf-8")
    purge = data["purge"]
    print(f"  verified; purged: {json.dumps(purge['counts'])}; the receipt is in {path.relative_to(root)}")
    print(f"  items for owner.test left in the store: {Store(store_url).count_items('owner.test')}")
    as_portal = [a for k, v in settings.items() for a in ("-s", f"{k}={v}")]
    print(f"\n$ scrapy ledger verify --receipt {path.relative_to(root)}")
    checked = scrapy_command(["ledger", "verify", "--receipt", str(path), *as_portal])
    print("\n".join("  " + line for line in checked.stdout.strip().splitlines()[-4:]))
    keys = var / "demo-portal" / "key-directory.json"
    keys.write_text(scrapy_command(["identity", "directory", "--body-only", *as_portal]).stdout, encoding="utf-8")
    print(f"$ python crawler/verify_receipt.py {path.relative_to(root)} --key {keys.relative_to(root)}   (no crawler needed)")
    owner = subprocess.run([sys.executable, str(root / "crawler" / "verify_receipt.py"), str(path), "--key", str(keys)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    print("\n".join("  " + line for line in owner.stdout.strip().splitlines()))
    return checked.returncode or owner.returncode


if __name__ == "__main__":
    sys.exit(main())
