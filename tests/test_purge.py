"""`scrapy purge`: every location, receipts, dry runs, verification, and crash safety under SIGKILL."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.compliance.ledger import verify
from crawler.compliance.store import Store, item_row
from crawler.testing.runner import policy_dir_with_pace, scrapy_command

URLS = [
    "http://a.test/1", "http://a.test/2", "https://blog.a.test/x", "http://a.test/people/ann/photos",
    "http://b.test/1", "http://b.test/2", "http://ba.test/1",
]  # fmt: skip


def fill(store: Store, urls: list[str], crawl_id: str = "c1") -> None:
    from crawler.compliance.domains import host_of, registered_domain

    rows = [item_row({"url": u, "host": host_of(u), "domain": registered_domain(host_of(u)), "crawl_id": crawl_id, "title": u})
            for u in urls]  # fmt: skip
    store.write(rows, [])


@pytest.fixture
def env(tmp_path: Path, any_store_url: str) -> dict[str, Any]:
    store_url = any_store_url
    policies = policy_dir_with_pace(tmp_path / "policies")
    store = Store(store_url)
    fill(store, URLS)
    return {"tmp": tmp_path, "store_url": store_url, "store": store, "settings": [
        "-s", f"COMPLIANCE_STORE={store_url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}", "-s", "COMPLIANCE_MACHINE=here"]}  # fmt: skip


def purge(env: dict[str, Any], *args: str, extra_env: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any] | None]:
    done = scrapy_command(["purge", *args, *env["settings"]], env=extra_env)
    text = done.stdout
    receipt = None
    if text.lstrip().startswith("{"):
        decoder = json.JSONDecoder()
        receipt, _ = decoder.raw_decode(text.lstrip())
    return done.returncode, text + done.stderr, receipt


def urls_left(store: Store) -> list[str]:
    return sorted(r["url"] for r in store.iter_items())


def test_purge_domain_deletes_domain_and_subdomains_with_receipt(env: dict[str, Any]) -> None:
    """Purging a.test removes a.test and blog.a.test items, keeps b.test and ba.test, and chains a receipt."""
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "objection by email", "--operator", "alice")
    assert code == 0, out
    assert receipt is not None and receipt["counts"] == {"store": 4} and receipt["total_deleted"] == 4
    assert receipt["operator"] == "alice" and receipt["reason"] == "objection by email"
    assert receipt["started_at"] <= receipt["finished_at"]
    assert urls_left(env["store"]) == ["http://b.test/1", "http://b.test/2", "http://ba.test/1"]
    store = env["store"]
    entries = list(store.ledger_entries())
    assert [e.kind for e in entries] == ["purge.started", "purge.completed"]
    assert receipt["ledger_entry"] == {"seq": 2, "hash": entries[-1].hash}
    assert json.loads(entries[-1].payload)["total_deleted"] == 4
    assert verify(entries, store.ledger_head()).ok


def test_dry_run_counts_and_deletes_nothing(env: dict[str, Any]) -> None:
    """--dry-run reports what is in scope per location and changes nothing, not even the ledger."""
    code, out, report = purge(env, "--domain", "b.test", "--reason", "check", "--dry-run")
    assert code == 0 and report is not None
    assert report["in_scope"]["store"] == {"remaining": 2}
    assert len(urls_left(env["store"])) == len(URLS)
    assert list(env["store"].ledger_entries()) == []


def test_url_pattern_purge_and_verify(env: dict[str, Any]) -> None:
    """A URL pattern purges only matching records; --verify then passes (exit 0)."""
    code, out, receipt = purge(env, "--url-pattern", "https://a.test/people/*", "--reason", "art. 17 request", "--verify")
    assert code == 0, out
    assert receipt is not None and receipt["counts"]["store"] == 1
    assert "http://a.test/people/ann/photos" not in urls_left(env["store"])
    assert receipt["verify"] == {"remaining": {"store": {"remaining": 0}}, "verified": True, "problems": []}


def test_verify_fails_when_something_remains(env: dict[str, Any]) -> None:
    """--dry-run --verify exits 1 naming the location that still holds data in scope."""
    code, out, _ = purge(env, "--domain", "b.test", "--reason", "check", "--dry-run", "--verify")
    assert code == 1
    assert "error: 2 record(s) in scope remain in store" in out


def test_bad_input_is_one_line_error(env: dict[str, Any]) -> None:
    """Missing reason, non-registered domains and unknown platforms are refused with one line."""
    for args, message in [
        (["--domain", "a.test"], "--reason is required"),
        (["--domain", "www.a.test", "--reason", "x"], "not a registered domain; write 'a.test'"),
        (["--platform", "nosuch", "--reason", "x"], "no such platform policy"),
        (["--reason", "x"], "say what is in scope"),
    ]:
        code, out, _ = purge(env, *args)
        assert code == 1 and message in out and "Traceback" not in out, out


def write_feeds(tmp: Path) -> dict[str, Path]:
    records = [{"url": u, "title": u} for u in URLS]
    paths = {fmt: tmp / f"feed.{fmt}" for fmt in ("jsonlines", "json", "csv", "xml", "marshal")}
    paths["jsonlines"].write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    paths["json"].write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]", encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["title", "url"])
        writer.writeheader()
        writer.writerows(records)
    paths["xml"].write_text('<?xml version="1.0" encoding="utf-8"?>\n<items>'
                            + "".join(f"<item><url>{r['url']}</url><title>t</title></item>" for r in records) + "</items>",
                            encoding="utf-8")  # fmt: skip
    paths["marshal"].write_bytes(b"\x00binary")
    return paths


def test_feeds_are_rewritten_and_unreachable_ones_listed(env: dict[str, Any]) -> None:
    """Local feeds lose their in-scope records atomically; remote feeds and binary formats are listed for manual action."""
    store: Store = env["store"]
    paths = write_feeds(env["tmp"])
    for fmt, path in paths.items():
        store.record_output("c1", "here", "feed", str(path), {"format": fmt, "uri": str(path)})
    store.record_output("c1", "here", "feed", "s3://bucket/items.jl", {"format": "jsonlines", "uri": "s3://bucket/items.jl", "remote": True})
    store.record_output("c2", "elsewhere", "feed", "/data/items.jl", {"format": "jsonlines", "uri": "/data/items.jl"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "notice by phone")
    assert code == 0, out
    assert receipt is not None
    for fmt in ("jsonlines", "json", "csv", "xml"):
        assert receipt["counts"][f"feed:{paths[fmt]}"] == 4, fmt
    remaining_json = [r["url"] for r in json.loads(paths["json"].read_text())]
    assert remaining_json == ["http://b.test/1", "http://b.test/2", "http://ba.test/1"]
    assert [json.loads(line)["url"] for line in paths["jsonlines"].read_text().splitlines()] == remaining_json
    assert [row["url"] for row in csv.DictReader(paths["csv"].open(encoding="utf-8"))] == remaining_json
    assert "http://a.test/1<" not in paths["xml"].read_text() and "http://ba.test/1<" in paths["xml"].read_text()
    manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
    assert "cannot be rewritten" in manual[f"feed:{paths['marshal']}"]
    assert "remote feed s3://bucket/items.jl" in manual["feed:s3://bucket/items.jl"]
    assert "on machine elsewhere" in manual["feed:/data/items.jl@elsewhere"]


def test_running_crawl_owns_its_locations(env: dict[str, Any]) -> None:
    """A feed a running crawl is writing is deferred to that crawl, not rewritten under it."""
    store: Store = env["store"]
    feed = env["tmp"] / "live.jl"
    feed.write_text('{"url": "http://a.test/1"}\n', encoding="utf-8")
    store.record_output("live", "here", "feed", str(feed), {"format": "jsonlines"})
    store.heartbeat("live", "here", os.getpid())
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "x")
    assert code == 0 and receipt is not None
    assert receipt["deferred"][0]["location"] == f"feed:{feed}" and "running crawl live" in receipt["deferred"][0]["why"]
    assert "a.test/1" in feed.read_text()


def fifo_jobdir(tmp: Path, urls: list[str]) -> Path:
    """A JOBDIR whose queue is one of queuelib's FIFO disk queues (Scrapy's PickleFifoDiskQueue format)."""
    import pickle

    from queuelib.queue import FifoDiskQueue

    jobdir = tmp / "job"
    queue = FifoDiskQueue(str(jobdir / "requests.queue" / "slot" / "0"))
    for url in urls:
        queue.push(pickle.dumps({"url": url, "method": "GET"}, protocol=4))
    queue.close()
    return jobdir


def queued(jobdir: Path) -> list[str]:
    import pickle
    import shutil

    from queuelib.queue import FifoDiskQueue

    copy = jobdir.with_name("copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(jobdir / "requests.queue" / "slot" / "0", copy)
    queue = FifoDiskQueue(str(copy))
    found = []
    while (record := queue.pop()) is not None:
        found.append(pickle.loads(record)["url"])  # noqa: S301
    queue.close()
    return found


@pytest.mark.parametrize("point", ["started", "store-chunk", "file-replaced", "queue-swapped", "before-receipt"])
def test_killed_purge_resumes_and_never_overreports(env: dict[str, Any], point: str) -> None:
    """SIGKILL at each point, then the same command again: it completes, reports at most what it deleted, the ledger verifies."""
    store: Store = env["store"]
    fill(store, [f"http://a.test/bulk/{i}" for i in range(300)])
    before = store.count_items("a.test")
    feed = write_feeds(env["tmp"])["jsonlines"]
    store.record_output("c1", "here", "feed", str(feed), {"format": "jsonlines"})
    jobdir = fifo_jobdir(env["tmp"], URLS)
    store.record_output("c1", "here", "jobdir", str(jobdir), {})
    code, out, _ = purge(env, "--domain", "a.test", "--reason", "crash test", extra_env={"COMPLIANCE_FAULT": point})
    assert code == -9, out
    assert verify(store.ledger_entries(), store.ledger_head()).ok
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "crash test")
    assert code == 0, out
    assert receipt is not None
    assert store.count_items("a.test") == 0 and "a.test/" not in feed.read_text().replace("ba.test/", "")
    assert queued(jobdir) == ["http://b.test/1", "http://b.test/2", "http://ba.test/1"], "order kept, nothing in scope"
    assert receipt["counts"]["store"] <= before and receipt["counts"][f"feed:{feed}"] <= 4
    if point != "file-replaced":
        assert receipt["counts"][f"feed:{feed}"] == 4
    assert receipt["counts"][f"jobdir:{jobdir}"] <= 4
    assert receipt["total_deleted"] <= before + 8
    purges = store.purges()
    assert len(purges) == 1 and purges[0]["status"] == "done"  # the same purge record, resumed
    assert verify(store.ledger_entries(), store.ledger_head()).ok
    assert [e.kind for e in store.ledger_entries()] == ["purge.started", "purge.completed"]


def test_feed_edge_cases_keep_every_out_of_scope_record(env: dict[str, Any]) -> None:
    """Indented JSON, U+2028 inside strings and records without a url: nothing out of scope is lost or mangled."""
    store: Store = env["store"]
    tmp: Path = env["tmp"]
    records = [{"url": "http://a.test/1", "t": "x"}, {"url": "http://b.test/1", "t": "line\u2028sep\u0085"}]
    indented = tmp / "indented.json"
    indented.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    lines = tmp / "lines.jl"
    lines.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + '{"title": "no url"}\n', encoding="utf-8")
    store.record_output("c1", "here", "feed", str(indented), {"format": "json", "indent": 2})
    store.record_output("c1", "here", "feed", str(lines), {"format": "jsonlines"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "edge cases")
    assert code == 0 and receipt is not None, out
    assert json.loads(indented.read_text()) == records[1:]
    assert [json.loads(line) for line in lines.read_text().split("\n") if line] == [records[1], {"title": "no url"}]
    manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
    assert "1 record(s) without a url kept" in manual[f"feed:{lines}"]
    assert receipt["counts"][f"feed:{indented}"] == 1


def test_dbm_cache_purge_leaves_no_body_on_disk(env: dict[str, Any]) -> None:
    """Purging a DBM cache rebuilds the file: the in-scope response body is gone from disk, not just unindexed."""
    import dbm
    import pickle

    tmp: Path = env["tmp"]
    path = str(tmp / "cache" / "site.db")
    (tmp / "cache").mkdir()
    with dbm.open(path, "c") as db:
        for n, url in enumerate(["http://a.test/secret", "http://b.test/kept"]):
            db[f"k{n}_data"] = pickle.dumps({"url": url, "body": f"BODY-{url}".encode()})
            db[f"k{n}_time"] = "1"
    env["store"].record_output("c1", "here", "httpcache", path, {"backend": "dbm", "dbm_module": "dbm"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "dbm")
    assert code == 0 and receipt is not None and receipt["counts"][f"httpcache:{path}"] == 1, out
    on_disk = b"".join(p.read_bytes() for p in (tmp / "cache").iterdir())
    assert b"BODY-http://a.test/secret" not in on_disk and b"BODY-http://b.test/kept" in on_disk
    with dbm.open(path, "r") as db:
        assert sorted(db.keys()) == [b"k1_data", b"k1_time"]


def test_scope_normalisation_idn_trailing_dot_and_ports(env: dict[str, Any]) -> None:
    """Unicode domains are purged in their IDNA form; ports and trailing dots do not hide items from a URL pattern."""
    store: Store = env["store"]
    fill(store, ["https://xn--bcher-kva.test/a", "https://shop.test:8443/people/x", "https://shop.test./people/y",
                 "https://SHOP.test/people/z", "https://shop.test/other"])  # fmt: skip
    code, out, receipt = purge(env, "--domain", "bücher.test", "--reason", "idn")
    assert code == 0 and receipt is not None and receipt["counts"]["store"] == 1, out
    code, out, receipt = purge(env, "--url-pattern", "https://shop.test/people/*", "--reason", "pattern")
    assert code == 0 and receipt is not None and receipt["counts"]["store"] == 3, out
    assert "https://shop.test/other" in urls_left(store)


@pytest.mark.parametrize("module", ["dbm.dumb", "dbm"])
def test_dbm_rebuild_killed_between_renames_is_finished_by_the_next_run(env: dict[str, Any], module: str) -> None:
    """dbm.dumb is two files: SIGKILL between their renames, and the next run completes the swap; nothing is lost."""
    import importlib
    import pickle

    dbm_module = importlib.import_module(module)
    tmp: Path = env["tmp"]
    (tmp / "cache").mkdir()
    path = str(tmp / "cache" / "site.db")
    with dbm_module.open(path, "c") as db:
        for n in range(40):
            url = f"http://{'a' if n % 2 else 'b'}.test/{n}"
            db[f"k{n}_data"] = pickle.dumps({"url": url, "body": f"BODY-{url}".encode()})
            db[f"k{n}_time"] = "1"
    with dbm_module.open(path, "w") as db:  # a second commit: dbm.dumb now also has a .bak
        db["k0_time"] = "2"
    env["store"].record_output("c1", "here", "httpcache", path, {"backend": "dbm", "dbm_module": module})
    code, out, _ = purge(env, "--domain", "a.test", "--reason", "dbm", extra_env={"COMPLIANCE_FAULT": "dbm-swapping"})
    assert code == -9, out
    assert Path(path + ".purging.swap").exists(), "killed between the renames"
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "dbm")
    assert code == 0 and receipt is not None, out
    leftovers = sorted(p.name for p in (tmp / "cache").iterdir() if ".purging" in p.name)
    assert leftovers == []
    on_disk = b"".join(p.read_bytes() for p in (tmp / "cache").iterdir())
    assert b"BODY-http://a.test/" not in on_disk
    with dbm_module.open(path, "r") as db:
        kept = {pickle.loads(db[k])["url"] for k in db.keys() if k.endswith(b"_data")}  # noqa: S301
        assert db[b"k0_time"] == b"2"
    assert kept == {f"http://b.test/{n}" for n in range(0, 40, 2)}


@contextlib.contextmanager
def holding_open(path: Path, mode: str) -> Iterator[int]:
    """Another process that holds ``path`` open in ``mode`` until the block ends; yields its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; f = open(sys.argv[1], sys.argv[2]); print('open', flush=True); time.sleep(120)",
         str(path), mode],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_file_open_for_writing_is_not_rewritten_under_its_writer(env: dict[str, Any]) -> None:
    """A feed another process holds open for writing is left alone (manual, or deferred to the crawl that holds it)."""
    store: Store = env["store"]
    feed = write_feeds(env["tmp"])["jsonlines"]
    store.record_output("c1", "here", "feed", str(feed), {"format": "jsonlines"})  # c1 has no heartbeat: not running
    with holding_open(feed, "a") as pid:
        before = feed.read_text()
        code, out, receipt = purge(env, "--domain", "a.test", "--reason", "held open")
        assert code == 0 and receipt is not None, out
        manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
        assert manual[f"feed:{feed}"].startswith(f"open for writing by pid {pid} (")
        assert feed.read_text() == before, "not rewritten under its writer"
        # The writer is a crawl whose heartbeat names that pid: the purge is deferred to it.
        store.heartbeat("c2", "here", pid)
        code, out, receipt = purge(env, "--domain", "b.test", "--reason", "held by a crawl")
        assert code == 0 and receipt is not None, out
        deferred = {d["location"]: d["why"] for d in receipt["deferred"]}
        assert deferred[f"feed:{feed}"] == f"being written by running crawl c2 (pid {pid}); it applies this purge when it closes it"
        assert feed.read_text() == before
    store.heartbeat("c2", "here", pid, closed=True)
    with holding_open(feed, "r"):  # a reader (say `tail -f`) does not hold the purge back
        code, out, receipt = purge(env, "--domain", "a.test", "--reason", "closed now")
    assert code == 0 and receipt is not None and receipt["counts"][f"feed:{feed}"] == 4, out


