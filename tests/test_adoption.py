"""Adoption in anyone's project: items without url, store writes that fail, settings of any type.

The full path a user takes (the wheel in a fresh virtualenv with a
third-party project, commands from a subfolder) is examples/bookshelf, run by
`make test-adoption` in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from crawler.compliance.store import Store
from crawler.testing.assertions import assert_no_disallowed_fetch, assert_stored
from crawler.testing.runner import scrapy_command
from crawler.testing.web import Site, WebRequest, WebResponse, text

from example_spider import ErrbackSpider, StartItemsSpider, UrlLessSpider


def test_items_without_url_are_filed_under_their_page(run_compliance_crawl) -> None:  # type: ignore[no-untyped-def]
    """A spider whose items have no url: every item is stored, under the response that produced it, with provenance."""
    result = run_compliance_crawl(UrlLessSpider, ["http://shop.test/"], {"CONCURRENT_REQUESTS": 4, "FEEDS": {}}).check()
    assert_no_disallowed_fetch(result)
    pages = {f"http://shop.test{e.path}" for e in result.requests if e.host == "shop.test" and e.status == 200 and e.path != "/robots.txt"}
    assert pages and {i["url"] for i in result.items} == pages
    for item in result.items:
        assert item["host"] == "shop.test" and item["domain"] == "shop.test" and "item_url" not in item
        assert "heading" in item and item["provenance"]["status"] == 200 and item["provenance"]["robots"]["reason"].startswith("robots.")
    assert_stored(result, "http://shop.test/about")


def test_an_item_with_no_response_and_no_url_is_refused_not_stored_without_a_site(run_compliance_crawl) -> None:  # type: ignore[no-untyped-def]
    """An item yielded from start() with no url could never be purged by site: refused, `provenance.unknown`."""
    result = run_compliance_crawl(StartItemsSpider, ["http://shop.test/"], {"FEEDS": {}}).check()
    assert "" not in {i["url"] for i in result.items} and all(i["domain"] == "shop.test" for i in result.items)
    assert {i["url"] for i in result.items} >= {"http://shop.test/", "http://shop.test/about"}
    refused = [r for r in result.refusals if r["reason"] == "provenance.unknown"]
    assert len(refused) == 1 and refused[0]["gate"] == "store" and "(from start())" in refused[0]["detail"], result.refusals


def test_items_a_project_replaces_on_the_way_are_still_filed_under_their_page(run_compliance_crawl) -> None:  # type: ignore[no-untyped-def]
    """A pipeline or spider middleware that hands on a new object: the item is stored under its page, not refused."""
    settings = {"FEEDS": {}, "ITEM_PIPELINES": {"example_spider.CopyingPipeline": 300},
                "SPIDER_MIDDLEWARES": {"example_spider.CopyingSpiderMiddleware": 543}}  # fmt: skip
    result = run_compliance_crawl(UrlLessSpider, ["http://shop.test/"], settings).check()
    assert not [r for r in result.refusals if r["reason"] == "provenance.unknown"], result.refusals
    assert result.items and all(i["domain"] == "shop.test" and i["url"].startswith("http://shop.test/") for i in result.items)
    assert "http://shop.test/about" in {i["url"] for i in result.items}


class _Drops(Site):
    """Allows everything in robots.txt, then closes every other connection without an answer."""

    def handle(self, req: WebRequest) -> WebResponse:
        return text("User-agent: *\nAllow: /\n") if req.path == "/robots.txt" else WebResponse(drop=True)


def test_an_errback_item_is_filed_under_the_request_that_failed(run_compliance_crawl, compliance_web) -> None:  # type: ignore[no-untyped-def]
    """An errback's item: under the error response when there is one (404), else under the failed request's URL."""
    compliance_web.add_site("drops.test", _Drops())
    result = run_compliance_crawl(ErrbackSpider, ["http://shop.test/", "http://drops.test/"], {"FEEDS": {}, "RETRY_ENABLED": False}).check()
    items = {i["url"]: i for i in result.items}
    assert set(items) == {"http://shop.test/no-such-page", "http://drops.test/no-such-page"}, result.refusals
    assert items["http://shop.test/no-such-page"]["provenance"]["status"] == 404
    dropped = items["http://drops.test/no-such-page"]
    assert dropped["domain"] == "drops.test" and dropped["provenance"]["status"] is None and dropped["provenance"]["failure"]
    assert not [r for r in result.refusals if r["reason"] == "provenance.unknown"]


def _poisoned_store(path: Path) -> str:
    """A real SQLite store whose items table refuses one page (a trigger): a batch the store will not take."""
    url = f"sqlite:///{path}"
    store = Store(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON items WHEN NEW.url LIKE '%/products/1' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
    store.dispose()
    return url


def test_a_failed_store_write_is_never_silent(run_compliance_crawl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rows the store refuses are saved where purge looks, the rest and every refusal are stored, and the crawl fails."""
    store_url = _poisoned_store(tmp_path / "store.sqlite3")
    data = tmp_path / "data"
    settings = {"COMPLIANCE_STORE": store_url, "COMPLIANCE_DATA_DIR": str(data), "COMPLIANCE_STORE_BATCH_SIZE": 1000}
    result = run_compliance_crawl("site", ["http://shop.test/"], settings)
    assert result.returncode == 1 and "Traceback" not in result.log
    assert "store write failed: 1 item(s) and 0 refusal(s) were not stored" in result.log
    try:
        result.check()
    except AssertionError:
        pass
    else:
        raise AssertionError("check() passed a crawl whose store write failed")
    stored = {i["url"] for i in result.items}
    assert "http://shop.test/about" in stored and "http://shop.test/products/1" not in stored
    assert {r["reason"] for r in result.refusals} >= {"robots.disallow"}  # the batch's refusals are not lost
    (saved,) = (data / "unwritten").glob("*.jsonl")
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(r["kind"], r["url"]) for r in rows] == [("item", "http://shop.test/products/1")]
    store = Store(store_url)
    with store.engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT finish_reason FROM crawls WHERE id = :id"), {"id": result.crawl_id}).scalar()
    assert reason == "store_write_failed"
    common = ["-s", f"COMPLIANCE_STORE={store_url}", "-s", f"COMPLIANCE_DATA_DIR={data}"]
    report = scrapy_command(["compliance", "report", *common])
    assert report.returncode == 1 and "FAILED: crawl" in report.stdout and str(saved) in report.stdout
    # Purge visits the saved rows like any other location.
    purge = scrapy_command(["purge", "--domain", "shop.test", "--reason", "objection", *common])
    receipt = json.loads(purge.stdout)
    assert purge.returncode == 0 and receipt["counts"][f"feed:{saved.resolve()}"] == 1, purge.stdout + purge.stderr
    assert saved.read_text() == ""


