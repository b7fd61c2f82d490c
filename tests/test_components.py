"""Component tests: Scrapy adapters built with scrapy.utils.test.get_crawler."""

from __future__ import annotations

from pathlib import Path

import pytest
from scrapy.utils.test import get_crawler

from crawler.addon import Compliance
from crawler.config import Config, ConfigError
from crawler.items import PageItem
from crawler.pipelines.store import StorePipeline
from crawler.runtime import ComplianceRuntime
from crawler.spiders.site import SiteSpider, StartUrlError, parse_start_urls
from crawler.testing.sites import TEST_CONTACT


def _crawler(tmp_path: Path, **settings: object):  # type: ignore[no-untyped-def]
    base = {"COMPLIANCE_CONTACT": TEST_CONTACT, "COMPLIANCE_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}"}
    base.update(settings)
    crawler = get_crawler(SiteSpider, settings_dict=base)
    crawler.spider = SiteSpider(url="http://news.test/")
    return crawler


def _item(i: int) -> PageItem:
    from crawler.compliance.store import utcnow

    return PageItem(f"http://news.test/{i}", "news.test", "news.test", "t", "x", utcnow(), "")


def _scraped(crawler, pipeline: StorePipeline, item: object, url: str | None = None) -> object:  # type: ignore[no-untyped-def]
    """Pass ``item`` through the pipeline and send ``item_scraped`` as Scrapy's scraper does (with its response)."""
    from scrapy import signals
    from scrapy.http import HtmlResponse, Request

    response = HtmlResponse(url, body=b"<html></html>", request=Request(url)) if url else None
    out = pipeline.process_item(item)
    crawler.signals.send_catch_log(signals.item_scraped, item=out, response=response, spider=crawler.spider)
    return out


def test_pipeline_writes_in_batches_and_flushes_at_close(tmp_path: Path) -> None:
    """Items are written a batch at a time; only the unflushed tail is pending before close."""
    crawler = _crawler(tmp_path, COMPLIANCE_STORE_BATCH_SIZE=3, COMPLIANCE_STORE_FLUSH_INTERVAL=3600)
    pipeline = StorePipeline.from_crawler(crawler)
    store = ComplianceRuntime.of(crawler).store
    for i in range(7):
        _scraped(crawler, pipeline, _item(i), f"http://news.test/{i}")
    assert store.count_items() == 6  # two batches of three; one item pending
    pipeline.close_spider()
    assert store.count_items() == 7
    crawl_ids = {item["crawl_id"] for item in store.iter_items()}
    assert crawl_ids == {ComplianceRuntime.of(crawler).config.crawl_id}


def test_pipeline_accepts_any_item_type(tmp_path: Path) -> None:
    """Dicts, scrapy.Item, dataclasses and attrs items, with or without url, are filed under the page they came from, unchanged."""
    import dataclasses

    import attrs
    import scrapy

    class Quote(scrapy.Item):
        text = scrapy.Field()
        author = scrapy.Field()

    @dataclasses.dataclass
    class Book:
        name: str
        url: str

    @attrs.define
    class Review:
        stars: int

    crawler = _crawler(tmp_path, COMPLIANCE_STORE_BATCH_SIZE=1)
    pipeline = StorePipeline.from_crawler(crawler)
    given = [
        ({"text": "To be", "tags": ["a"]}, "https://quotes.news.test/page/1"),
        (Quote(text="T", author="A"), "https://quotes.news.test/page/2"),
        (Book("B", "https://elsewhere.test/book"), "https://books.news.test/list"),
        (Review(5), "https://reviews.news.test/r"),
        ({"url": "https://a.news.test/x", "title": "T", "extra": [1, 2]}, None),  # no response (a start() item)
    ]
    for item, url in given:
        before = repr(item)
        assert _scraped(crawler, pipeline, item, url) is item and repr(item) == before  # the item is never changed
    records = {r["url"]: r for r in ComplianceRuntime.of(crawler).store.iter_items()}
    assert sorted(records) == sorted([
        "https://quotes.news.test/page/1", "https://quotes.news.test/page/2", "https://books.news.test/list",
        "https://reviews.news.test/r", "https://a.news.test/x",
    ])  # fmt: skip
    quote = records["https://quotes.news.test/page/1"]
    assert (quote["host"], quote["domain"], quote["text"], quote["tags"]) == ("quotes.news.test", "news.test", "To be", ["a"])
    assert quote["provenance"]["status"] == 200
    assert records["https://quotes.news.test/page/2"]["author"] == "A"
    book = records["https://books.news.test/list"]
    assert (book["domain"], book["name"], book["item_url"]) == ("news.test", "B", "https://elsewhere.test/book")
    assert records["https://reviews.news.test/r"]["stars"] == 5
    plain = records["https://a.news.test/x"]
    assert (plain["host"], plain["domain"], plain["extra"]) == ("a.news.test", "news.test", [1, 2])