def test_feeds_that_are_links_or_not_files(env: dict[str, Any]) -> None:
    """A symlinked feed is purged in its target (not by replacing the link); a FIFO is never read (it would hang)."""
    store: Store = env["store"]
    tmp: Path = env["tmp"]
    target = write_feeds(tmp)["jsonlines"]
    link = tmp / "link.jl"
    link.symlink_to(target)
    fifo = tmp / "pipe.jl"
    os.mkfifo(fifo)
    store.record_output("c1", "here", "feed", str(link), {"format": "jsonlines"})
    store.record_output("c1", "here", "feed", str(fifo), {"format": "jsonlines"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "links")
    assert code == 0 and receipt is not None, out
    assert link.is_symlink() and "a.test/" not in target.read_text().replace("ba.test/", "")
    assert receipt["counts"][f"feed:{link}"] == 4
    manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
    assert "is not a regular file" in manual[f"feed:{fifo}"]
    verified = scrapy_command(["purge", "--domain", "a.test", "--reason", "check", "--dry-run", "--verify", *env["settings"]])
    assert verified.returncode == 1 and "pipe.jl" in verified.stdout  # the FIFO cannot be checked: not "verified"


def test_unreadable_queue_records_are_not_called_done(env: dict[str, Any]) -> None:
    """A JOBDIR queue written with another serializer (marshal) cannot be read: manual action, and --verify fails."""
    import marshal

    from queuelib.queue import FifoDiskQueue

    jobdir = env["tmp"] / "job"
    queue = FifoDiskQueue(str(jobdir / "requests.queue" / "slot" / "0"))
    for url in ("http://a.test/1", "http://b.test/1"):
        queue.push(marshal.dumps({"url": url, "method": "GET"}))
    queue.close()
    env["store"].record_output("c1", "here", "jobdir", str(jobdir), {})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "marshal")
    assert code == 0 and receipt is not None, out
    manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
    assert "2 unreadable request(s) kept" in manual[f"jobdir:{jobdir}"]
    verified = scrapy_command(["purge", "--domain", "a.test", "--reason", "check", "--dry-run", "--verify", *env["settings"]])
    assert verified.returncode == 1, verified.stdout


