"""Images are never requested, never downloaded, never stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from crawler.compliance.images import headers_decision, image_signature, magic_decision, scrub_fields, url_decision
from crawler.testing.runner import run_site_crawl
from crawler.testing.sites import GIF, HUGE_IMAGE_BYTES, INLINE_PNG, JPEG, PNG, SVG, image_sites
from crawler.testing.web import TestWeb


@pytest.mark.parametrize(
    "url",
    ["http://a.test/x.jpg", "http://a.test/X.JPEG?size=2", "http://a.test/p/face.webp#f", "http://a.test/a.avif",
     "http://a.test/a.heic", "http://a.test/a.Tiff", "http://a.test/favicon.ico", "http://a.test/a.svg",
     "http://a.test/a%2Epng", "http://a.test/a.gif;v=2", "http://a.test/a.bmp", "http://a.test/face.jpg.",
     "http://a.test/media/X.jpg:large", "http://a.test/f.png!thumb", "http://a.test/f.jpg@2x", "http://a.test/face.ppm",
     "http://a.test/scan.dcm", "http://a.test/icon.icns", "http://a.test/hdr.exr"],
)  # fmt: skip
def test_image_urls_refused(url: str) -> None:
    """A URL path ending in an image extension is refused, whatever the case, query or fragment."""
    decision = url_decision(url)
    assert (decision.allowed, decision.reason) == (False, "image.url")


@pytest.mark.parametrize("url", ["http://a.test/", "http://a.test/page.html", "http://a.test/jpg", "http://a.test/a?f=x.jpg",
                                 "http://a.test/user@2x", "http://a.test/v1.2:3", "http://a.test/file.tar.gz"])  # fmt: skip
def test_other_urls_pass(url: str) -> None:
    """Pages, a path merely named 'jpg', and image names in the query string are not image URLs."""
    assert url_decision(url).allowed


@pytest.mark.parametrize(
    ("ctype", "disposition", "refused"),
    [("image/png", None, True), ("IMAGE/SVG+XML; charset=x", None, True), ("text/html", None, False),
     ("application/octet-stream", 'attachment; filename="face.JPG"', True),
     ("application/octet-stream", "attachment; filename*=UTF-8''f%C3%A4ce.webp", True),
     ("application/pdf", 'inline; filename="report.pdf"', False), (None, None, False)],
)  # fmt: skip
def test_header_gate(ctype: str | None, disposition: str | None, refused: bool) -> None:
    """image/* types and image file names in Content-Disposition are refused on headers."""
    decision = headers_decision(ctype, disposition)
    assert decision.allowed is not refused
    if refused:
        assert decision.reason == "image.content-type"


@pytest.mark.parametrize(
    ("head", "kind"),
    [(PNG, "PNG"), (JPEG, "JPEG"), (GIF, "GIF"), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"), (b"II*\x00\x08\x00", "TIFF"),
     (b"MM\x00*\x00\x00", "TIFF"), (b"\x00\x00\x01\x00\x01\x00\x10\x10", "ICO"),
     (b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00", "BMP"),
     (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "AVIF/HEIF"), (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "AVIF/HEIF"),
     (SVG, "SVG"), (b"  <svg xmlns='x'/>", "SVG"), (b"<!DOCTYPE svg PUBLIC '-'>\n<svg>", "SVG"),
     # Illustrator's DOCTYPE with an internal subset, a stylesheet PI, UTF-16
     (b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x" [\n<!ENTITY ns "y">\n]>\n<svg xmlns="x">', "SVG"),
     (b'<?xml version="1.0"?><?xml-stylesheet href="a.css"?><svg>', "SVG"), ('<svg xmlns="x"/>'.encode("utf-16"), "SVG"),
     (b"P6\n640 480\n255\n\x00", "Netpbm"), (b"P5\n# by x\n10 10\n255\n", "Netpbm"), (b"\x8aMNG\r\n\x1a\n", "MNG"),
     (b"icns\x00\x00", "ICNS"), (b"II\xbc\x01", "JPEG XR"), (b"\x76\x2f\x31\x01\x02", "OpenEXR"), (b"DDS |", "DDS"),
     (b"BPG\xfb", "BPG"), (b"#?RADIANCE\n", "Radiance HDR"), (b"\x00" * 128 + b"DICM", "DICOM"),
     (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01", "Canon CR3")],
)  # fmt: skip
def test_signatures(head: bytes, kind: str) -> None:
    """Each image format is recognised from its first bytes."""
    assert image_signature(head) == kind
    assert magic_decision(head).reason == "image.magic"


@pytest.mark.parametrize(
    "head",
    [b"<!doctype html><html><body><svg>inline icon</svg>", b"BMW makes cars", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00",
     b"%PDF-1.4", b"", b"RIFF\x00\x00\x00\x00WAVE", b"P1 is a plan", b"hello <svg> world", b"<p>text</p><svg></svg>",
     b"<!-- -- - -->" * 70 + b"x<svg>"],  # this one made the old SVG pattern backtrack for minutes
)  # fmt: skip
def test_non_images_pass(head: bytes) -> None:
    """HTML with inline SVG, text starting 'BM', MP4, PDF, WAV and nothing are not images."""
    assert image_signature(head) is None


def test_scrub_fields() -> None:
    """Image fields, data:image URIs and image URLs are removed from strings, lists and nested maps."""
    fields = {
        "url": "http://a.test/page", "images": ["x"], "file_urls": ["http://a.test/f.zip"],
        "text": f"before {INLINE_PNG} middle https://cdn.test/face.JPG?s=1, and /img/a.png. after http://a.test/next",
        "nested": {"thumbnail": "t", "gallery": ["//cdn.test/a.webp", "caption"]},
    }  # fmt: skip
    cleaned, removed = scrub_fields(fields)
    assert "images" not in cleaned and "file_urls" not in cleaned
    assert cleaned["text"] == "before [image removed] middle [image removed], and [image removed]. after http://a.test/next"
    assert cleaned["nested"] == {"gallery": ["[image removed]", "caption"]}
    assert cleaned["url"] == "http://a.test/page"
    assert removed == 7


@pytest.mark.parametrize(
    "text",
    ["see https://cdn.test/face.p%6Eg here", "see /a%2Fb%2Eavif here", "x data:IMAGE/png;base64,AAAA y",
     "HTTPS://CDN.TEST/FACE.JPEG?x=1", "//cdn.test/a.gif;v=2"],
)  # fmt: skip
def test_scrub_finds_encoded_and_odd_cases(text: str) -> None:
    """The fast pre-check never lets through what the full scan would remove."""
    cleaned, removed = scrub_fields({"text": text})
    assert removed == 1, cleaned


def test_scrub_leaves_plain_text_alone() -> None:
    """Text with dots, pages and look-alike suffixes is returned unchanged."""
    text = "Version 1.png2 of file.jpg.html, see http://a.test/page.html and 3.14. Done."
    assert scrub_fields({"text": text}) == ({"text": text}, 0)


def test_media_pipelines_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A crawl with ImagesPipeline or FilesPipeline enabled refuses to start, saying why and how to fix it."""
    from scrapy.utils.test import get_crawler

    from crawler.config import Config, ConfigError

    for pipeline in ("scrapy.pipelines.images.ImagesPipeline", "scrapy.pipelines.files.FilesPipeline"):
        crawler = get_crawler(settings_dict={"COMPLIANCE_CONTACT": "x@y.example", "ITEM_PIPELINES": {pipeline: 1}})
        with pytest.raises(ConfigError, match="never collects images") as info:
            Config.from_settings(crawler.settings)
        assert f"remove {pipeline!r} from ITEM_PIPELINES" in str(info.value)


@dataclass
class ProductItem:
    url: str
    name: str
    description: str
    image_urls: list[str] = field(default_factory=list)


def test_scrub_pipeline_on_dataclass_items(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The scrub pipeline cleans any item type in place and counts what it removed."""
    from scrapy.utils.test import get_crawler

    from crawler.pipelines.images import ImageScrubPipeline

    crawler = get_crawler(settings_dict={"COMPLIANCE_CONTACT": "x@y.example", "COMPLIANCE_STORE": f"sqlite:///{tmp_path}/s.db"})
    item = ProductItem("http://shop.test/p", "Lamp", f"A lamp {INLINE_PNG}", ["http://shop.test/lamp.jpg"])
    out = ImageScrubPipeline.from_crawler(crawler).process_item(item)
    assert out is item and item.description == "A lamp [image removed]"
    from itemadapter import ItemAdapter

    assert "image_urls" not in ItemAdapter(item).asdict()
    assert crawler.stats.get_value("compliance/images/scrubbed") == 2


@pytest.fixture
def image_web() -> Iterator[TestWeb]:
    with TestWeb(image_sites()) as server:
        yield server
        assert not server.unknown_hosts()


def test_images_never_requested_downloaded_or_stored(image_web: TestWeb, store_url: str, guard_env: dict, policy_dir) -> None:  # type: ignore[no-untyped-def]
    """End to end: no image URL is requested, disguised images are cut off early, nothing visual is stored."""
    run = run_site_crawl(
        image_web, ["http://images.test/", "http://images.test/photo.jpg"], store_url, env=guard_env,
        # Above the 20 MiB /huge: the image gate, not the size limit (8 MiB,
        # content.too-large), must be what cuts it off.
        settings={"COMPLIANCE_POLICY_DIR": str(policy_dir), "DOWNLOAD_MAXSIZE": 64 * 1024 * 1024},
    ).check()
    log = image_web.requests(host="images.test")
    requested = [e.path for e in log]
    # Gate 1: no URL with an image extension, start URL and redirect target included.
    assert not [p for p in requested if url_decision("http://images.test" + p).reason == "image.url"], requested
    assert "/to-image" in requested and "/redirected/face.jpeg" not in requested
    # Gates 2 and 3: the 20 MiB disguised image was cut off at its first bytes.
    (huge,) = [e for e in log if e.path == "/huge"]
    assert huge.bytes_sent < 1024 * 1024 < HUGE_IMAGE_BYTES
    assert "'compliance/images/max_bytes_read': " in run.stderr
    max_read = int(run.stderr.split("'compliance/images/max_bytes_read': ")[1].split(",")[0])
    assert 0 < max_read <= 64 * 1024
    # Gate 4 and the store: the text pages are stored, scrubbed; no disguised image is.
    items = {i["url"]: i for i in run.store.iter_items()}
    assert set(items) == {"http://images.test/", "http://images.test/about"}
    home = items["http://images.test/"]
    assert "data:image" not in home["text"] and "inline-face.jpg" not in home["text"]
    assert "Text about the gallery" in home["text"]
    reasons = {}
    for refusal in run.store.refusals():
        reasons.setdefault(refusal["reason"], set()).add(refusal["url"].removeprefix("http://images.test"))
    assert reasons["image.url"] >= {"/photo.jpg", "/PHOTO.PNG?size=large", "/vector.svg", "/redirected/face.jpeg"}
    assert reasons["image.content-type"] == {"/raw", "/vector", "/attachment"}
    assert reasons["image.magic"] == {"/photo-as-page.html", "/download", "/animation", "/vector-as-text", "/huge"}
    assert reasons["image.item"] == {"/"}
    gates = {r["url"].removeprefix("http://images.test"): r["gate"] for r in run.store.refusals() if r["reason"] == "image.url"}
    # Start URLs, links and redirect targets all stop before the queue.
    assert set(gates.values()) == {"schedule"}, gates


def test_disguises_behind_redirects_compression_and_doubled_headers(image_web: TestWeb, store_url: str, guard_env: dict, policy_dir) -> None:  # type: ignore[no-untyped-def]
    """Each disguise is refused and cut off long before its 1 MiB arrived; a body in an encoding nothing decodes is never stored."""
    from crawler.testing.sites import DISGUISE_BYTES

    run = run_site_crawl(image_web, ["http://disguise.test/"], store_url, env=guard_env,
                         settings={"COMPLIANCE_POLICY_DIR": str(policy_dir)}).check()  # fmt: skip
    assert {i["url"] for i in run.store.iter_items()} == {"http://disguise.test/"}
    reasons = {r["url"].removeprefix("http://disguise.test"): (r["reason"], r["gate"]) for r in run.store.refusals()}
    assert reasons == {
        "/octet-a": ("image.magic", "body"), "/octet-b": ("image.magic", "body"),
        "/gzip-png-as-html": ("image.magic", "body"),
        "/two-content-types": ("image.content-type", "headers"), "/space-then-png": ("image.magic", "body"),
        "/unknown-encoding": ("content.unverifiable", "body"),  # br that does not decode: refused at its first chunk
    }  # fmt: skip
    sent = {e.path: e.bytes_sent for e in image_web.requests(host="disguise.test")}
    for path in ("/octet-a", "/octet-b", "/gzip-png-as-html", "/two-content-types", "/space-then-png"):
        assert sent[path] < DISGUISE_BYTES // 2, (path, sent[path])


def test_scrub_reaches_bytes_sets_keys_and_image_words_in_names() -> None:
    """Image bytes, data in bytes, sets, dict keys and fields named with an image word are all removed."""
    fields = {
        "url": "http://a.test/p", "blob": PNG, "notes": b"see data:image/png;base64,AAAA", "plain": b"just bytes",
        "tags": {"https://cdn.test/face.jpg", "kept"}, "links": {"https://cdn.test/face.jpg": "caption", "http://a.test/x": "ok"},
        "imageUrl": "https://cdn.test/people/ann", "og:image": "x", "profile_photo": "y", "Headshot": "z",
        "silicon": "a word that only contains 'icon'",
    }  # fmt: skip
    cleaned, removed = scrub_fields(fields)
    assert sorted(cleaned.pop("tags")) == ["[image removed]", "kept"]  # a set becomes a list, its image URL removed
    assert cleaned == {"url": "http://a.test/p", "plain": b"just bytes", "links": {"http://a.test/x": "ok"},
                       "silicon": "a word that only contains 'icon'"}  # fmt: skip
    assert removed == 8


@pytest.mark.parametrize("own_pipeline", [False, True])
def test_the_final_scrub_runs_only_when_a_pipeline_ran_after_the_first(tmp_path, own_pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    """With the add-on's pipelines alone the item cannot have changed since the first scrub; with a project's own
    pipeline between them (any order from 101 up), the final scrub removes what that pipeline added."""
    from scrapy.utils.test import get_crawler

    from crawler.addon import ITEM_PIPELINES
    from crawler.pipelines.images import FinalImageScrubPipeline

    pipelines = {**ITEM_PIPELINES, **({"myproject.pipelines.Thumbnails": 300} if own_pipeline else {})}
    crawler = get_crawler(settings_dict={"COMPLIANCE_CONTACT": "x@y.example", "COMPLIANCE_STORE": f"sqlite:///{tmp_path}/s.db",
                                         "ITEM_PIPELINES": pipelines})  # fmt: skip
    final = FinalImageScrubPipeline.from_crawler(crawler)
    assert final.redundant is not own_pipeline
    item = {"url": "http://shop.test/p", "title": "Lamp", "thumb": INLINE_PNG}
    final.process_item(item)
    assert ("thumb" in item) is not own_pipeline


def test_pipelines_that_add_images_after_the_scrub_are_scrubbed_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The add-on runs the scrub again as the last pipeline before the store: late image fields never get stored."""
    from scrapy.utils.test import get_crawler

    from crawler.addon import ITEM_PIPELINES

    order = sorted(ITEM_PIPELINES, key=ITEM_PIPELINES.get)  # type: ignore[arg-type]
    assert order[-2:] == ["crawler.pipelines.images.FinalImageScrubPipeline", "crawler.pipelines.store.StorePipeline"]
    assert ITEM_PIPELINES["crawler.pipelines.images.FinalImageScrubPipeline"] > 10**6  # after any project pipeline
    from crawler.pipelines.images import FinalImageScrubPipeline

    crawler = get_crawler(settings_dict={"COMPLIANCE_CONTACT": "x@y.example", "COMPLIANCE_STORE": f"sqlite:///{tmp_path}/s.db"})
    item = {"url": "http://shop.test/p", "title": "Lamp", "image_urls": ["http://shop.test/lamp.jpg"], "thumb": INLINE_PNG}
    FinalImageScrubPipeline.from_crawler(crawler).process_item(item)
    assert item == {"url": "http://shop.test/p", "title": "Lamp"}