def test_config_reads_settings_once_and_validates(tmp_path: Path) -> None:
    """Config is frozen, builds the User-Agent, and names the bad setting."""
    config = Config.from_settings(_crawler(tmp_path).settings)
    assert config.user_agent.startswith("EthicalCrawler/") and config.user_agent.endswith(f"(+{TEST_CONTACT})")
    with pytest.raises(AttributeError):
        config.contact = "x"  # type: ignore[misc]
    for name, value, message in [
        ("COMPLIANCE_ROBOTS_TTL", 90000, "COMPLIANCE_ROBOTS_TTL: must be at most"),
        ("COMPLIANCE_ROBOTS_CACHE_SIZE", "many", "COMPLIANCE_ROBOTS_CACHE_SIZE: expected a int"),
        ("COMPLIANCE_BOT_NAME", "My Bot", "COMPLIANCE_BOT_NAME"),
        ("COMPLIANCE_CRAWL_ID", "a b", "COMPLIANCE_CRAWL_ID"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Config.from_settings(_crawler(tmp_path, **{name: value}).settings)


def test_addon_enables_the_stack(tmp_path: Path) -> None:
    """The add-on installs our middlewares and keeps Scrapy's robots middleware off, even if a project lists it."""
    from scrapy.settings import Settings

    settings = Settings()
    settings.set("ROBOTSTXT_OBEY", True, priority="project")  # Scrapy's project template sets it
    settings["DOWNLOADER_MIDDLEWARES"].set("scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware", 100, priority="project")
    Compliance().update_settings(settings)
    mws = settings.getdict("DOWNLOADER_MIDDLEWARES")
    assert mws["crawler.middlewares.robots.RobotsTxtMiddleware"] == 50
    assert mws["scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"] is None
    # True means "obey robots.txt", which the stack does: accepted, left as the project set it.
    assert settings.getbool("ROBOTSTXT_OBEY") is True


def test_spider_start_urls() -> None:
    """-a url takes a comma list of absolute http(s) URLs and scopes by registered domain."""
    spider = SiteSpider(url="http://a.news.test/x, https://shop.test/")
    assert spider.start_urls == ["http://a.news.test/x", "https://shop.test/"]
    assert spider.allowed_domains == ["news.test", "shop.test"]
    for bad in ("", "shop.test", "ftp://shop.test/", "http:///x"):
        with pytest.raises(StartUrlError):
            parse_start_urls(bad)


def test_visible_text_and_links() -> None:
    """Item text omits scripts and styles and is bounded; only <a>/<area> links are followed."""
    from scrapy.http import HtmlResponse

    from crawler.spiders.site import page_links, visible_text

    body = (
        b"<html><head><title> T </title><style>.x{}</style></head><body><script>secret()</script>"
        b"<p>Hello   <b>world</b></p><img src='/i.png'><link href='/s.css'><a href='/a#frag'>a</a>"
        b"<area href='https://x.test/b'><a href='javascript:void(0)'>j</a><a href='mailto:a@b'>m</a></body></html>"
    )
    response = HtmlResponse("http://h.test/dir/", body=body)
    assert visible_text(response, 1000) == "Hello world a j m"
    assert visible_text(response, 5) == "Hello"
    assert list(page_links(response)) == ["http://h.test/a", "https://x.test/b"]


def test_item_fields_matches_itemadapter_asdict() -> None:
    """item_fields gives the same dict as ItemAdapter.asdict, nested items included."""
    from dataclasses import dataclass

    from itemadapter import ItemAdapter

    from crawler.compliance.store import utcnow
    from crawler.itemfields import item_fields

    @dataclass
    class Inner:
        name: str
        tags: list

    item = {"url": "http://a.test/", "when": utcnow(), "inner": Inner("n", ["a", {"k": Inner("m", [])}]), "n": 3}
    assert item_fields(item) == ItemAdapter(item).asdict()
    page = PageItem("http://a.test/", "a.test", "a.test", "t", "x", utcnow(), "c", {"robots": {"reason": "r"}})
    assert item_fields(page) == ItemAdapter(page).asdict()


def test_gates_refuse_platform_requests(tmp_path: Path) -> None:
    """The scheduling gate and the terms middleware refuse a platform URL with the same Decision, counted once each."""
    from scrapy import Request
    from scrapy.exceptions import IgnoreRequest

    from crawler.extensions.scheduling import SchedulingGate
    from crawler.middlewares.terms import TermsMiddleware
    from crawler.testing.runner import policy_dir_with_pace

    crawler = _crawler(tmp_path, COMPLIANCE_POLICY_DIR=str(policy_dir_with_pace(tmp_path / "pol")))
    request = Request("https://www.linkedin.com/in/someone")
    with pytest.raises(IgnoreRequest, match=r"refused \(terms.consent-required\).*at schedule"):
        SchedulingGate.from_crawler(crawler).request_scheduled(request)
    with pytest.raises(IgnoreRequest, match=r"refused \(terms.consent-required\).*at download.*linkedin.yaml"):
        TermsMiddleware.from_crawler(crawler).process_request(request)
    with pytest.raises(IgnoreRequest, match=r"image.url"):
        SchedulingGate.from_crawler(crawler).request_scheduled(Request("https://shop.test/face.jpg"))
    assert crawler.stats.get_value("compliance/refused/terms.consent-required") == 2
    assert crawler.stats.get_value("compliance/refused/image.url") == 1


def test_runtime_refuses_to_start_on_invalid_policies(tmp_path: Path) -> None:
    """Building the runtime with a broken policy directory fails with every error listed."""
    from crawler.testing.runner import policy_dir_with_pace

    root = policy_dir_with_pace(tmp_path / "pol")
    (root / "platforms" / "a.yaml").write_text("id: A\n")
    with pytest.raises(ConfigError, match=r"invalid policy files.*\n.*a.yaml:1: id: String should match pattern"):
        ComplianceRuntime(_crawler(tmp_path, COMPLIANCE_POLICY_DIR=str(root)))


def test_pauses_for_several_reasons_end_only_when_all_are_released(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An unreadable registry and invalid notice files pause the same engine: one resuming must not end the other's pause."""
    from scrapy.utils.test import get_crawler

    from crawler.runtime import ComplianceRuntime

    crawler = get_crawler(settings_dict={"COMPLIANCE_CONTACT": "x@y.example", "COMPLIANCE_STORE": f"sqlite:///{tmp_path}/s.db"})
    crawler.engine = crawler._create_engine()
    runtime = ComplianceRuntime.of(crawler)
    runtime.hold("notice files invalid")
    runtime.hold("notice registry unreadable")
    assert crawler.engine.paused
    runtime.release("notice registry unreadable")
    assert crawler.engine.paused, "the invalid notice files still hold the crawl"
    runtime.release("notice files invalid")
    assert not crawler.engine.paused
    runtime.hold("a")
    runtime.hold("b")
    runtime.release()
    assert not crawler.engine.paused