def test_dry_run_leaves_the_job_directory_untouched(env: dict[str, Any]) -> None:
    """--dry-run reads queues from a copy elsewhere: not a byte, not an mtime changes in the JOBDIR."""
    jobdir = fifo_jobdir(env["tmp"], URLS)
    env["store"].record_output("c1", "here", "jobdir", str(jobdir), {})

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in [jobdir, *jobdir.rglob("*")]}

    before = snapshot()
    done = scrapy_command(["purge", "--domain", "a.test", "--reason", "check", "--dry-run", *env["settings"]])
    assert done.returncode == 0, done.stderr
    assert snapshot() == before
    assert queued(jobdir) == URLS


def test_a_symlinked_cache_entry_is_removed_and_counted_once(env: dict[str, Any]) -> None:
    """A cache entry that is a symlink is unlinked (rmtree would refuse it silently) and counted only once removed."""
    import pickle

    tmp: Path = env["tmp"]
    cache = tmp / "cache" / "site"
    real = tmp / "elsewhere" / "ab" / "abcd"
    real.mkdir(parents=True)
    (real / "pickled_meta").write_bytes(pickle.dumps({"url": "http://a.test/secret"}))
    (real / "response_body").write_bytes(b"BODY")
    (cache / "ab").mkdir(parents=True)
    (cache / "ab" / "abcd").symlink_to(real, target_is_directory=True)
    env["store"].record_output("c1", "here", "httpcache", str(cache), {"backend": "filesystem"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "cache link")
    assert code == 0 and receipt is not None and receipt["counts"][f"httpcache:{cache}"] == 1, out
    assert list((cache / "ab").iterdir()) == []
    verified = scrapy_command(["purge", "--domain", "a.test", "--reason", "check", "--dry-run", "--verify", *env["settings"]])
    assert verified.returncode == 0, verified.stdout


def test_a_failed_rewrite_leaves_the_feed_and_no_temporary_file(env: dict[str, Any]) -> None:
    """A kept record that cannot be written back (a lone surrogate) fails the location, not silently: no .purge file left."""
    tmp: Path = env["tmp"]
    feed = tmp / "odd.jl"
    original = '{"url": "http://a.test/1"}\n{"url": "http://b.test/1", "t": "\\ud800"}\n'
    feed.write_text(original, encoding="utf-8")
    env["store"].record_output("c1", "here", "feed", str(feed), {"format": "jsonlines"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "surrogate")
    assert code == 0 and receipt is not None, out
    assert [p.name for p in tmp.iterdir() if p.name.endswith(".purge")] == []
    if f"feed:{feed}" in {m["location"] for m in receipt["manual_action_required"]}:
        assert feed.read_text(encoding="utf-8") == original
    else:  # written back faithfully
        assert feed.read_text(encoding="utf-8") == '{"url": "http://b.test/1", "t": "\\ud800"}\n'


def test_unicode_and_overlong_hosts_are_filed_so_purges_find_them(env: dict[str, Any]) -> None:
    """Hosts are filed in IDNA form (a purge of bücher.de finds http://www.Bücher.de/...) and clipped to the column."""
    from crawler.compliance.domains import filed_under

    store: Store = env["store"]
    rows = []
    for url in ("http://bücher.de/a", "http://www.Bücher.de/b", f"http://{'a' * 300}.test/x"):
        host, domain = filed_under(url)
        rows.append(item_row({"url": url, "host": host, "domain": domain, "crawl_id": "c1", "title": url}))
    refusal = {"crawl_id": "c1", "at": rows[0]["fetched_at"], "url": rows[2]["url"], "host": rows[2]["host"],
               "domain": rows[2]["domain"], "gate": "schedule", "reason": "test", "rule": "", "source": "", "detail": ""}  # fmt: skip
    assert store.write(rows, [refusal]) == 3  # PostgreSQL too: nothing overflows VARCHAR(255)
    code, out, receipt = purge(env, "--domain", "bücher.de", "--reason", "idn")
    assert code == 0 and receipt is not None and receipt["counts"]["store"] == 2, out
    assert store.count_items("xn--bcher-kva.de") == 0


def test_kept_feed_records_are_written_back_exactly_as_they_were(env: dict[str, Any]) -> None:
    """A purge removes records; the ones it keeps are not re-serialised (1e400, repeated keys, short CSV rows stay)."""
    tmp: Path = env["tmp"]
    store: Store = env["store"]
    jl = tmp / "odd.jl"
    kept_lines = ['{"url": "http://b.test/1", "n": 1e400}', '{"url":"http://b.test/2","k":1,"k":2}', '{"url": "http://b.test/3", "s": "\\ud800\\u2028"}']
    jl.write_text(f'{kept_lines[0]}\n{{"url": "http://a.test/1"}}\n{kept_lines[1]}\n{kept_lines[2]}\n', encoding="utf-8")
    indented = tmp / "odd.json"
    indented.write_text('[\n  {\n    "url": "http://a.test/2"\n  },\n  {\n    "url": "http://b.test/4",\n    "x": 1.50\n  }\n]\n')
    sheet = tmp / "odd.csv"
    sheet.write_text('url,title,note\r\nhttp://a.test/3,a,x\r\nhttp://b.test/5,short\r\nhttp://b.test/6,"two\nlines",y\r\n', encoding="utf-8")
    for path, fmt in ((jl, "jsonlines"), (indented, "json"), (sheet, "csv")):
        store.record_output("c1", "here", "feed", str(path), {"format": fmt, **({"indent": 2} if fmt == "json" else {})})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "fidelity")
    assert code == 0 and receipt is not None, out
    assert jl.read_text(encoding="utf-8") == "".join(line + "\n" for line in kept_lines)
    assert json.loads(indented.read_text()) == [{"url": "http://b.test/4", "x": 1.5}] and '"x": 1.50' in indented.read_text()
    assert sheet.read_bytes().decode() == 'url,title,note\r\nhttp://b.test/5,short\r\nhttp://b.test/6,"two\nlines",y\r\n'
    assert all(receipt["counts"][f"feed:{p}"] == 1 for p in (jl, indented, sheet))


def test_a_cache_purge_that_fails_half_way_counts_what_it_removed(env: dict[str, Any]) -> None:
    """Entry 1 removed, entry 2 cannot be moved: the receipt says 1 removed and asks a person about the rest."""
    import pickle

    cache = env["tmp"] / "cache" / "site"
    # Both go to the trash folder as "aa-x-y": the second cannot be moved onto the first (not empty).
    for parent, name in (("aa-x", "y"), ("aa", "x-y")):
        entry = cache / parent / name
        entry.mkdir(parents=True)
        (entry / "pickled_meta").write_bytes(pickle.dumps({"url": f"http://a.test/{parent}/{name}"}))
    env["store"].record_output("c1", "here", "httpcache", str(cache), {"backend": "filesystem"})
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "half way")
    assert code == 0 and receipt is not None, out
    manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
    assert manual[f"httpcache:{cache}"].startswith("1 in-scope entries removed, then ")
    assert receipt["total_deleted"] == 4 + 1 and not (cache / "aa" / "x-y").exists() and (cache / "aa-x" / "y").exists()