def test_settings_of_any_json_type_reach_the_crawl(run_compliance_crawl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Lists, dicts and booleans given to run_compliance_crawl arrive with their types (a feed dict, a bool)."""
    feed = tmp_path / "out.jsonl"
    result = run_compliance_crawl(UrlLessSpider, ["http://shop.test/"], {
        "FEEDS": {str(feed): {"format": "jsonlines"}}, "COOKIES_ENABLED": False, "CONCURRENT_REQUESTS": 2,
    }).check()  # fmt: skip
    lines = [json.loads(line) for line in feed.read_text().splitlines()]
    # The feed gets the items exactly as the spider made them: no field added.
    assert lines and all(set(line) == {"heading", "words"} for line in lines)
    # The store has each of them once per page: the start page is fetched twice (a start request is
    # not recorded by the dupefilter, and "/" links to itself), and stored once.
    assert sorted({(line["heading"], line["words"]) for line in lines}) == sorted({(i["heading"], i["words"]) for i in result.items})
    assert len(result.items) == len({i["url"] for i in result.items}) <= len(lines)


def test_setup_errors_are_one_line_from_crawl_and_runspider(tmp_path: Path) -> None:
    """A spider that enables the add-on in its custom_settings, run without a contact: one line, exit 2, no traceback."""
    spider = tmp_path / "lone.py"
    spider.write_text(
        "import scrapy\n\nclass Lone(scrapy.Spider):\n    name = 'lone'\n"
        "    custom_settings = {'ADDONS': {'crawler.addon.Compliance': 0}}\n    start_urls = ['http://shop.test/']\n"
    )
    settings = {"COMPLIANCE_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}", "COMPLIANCE_DATA_DIR": str(tmp_path / "var")}
    done = scrapy_command(["runspider", str(spider)], settings=settings, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "COMPLIANCE_CONTACT is not set" in errors[0]
    assert not (tmp_path / "s.sqlite3").exists()  # nothing started
    # A bad value of a known setting, from `scrapy crawl` in this project: the same.
    done = scrapy_command(["crawl", "site", "-a", "url=http://shop.test/"],
                          settings={**settings, "COMPLIANCE_CONTACT": "mailto:a@b.test", "COMPLIANCE_ROBOTS_TTL": "soon"})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: crawl refused to start: COMPLIANCE_ROBOTS_TTL: expected a float, got 'soon'" in done.stderr
    for flag in ("COMPLIANCE_SIGNING", "COMPLIANCE_DISTRIBUTED", "COMPLIANCE_GC_FREEZE", "ROBOTSTXT_OBEY", "COMPLIANCE_RETENTION_AUTO"):
        done = scrapy_command(["crawl", "site", "-a", "url=http://shop.test/"],
                              settings={**settings, "COMPLIANCE_CONTACT": "mailto:a@b.test", flag: "maybe"})  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert f"error: crawl refused to start: {flag}: expected a boolean (true/false, 1/0), got 'maybe'" in done.stderr
    # Settings read by the data-protection extension, a purge location that cannot be loaded, a store that is
    # not a database and one that is a folder: refused before the crawl starts, in one line.
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database " * 100)
    (tmp_path / "folder").mkdir()
    for name, value, words in [
        ("COMPLIANCE_RETENTION_INTERVAL", "abc", "COMPLIANCE_RETENTION_INTERVAL: expected a number, got 'abc'"),
        ("COMPLIANCE_EXPORT_WEBHOOKS", '{"a": "ftp://x"}', "COMPLIANCE_EXPORT_WEBHOOKS: 'a': 'ftp://x' is not an http(s) URL"),
        ("COMPLIANCE_PURGE_LOCATIONS", "nowhere.mod.Location", "COMPLIANCE_PURGE_LOCATIONS: cannot load purge location 'nowhere.mod.Location'"),
        ("COMPLIANCE_STORE", f"sqlite:///{tmp_path / 'junk.sqlite3'}", "COMPLIANCE_STORE: cannot open"),
        ("COMPLIANCE_STORE", f"sqlite:///{tmp_path / 'folder'}", "COMPLIANCE_STORE: cannot open"),
    ]:  # fmt: skip
        done = scrapy_command(["crawl", "site", "-a", "url=http://shop.test/"],
                              settings={**settings, "COMPLIANCE_CONTACT": "mailto:a@b.test", name: value})  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, (name, done.stderr[-2000:])
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: crawl refused to start: {words}"), (name, errors)


def test_compliance_init_writes_the_policy_folder_at_the_project_root(tmp_path: Path) -> None:
    """From a subfolder of a new project: policies/ at the scrapy.cfg folder, every file named, nothing overwritten."""
    project = tmp_path / "shop"
    (project / "shop" / "spiders").mkdir(parents=True)
    (project / "scrapy.cfg").write_text("[settings]\ndefault = shop.settings\n")
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "settings.py").write_text("BOT_NAME = 'shop'\nADDONS = {'crawler.addon.Compliance': 0}\n")
    done = scrapy_command(["compliance", "init"], cwd=project / "shop" / "spiders")
    assert done.returncode == 0, done.stderr
    policies = project / "policies"
    written = sorted(p.relative_to(project).as_posix() for p in policies.rglob("*") if p.is_file())
    assert "policies/default.yaml" in written and "policies/schema.json" in written, written
    assert any(w.startswith("policies/platforms/") for w in written) and (policies / "notices").is_dir()
    for name in written:
        assert name in done.stdout, (name, done.stdout)
    (policies / "default.yaml").write_text((policies / "default.yaml").read_text() + "# edited by the project\n")
    again = scrapy_command(["compliance", "init"], cwd=project)
    assert again.returncode == 0 and "# edited by the project" in (policies / "default.yaml").read_text()
    done = scrapy_command(["policy", "validate"], cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_policy_file_does_not_stop_a_notice_or_its_purge(tmp_path: Path) -> None:
    """Stopping is always safe: with policies/default.yaml broken, `notice add` files the notice (warning, shipped
    policies meanwhile) and `purge` runs; a crawl, which would collect under the broken policy, still refuses to start."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text("rate: [broken\n")
    settings = {"COMPLIANCE_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}", "COMPLIANCE_POLICY_DIR": str(policies),
                "COMPLIANCE_DATA_DIR": str(tmp_path / "var"), "COMPLIANCE_PROGRESS": "0"}  # fmt: skip
    done = scrapy_command(["notice", "add", "--domain", "news.test", "--sender", "News Inc.", "--received", "2026-12-01"],
                          settings=settings)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "default.yaml:2:1: YAML syntax error" in done.stderr and "the shipped platform policies are used" in done.stderr
    listed = scrapy_command(["notice", "list"], settings=settings)
    assert "news.test" in listed.stdout, listed.stdout
    purged = scrapy_command(["purge", "--domain", "news.test", "--reason", "notice"], settings=settings)
    assert purged.returncode == 0 and "the shipped platform policies are used" in purged.stderr, purged.stderr[-2000:]
    crawl = scrapy_command(["crawl", "site", "-a", "url=http://shop.test/"], settings={**settings, "COMPLIANCE_CONTACT": "mailto:a@b.test"})
    assert crawl.returncode == 2 and "default.yaml:2:1" in crawl.stderr