def filesystem_cache(tmp: Path, in_scope: int, out_of_scope: int) -> Path:
    """A Scrapy filesystem HTTP cache (one spider's folder) with entries in and out of a.test."""
    import pickle

    cache = tmp / "fscache" / "site"
    for n in range(in_scope + out_of_scope):
        entry = cache / f"{n % 256:02x}" / f"{n:040x}"
        entry.mkdir(parents=True)
        url = f"http://a.test/c/{n}" if n < in_scope else f"http://b.test/c/{n}"
        (entry / "pickled_meta").write_bytes(pickle.dumps({"url": url}))
    return cache


def dbm_cache(tmp: Path, in_scope: int, out_of_scope: int) -> str:
    import dbm.dumb
    import pickle

    (tmp / "dbmcache").mkdir()
    path = str(tmp / "dbmcache" / "site.db")
    with dbm.dumb.open(path, "c") as db:
        for n in range(in_scope + out_of_scope):
            url = f"http://a.test/d/{n}" if n < in_scope else f"http://b.test/d/{n}"
            db[f"k{n}_data"] = pickle.dumps({"url": url, "body": b"x"})
            db[f"k{n}_time"] = "1"
    return path


@pytest.mark.parametrize("point", ["started", "store-chunk", "cache-trashed", "cache-counted", "dbm-counted", "dbm-swapping",
                                   "file-prepared", "file-counted", "file-replaced", "queue-counted", "queue-swapped",
                                   "before-receipt"])  # fmt: skip
def test_receipts_count_exactly_what_was_deleted_after_a_sigkill_anywhere(env: dict[str, Any], point: str) -> None:
    """SIGKILL during each location's deletion, then the same command: each count is exactly before minus after."""
    from crawler.compliance import purge as purge_module

    store: Store = env["store"]
    tmp: Path = env["tmp"]
    fill(store, [f"http://a.test/bulk/{i}" for i in range(300)])
    cache = filesystem_cache(tmp, purge_module.CACHE_BATCH + 37, 5)  # two trash batches
    dbm_path = dbm_cache(tmp, 20, 6)
    feed = write_feeds(tmp)["jsonlines"]
    jobdir = fifo_jobdir(tmp, URLS)
    store.record_output("c1", "here", "httpcache", str(cache), {"backend": "filesystem"})
    store.record_output("c1", "here", "httpcache", dbm_path, {"backend": "dbm", "dbm_module": "dbm.dumb"})
    store.record_output("c1", "here", "feed", str(feed), {"format": "jsonlines"})
    store.record_output("c1", "here", "jobdir", str(jobdir), {})
    before = {"store": store.count_items("a.test"), f"httpcache:{cache}": purge_module.CACHE_BATCH + 37,
              f"httpcache:{dbm_path}": 20, f"feed:{feed}": 4, f"jobdir:{jobdir}": 4}  # fmt: skip
    code, out, _ = purge(env, "--domain", "a.test", "--reason", "crash test", extra_env={"COMPLIANCE_FAULT": point})
    assert code == -9, out
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "crash test")
    assert code == 0 and receipt is not None, out
    code, out, _ = purge(env, "--domain", "a.test", "--reason", "check", "--dry-run")
    assert code == 0, out
    left = {"store": store.count_items("a.test"),
            f"httpcache:{cache}": sum(1 for _ in cache.glob("*/*/pickled_meta") if b"a.test" in _.read_bytes()),
            f"feed:{feed}": feed.read_text().replace("ba.test/", "").count("a.test/"),
            f"jobdir:{jobdir}": sum(1 for u in queued(jobdir) if "//a.test" in u),
            "dbm": b"http://a.test/" in b"".join(p.read_bytes() for p in Path(dbm_path).parent.iterdir())}  # fmt: skip
    assert not any(left.values()), left
    assert receipt["counts"] == before, f"killed at {point}"
    assert receipt["total_deleted"] == sum(before.values())
    assert sorted(p.name for p in cache.parent.iterdir()) == ["site"], "no trash folder left"
    assert not [p for p in feed.parent.iterdir() if ".purge-" in p.name]
    assert [e.kind for e in store.ledger_entries()] == ["purge.started", "purge.completed"]


ENTRY_POINT_LOCATION = '''
import json, os


class UrlFile:
    """A project's own store: one JSON line per record, in the file named by $URL_FILE."""

    name = "url-file"

    def _lines(self):
        with open(os.environ["URL_FILE"], encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def count(self, scope):
        return sum(scope.matches(r["url"]) for r in self._lines())

    def delete(self, scope):
        lines = self._lines()
        kept = [r for r in lines if not scope.matches(r["url"])]
        with open(os.environ["URL_FILE"], "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\\n" for r in kept)
        return len(lines) - len(kept)


class Unreachable(UrlFile):
    name = "bucket"

    def count(self, scope):
        raise ConnectionError("bucket.example unreachable")

    delete = count
'''


def installed_locations(tmp: Path, **points: str) -> dict[str, str]:
    """A distribution whose ``ethical_crawler.purge_locations`` entry points name ``points``, found on PYTHONPATH."""
    site = tmp / "site"
    (site / "projectlocations-1.0.dist-info").mkdir(parents=True)
    (site / "projectlocations.py").write_text(ENTRY_POINT_LOCATION, encoding="utf-8")
    (site / "projectlocations-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: projectlocations\nVersion: 1.0\n")
    (site / "projectlocations-1.0.dist-info" / "entry_points.txt").write_text(
        "[ethical_crawler.purge_locations]\n" + "".join(f"{name} = projectlocations:{target}\n" for name, target in points.items())
    )
    records = tmp / "own-records.jl"
    records.write_text("".join(json.dumps({"url": u}) + "\n" for u in URLS), encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")])), "URL_FILE": str(records)}


def test_a_location_registered_by_entry_point_is_counted_purged_and_verified(env: dict[str, Any]) -> None:
    """An installed package's entry point adds its own store to dry runs, purges, receipts and --verify."""
    extra = installed_locations(env["tmp"], urls="UrlFile")
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "r", "--dry-run", extra_env=extra)
    assert code == 0 and receipt is not None, out
    assert receipt["in_scope"]["custom:url-file"] == {"remaining": 4}
    assert len(Path(extra["URL_FILE"]).read_text().splitlines()) == len(URLS)
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "r", "--verify", extra_env=extra)
    assert code == 0 and receipt is not None, out
    assert receipt["counts"]["custom:url-file"] == 4 and receipt["counts"]["store"] == 4
    left = [json.loads(line)["url"] for line in Path(extra["URL_FILE"]).read_text().splitlines()]
    assert left == ["http://b.test/1", "http://b.test/2", "http://ba.test/1"]
    # The project's own location is re-counted by --verify like the built-in ones: nothing of a.test is left there.
    assert receipt["verify"]["verified"] is True and receipt["verify"]["remaining"]["custom:url-file"] == {"remaining": 0}


def test_a_failing_location_is_reported_for_manual_action_never_called_done(env: dict[str, Any]) -> None:
    """A location whose code raises is named with its error; the purge is not reported complete; --verify fails."""
    extra = installed_locations(env["tmp"], urls="UrlFile", bucket="Unreachable")
    code, out, receipt = purge(env, "--domain", "a.test", "--reason", "r", extra_env=extra)
    assert receipt is not None and "Traceback" not in out, out
    manual = {m["location"]: m["why"] for m in receipt["manual_action_required"]}
    assert manual["custom:bucket"] == "Unreachable.delete() failed: ConnectionError: bucket.example unreachable"
    assert receipt["counts"]["custom:url-file"] == 4  # the others were still purged
    code, out, _ = purge(env, "--domain", "a.test", "--reason", "r", "--dry-run", "--verify", extra_env=extra)
    assert code == 1 and "custom:bucket" in out, out
    # An entry point that cannot be loaded stops the purge before anything is deleted: one line naming it.
    broken = {**extra}
    Path(extra["PYTHONPATH"].split(os.pathsep)[0], "projectlocations-1.0.dist-info", "entry_points.txt").write_text(
        "[ethical_crawler.purge_locations]\nghost = projectlocations:Missing\n")
    code, out, _ = purge(env, "--domain", "b.test", "--reason", "r", extra_env=broken)
    assert code == 1 and "Traceback" not in out
    assert "entry point ethical_crawler.purge_locations:ghost: cannot load purge location" in out, out
    assert urls_left(env["store"]) == ["http://b.test/1", "http://b.test/2", "http://ba.test/1"]


def test_purged_text_is_gone_from_the_sqlite_files_not_only_from_queries(tmp_path: Path) -> None:
    """After a purge, the store's files hold no byte of the purged items: not in free pages, the search index or the WAL."""
    from crawler.dataprotection.tables import ensure_schema

    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = Store(url)
    ensure_schema(store)  # the full-text index a crawl keeps (crawler/dataprotection/tables.py)
    secret, host = "zanzibarlighthousekeeper", "victim-site.test"  # one word: the index keeps it whole
    from crawler.compliance.domains import host_of, registered_domain

    def rows(urls: list[str], extra: str = "") -> list[dict[str, Any]]:
        return [item_row({"url": u, "host": host_of(u), "domain": registered_domain(host_of(u)), "crawl_id": "c1",
                          "title": "t", "text": f"ordinary words {n} {extra}"}) for n, u in enumerate(urls)]  # fmt: skip

    store.write(rows([f"http://{host}/p/{n}" for n in range(5)], secret), [])
    # Full-width text: its NFKC form is kept and indexed too (the erasure search's second index).
    store.write(rows([f"http://{host}/fw/{n}" for n in range(2)], "ｍａｒｍａｌａｄｅｋｅｅｐｅｒ"), [])
    for batch in range(4):  # later writes: the victim's words sit in an older index segment and older pages
        store.write(rows([f"http://other.test/{batch}/{n}" for n in range(50)]), [])
    store.dispose()

    def files_holding(needle: bytes) -> list[str]:
        return [p.name for p in sorted(tmp_path.glob("store.sqlite3*")) if needle in p.read_bytes()]

    # The purge's own records name the domain (its scope); the items' URLs and words must go.
    page = f"{host}/p/".encode()
    assert files_holding(secret.encode()) and files_holding(page), "the test must start with the text on disk"
    assert files_holding(b"marmaladekeeper"), "the NFKC form is on disk before the purge"
    policies = policy_dir_with_pace(tmp_path / "policies")
    done = scrapy_command(["purge", "--domain", host, "--reason", "objection", "-s", f"COMPLIANCE_STORE={url}",
                           "-s", f"COMPLIANCE_POLICY_DIR={policies}"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["counts"]["store"] == 7
    assert "search index rewritten" in receipt["notes"]["store"] and "checkpointed and emptied" in receipt["notes"]["store"]
    assert files_holding(secret.encode()) == [] and files_holding(page) == [], "purged text left in the store's files"
    assert files_holding(b"marmaladekeeper") == [] and files_holding("ｍａｒｍａｌａｄｅ".encode()) == []
    left = Store(url)
    assert left.count_items("other.test") == 200 and left.count_items(host) == 0


def test_a_scrub_a_reader_holds_up_is_reported_and_retried_by_the_next_purge(tmp_path: Path) -> None:
    """A reader with an open snapshot keeps the log from being emptied: the receipt says so, and the next purge finishes it."""
    import sqlite3

    from crawler.compliance.domains import host_of, registered_domain
    from crawler.compliance.store import SCRUB_INCOMPLETE

    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = Store(url)
    store.write([item_row({"url": f"http://{h}/p", "host": host_of(f"http://{h}/p"), "domain": registered_domain(h), "crawl_id": "c1",
                           "title": "t", "text": "quixoticmarmoset"}) for h in ("victim.test", "other.test")], [])  # fmt: skip
    store.dispose()
    policies = policy_dir_with_pace(tmp_path / "policies")
    args = ["-s", f"COMPLIANCE_STORE={url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"]
    reader = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM items").fetchone() == (2,)  # a snapshot from before the purge
        done = scrapy_command(["purge", "--domain", "victim.test", "--reason", "objection", *args])
        assert done.returncode == 0, done.stderr
        note = json.loads(done.stdout)["notes"]["store"]
        assert SCRUB_INCOMPLETE in note and "the next purge of this store retries" in note, note
    finally:
        reader.close()
    # The next purge (of something else, deleting nothing here) finishes the scrub.
    done = scrapy_command(["purge", "--domain", "absent.test", "--reason", "unrelated", *args])
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["counts"]["store"] == 0 and "checkpointed and emptied" in receipt["notes"]["store"], receipt["notes"]
    assert SCRUB_INCOMPLETE not in receipt["notes"]["store"]
    # And the one after that has nothing owed: no scrub, no note.
    done = scrapy_command(["purge", "--domain", "absent.test", "--reason", "unrelated again", *args])
    assert json.loads(done.stdout)["notes"] == {}
    assert Store(url).count_items("other.test") == 1
