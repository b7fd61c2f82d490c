"""The scripted hosts of the test web: each one a robots.txt edge case.

Every host name ends in ``.test`` (RFC 6761: never resolves), and the test
web answers for all of them on 127.0.0.1. Later features add their hosts here,
so the project's tests, the demo and users' tests share one hostile web.
"""

from __future__ import annotations

import sys
import functools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from crawler.testing.web import Site, StaticSite, WebRequest, WebResponse, redirect

#: The contact used by tests and the demo. Its local part "ops" is also the
#: name of a robots.txt group on shop.test: a crawler that hands Protego its
#: whole User-Agent header (which contains this contact) would wrongly match it.
TEST_CONTACT = "mailto:ops@crawler-tests.example"


def robots(text: str, status: int = 200) -> WebResponse:
    return WebResponse(status=status, headers=[("Content-Type", "text/plain; charset=utf-8")], body=text)


def page(title: str, links: Iterable[str] = (), text: str = "") -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!doctype html><html><head><title>{title}</title>"
        "<style>body{font-family:sans-serif}</style><script>var hidden = 'script text';</script></head>"
        f"<body><h1>{title}</h1><p>{text or 'Some visible text about ' + title + '.'}</p>"
        f"<ul>{anchors}</ul></body></html>"
    )


def _pages(host_paths: dict[str, list[str]]) -> dict[str, str]:
    return {path: page(f"{path}", links) for path, links in host_paths.items()}


def robots_sites() -> dict[str, Site]:
    """Hosts that exercise RFC 9309: groups, fetch outcomes, limits, delays."""
    shop_pages = _pages(
        {
            "/": [
                "/about", "/products/1", "/private/secret", "/private/ok", "/members/list",
                "/report.pdf", "http://blog.shop.test/", "http://other.test/", "#top", "mailto:x@y.test",
            ],
            "/about": ["/", "/products/2"],
            "/products/1": ["/products/2"],
            "/products/2": ["/products/1", "/about"],
            "/private/ok": ["/"],
            "/private/secret": [],
            "/members/list": [],
        }
    )  # fmt: skip
    shop_pages_any: dict[str, object] = dict(shop_pages)
    shop_pages_any["/robots.txt"] = robots(
        "# shop.test robots.txt\n"
        "User-agent: *\n"
        "Disallow: /private/\n"
        "Allow: /private/ok\n"
        "Disallow: /members/\n"
        "\n"
        "User-agent: OtherBot\n"
        "Disallow: /\n"
        "\n"
        "User-agent: ops\n"
        "Allow: /\n"
    )
    shop_pages_any["/report.pdf"] = WebResponse(headers=[("Content-Type", "application/pdf")], body=b"%PDF-1.4 not html")

    def simple(extra: dict[str, object], paths: Iterable[str] = ("/a", "/b")) -> StaticSite:
        pages: dict[str, object] = {"/": page("home", paths)}
        pages.update({p: page(p, ["/"]) for p in paths})
        pages.update(extra)
        return StaticSite(pages)  # type: ignore[arg-type]

    big_robots = (
        "User-agent: *\nDisallow: /early/\n"
        + "# padding to push the next rule past the 500 KiB parse limit\n" * 9000
        + "Disallow: /late/\n"
    )
    assert len(big_robots.encode()) > 500 * 1024

    return {
        "shop.test": StaticSite(shop_pages_any),  # type: ignore[arg-type]
        "blog.shop.test": simple({}, ("/post",)),
        "other.test": simple({}),
        # 5xx: RFC 9309 2.3.1.4 says disallow everything.
        "down.test": simple({"/robots.txt": robots("server error", status=503)}),
        # A robots.txt that never answers (the crawl sets a short DOWNLOAD_TIMEOUT).
        "hang.test": simple({"/robots.txt": WebResponse(hang=True)}),
        # A connection closed without any response.
        "drop.test": simple({"/robots.txt": WebResponse(drop=True)}),
        # 4xx: RFC 9309 2.3.1.3 says anything may be fetched.
        "open.test": simple({}),
        # 429 is a 4xx, but means "slow down": treated as unreachable.
        "busy.test": simple({"/robots.txt": robots("slow down", status=429)}),
        # Redirected to another host: the rules found there apply to moved.test.
        "moved.test": simple({"/robots.txt": redirect("http://rules.test/moved-robots.txt")}, ("/secret/x", "/public")),
        "rules.test": StaticSite({"/moved-robots.txt": robots("User-agent: *\nDisallow: /secret/\n")}),
        # Exactly five hops is still followed (RFC 9309 2.3.1.2)...
        "five.test": simple(
            {
                "/robots.txt": redirect("/r1"),
                **{f"/r{i}": redirect(f"/r{i + 1}") for i in range(1, 5)},
                "/r5": robots("User-agent: *\nDisallow: /no/\n"),
            },
            ("/no/x", "/yes"),
        ),
        # ...six hops is not: unreachable, disallow all.
        "loop.test": simple(
            {
                "/robots.txt": redirect("/r1"),
                **{f"/r{i}": redirect(f"/r{i + 1}") for i in range(1, 6)},
                "/r6": robots("User-agent: *\nAllow: /\n"),
            }
        ),
        # Crawl-delay paces the host.
        "slow.test": simple({"/robots.txt": robots("User-agent: *\nCrawl-delay: 0.6\n")}, ("/p1", "/p2", "/p3", "/p4")),
        # A Crawl-delay beyond COMPLIANCE_MAX_CRAWL_DELAY: skipped, not hammered.
        "glacial.test": simple({"/robots.txt": robots("User-agent: *\nCrawl-delay: 3600\n")}),
        # Request-rate 1/1s paces like Crawl-delay: 1.
        "rate.test": simple({"/robots.txt": robots("User-agent: *\nRequest-rate: 2/1s\n")}, ("/p1", "/p2", "/p3")),
        # Rules past the first 500 KiB are not parsed (RFC 9309 2.5).
        "big.test": simple({"/robots.txt": robots(big_robots)}, ("/early/x", "/late/x")),
        # http and https have separate robots.txt files (RFC 9309 2.3).
        "http://dual.test": simple(
            {"/robots.txt": robots("User-agent: *\nDisallow: /http-secret/\n")}, ("/http-secret/x", "/https-secret/x")
        ),
        "https://dual.test": simple(
            {"/robots.txt": robots("User-agent: *\nDisallow: /https-secret/\n")}, ("/http-secret/x", "/https-secret/x")
        ),
        # Registered-domain scoping: a.news.test belongs to news.test.
        "news.test": simple({}, ("/story", "http://a.news.test/", "http://elsewhere.test/")),
        "a.news.test": simple({}, ("/local",)),
        "elsewhere.test": simple({}),
    }


def ttl_site(pages: int = 8) -> StaticSite:
    """A paced chain of pages (each links only to the next), so requests reach
    the downloader one after another and the crawl outlasts a short TTL."""
    content: dict[str, object] = {"/robots.txt": robots("User-agent: *\nCrawl-delay: 0.4\n")}
    content["/"] = page("home", ["/p1"])
    content.update({f"/p{i}": page(f"/p{i}", [f"/p{i + 1}"] if i < pages else []) for i in range(1, pages + 1)})
    return StaticSite(content)  # type: ignore[arg-type]


def linked_site(pages: int, fanout: int = 10) -> StaticSite:
    """``pages`` HTML pages, each linking to the next ``fanout`` (for benchmarks)."""

    def body(i: int) -> str:
        links = [f"/page/{(i + k) % pages}" for k in range(1, fanout + 1)]
        return page(f"Page {i}", links, text=("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20))

    content: dict[str, object] = {f"/page/{i}": body(i) for i in range(pages)}
    content["/"] = body(0)
    content["/robots.txt"] = robots("User-agent: *\nDisallow: /nowhere/\n")
    return StaticSite(content)  # type: ignore[arg-type]


def bench_sites() -> dict[str, Site]:
    return {"bench.test": linked_site(5000)}




# -- images in disguise ---------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x11" * 64
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
SVG = b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- a face -->\n<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><circle r="1"/></svg>\n'
HUGE_IMAGE_BYTES = 20 * 1024 * 1024
INLINE_PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def _huge_jpeg() -> Iterable[bytes]:
    yield JPEG
    block = b"\x42" * 65536
    remaining = HUGE_IMAGE_BYTES - len(JPEG)
    while remaining > 0:
        yield block[:remaining]
        remaining -= len(block)


def image_sites() -> dict[str, Site]:
    """``images.test``: images under every disguise, beside plain text pages."""
    disguised = [
        "/photo.jpg", "/PHOTO.PNG?size=large", "/photo-as-page.html", "/raw", "/download", "/animation",
        "/vector.svg", "/vector", "/vector-as-text", "/to-image", "/attachment", "/huge", "/about",
    ]  # fmt: skip
    index = (
        "<!doctype html><html><head><title>Gallery</title>"
        '<meta property="og:image" content="/og.jpg"><meta name="twitter:image" content="/tw.jpg">'
        '<link rel="icon" href="/favicon.ico"><link rel="apple-touch-icon" href="/touch.png">'
        "<style>body{background:url('/bg.webp')}</style></head><body><h1>Gallery</h1>"
        '<img src="/img/face.jpg" srcset="/img/face-2x.jpg 2x, /img/face-3x.avif 3x" alt="a face">'
        '<picture><source srcset="/img/face.heic" type="image/heic"><img src="/img/face.png"></picture>'
        f'<p>Text about the gallery. An inline copy: <img src="{INLINE_PNG}"> and a link in text: '
        f"https://images.test/img/inline-face.jpg. Data in text: {INLINE_PNG} end.</p><ul>"
        + "".join(f'<li><a href="{p}">{p}</a></li>' for p in disguised)
        + "</ul></body></html>"
    )

    def octet(body: bytes, **extra: object) -> WebResponse:
        return WebResponse(headers=[("Content-Type", "application/octet-stream")], body=body, **extra)  # type: ignore[arg-type]

    pages: dict[str, object] = {
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/": index,
        "/about": page("About the gallery", ["/"], text="Plain words, no pictures."),
        "/photo.jpg": WebResponse(headers=[("Content-Type", "image/jpeg")], body=JPEG),
        "/PHOTO.PNG": WebResponse(headers=[("Content-Type", "image/png")], body=PNG),
        "/photo-as-page.html": WebResponse(headers=[("Content-Type", "text/html")], body=JPEG),
        "/raw": WebResponse(headers=[("Content-Type", "image/png")], body=PNG),
        "/download": octet(PNG),
        "/animation": WebResponse(headers=[("Content-Type", "text/plain")], body=GIF),
        "/vector.svg": WebResponse(headers=[("Content-Type", "image/svg+xml")], body=SVG),
        "/vector": WebResponse(headers=[("Content-Type", "image/svg+xml")], body=SVG),
        "/vector-as-text": WebResponse(headers=[("Content-Type", "text/html")], body=SVG),
        "/to-image": redirect("/redirected/face.jpeg"),
        "/redirected/face.jpeg": WebResponse(headers=[("Content-Type", "image/jpeg")], body=JPEG),
        "/attachment": WebResponse(
            headers=[("Content-Type", "application/octet-stream"), ("Content-Disposition", 'attachment; filename="face.png"')],
            body=PNG,
        ),
        # 20 MiB of JPEG without an image extension or type, sent in slow pieces.
        "/huge": octet(b"", body_factory=_huge_jpeg, content_length=HUGE_IMAGE_BYTES, chunk_size=65536, chunk_delay=0.01),
    }
    return {"images.test": StaticSite(pages), "disguise.test": _disguise_site()}  # type: ignore[arg-type]


#: 1 MiB of image for the disguise host: big enough that an early abort shows in the access log.
DISGUISE_BYTES = 1024 * 1024


def _disguise_site() -> StaticSite:
    """``disguise.test``: images behind redirects, compression, doubled headers and leading white space."""
    import gzip

    big_png = PNG + b"\x00" * (DISGUISE_BYTES - len(PNG))

    # The first 16 KiB go out, then the rest is held until the client hangs up:
    # how much was sent shows whether the crawler stopped reading, not how fast
    # this machine is (a paced body let a busy client read more before its abort).
    def image(body: bytes, ctype: str = "application/octet-stream", *extra: tuple[str, str]) -> WebResponse:
        return WebResponse(headers=[("Content-Type", ctype), *extra], body=body, hold_after=16384)

    cases = {
        # A redirect hands its meta to the new request: the sniff must start afresh.
        "/redirect-long-body": WebResponse(status=301, headers=[("Location", "/octet-a"), ("Content-Type", "text/html")],
                                           body="<p>" + "moved " * 400 + "</p>"),
        "/redirect-short-body": redirect("/octet-b"),
        "/octet-a": image(big_png), "/octet-b": image(big_png),
        # Compressed on the wire: the first bytes are gzip's, the image is inside.
        "/gzip-png-as-html": image(gzip.compress(big_png), "text/html", ("Content-Encoding", "gzip")),
        # An encoding nothing here decodes: it cannot be checked, so it is refused.
        "/unknown-encoding": image(b"\x1b\x02\x80" * 1000, "text/html", ("Content-Encoding", "br")),
        # Two Content-Type lines, the image first.
        "/two-content-types": WebResponse(headers=[("Content-Type", "image/png"), ("Content-Type", "text/html")],
                                          body=big_png, hold_after=16384),
        # White space before the signature.
        "/space-then-png": image(b"  \r\n" + big_png, "text/html"),
    }
    index = page("disguises", list(cases))
    return StaticSite({"/robots.txt": robots("User-agent: *\nAllow: /\n"), "/": index, **cases})  # type: ignore[arg-type]




# -- platforms under terms --------------------------------------------------------


def chain_site(pages: int, delay: float, extra_links: Iterable[str] = ()) -> StaticSite:
    """A chain of pages (each links to the next) paced by Crawl-delay."""
    content: dict[str, object] = {"/robots.txt": robots(f"User-agent: *\nCrawl-delay: {delay}\n")}
    content["/"] = page("home", ["/p1", *extra_links])
    for i in range(1, pages + 1):
        content[f"/p{i}"] = page(f"/p{i}", ([f"/p{i + 1}"] if i < pages else []) + list(extra_links))
    return StaticSite(content)  # type: ignore[arg-type]


def platform_sites() -> dict[str, Site]:
    """Stand-ins for platforms under their shipped policies, and hosts for consent tests.

    The test web answers for www.facebook.com and friends locally (through the
    proxy), so a test can prove from the access log that they saw nothing.
    """
    sites: dict[str, Site] = {}
    for host in ("www.facebook.com", "m.facebook.com", "www.instagram.com", "twitter.com", "x.com",
                 "www.youtube.com", "www.linkedin.com", "venmo.com", "www.venmo.com"):  # fmt: skip
        sites[host] = StaticSite({"/": page(f"{host} home", ["/profile/1"]), "/profile/1": page("a profile"),
                                  "/robots.txt": robots("User-agent: *\nAllow: /\n")})  # fmt: skip
    sites["partner.test"] = StaticSite(
        {"/": page("partner", ["/public/a", "/public/b", "/members/x"]), "/public/a": page("a", ["/public/b"]),
         "/public/b": page("b"), "/members/x": page("members")}  # type: ignore[dict-item]
    )  # fmt: skip
    sites["expired.test"] = StaticSite({"/": page("expired", ["/a"]), "/a": page("a")})  # type: ignore[dict-item]
    sites["hop.test"] = StaticSite({"/": page("hop", ["/go"]), "/go": redirect("http://www.facebook.com/")})  # type: ignore[dict-item]
    # Long enough (100 pages at 0.4 s) that a policy edit always lands mid-chain, however loaded the machine.
    sites["edited.test"] = chain_site(100, 0.4, ["http://locked.test/"])
    sites["locked.test"] = chain_site(3, 0.1)
    return sites


def demo_sites() -> dict[str, Site]:
    """The demo web: robots.txt cases, images in disguise, a platform under terms."""
    keep = {"shop.test", "blog.shop.test", "down.test", "moved.test", "rules.test", "slow.test"}
    sites = {k: v for k, v in robots_sites().items() if k in keep}
    sites.update(image_sites())
    sites.update({k: v for k, v in platform_sites().items() if k in {"www.facebook.com", "hop.test"}})
    sites.update(optout_sites())
    return sites


# -- opt-out signals ---------------------------------------------------------------


def optout_sites() -> dict[str, Site]:
    """``optout.test``: one page per opt-out signal (and look-alikes that must not count)."""

    def signal_page(name: str, headers: Iterable[tuple[str, str]] = (), meta: str = "", links: Iterable[str] = ()) -> WebResponse:
        anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
        body = f"<!doctype html><html><head><title>{name}</title>{meta}</head><body><p>Page {name}.</p>{anchors}</body></html>"
        return WebResponse(headers=[("Content-Type", "text/html; charset=utf-8"), *headers], body=body)

    pages: dict[str, object] = {
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/noindex": signal_page("noindex", meta='<meta name="robots" content="noindex">', links=["/from-noindex"]),
        "/xrt-noindex": signal_page("xrt-noindex", [("X-Robots-Tag", "noindex")]),
        "/other-bot": signal_page("other-bot", [("X-Robots-Tag", "otherbot: noindex, nofollow")], links=["/from-other-bot"]),
        "/our-bot": signal_page("our-bot", [("X-Robots-Tag", "unavailable_after: 2030-01-01"), ("X-Robots-Tag", "ETHICALCRAWLER: NoIndex")]),
        "/nofollow": signal_page("nofollow", meta='<meta name="robots" content="nofollow">', links=["/from-nofollow"]),
        "/none": signal_page("none", [("X-Robots-Tag", "none")], links=["/from-none"]),
        "/noarchive": signal_page("noarchive", meta='<meta name="robots" content="noarchive">'),
        "/noai": signal_page("noai", meta='<meta name="EthicalCrawler" content="noai, noimageai">'),
        # Directives with values (max-*:) must not hide the ones after them.
        "/snippet-meta": signal_page("snippet-meta", meta='<meta name="robots" content="max-image-preview:large, noindex, nofollow">',
                                     links=["/from-snippet"]),
        "/snippet-header": signal_page("snippet-header", [("X-Robots-Tag", "max-snippet: 50, noindex")]),
        # Robots metas a quick byte search could miss: a quoted ">", an entity, UTF-16.
        "/meta-quoted-gt": signal_page("meta-quoted-gt", meta='<meta content="a>b, noindex" name="robots">'),
        "/meta-entity": signal_page("meta-entity", meta='<meta name="&#114;obots" content="noindex">'),
        "/meta-utf16": WebResponse(headers=[("Content-Type", "text/html; charset=utf-16")], body=(
            '<!doctype html><html><head><title>utf16</title><meta name="robots" content="noindex"></head>'
            "<body><p>Page utf16.</p></body></html>").encode("utf-16")),
        "/cu-train-n": signal_page("cu-train-n", [("Content-Usage", "train-ai=n")]),
        "/cu-unknown": signal_page("cu-unknown", [("Content-Usage", "train-ai=maybe, search=y")]),
        "/cu-broken": signal_page("cu-broken", [("Content-Usage", 'train-ai="n')]),
        # Two field lines are one dictionary (RFC 9651): the last train-ai wins, here n.
        "/cu-two-lines": signal_page("cu-two-lines", [("Content-Usage", "train-ai=y"), ("Content-Usage", "search=y, train-ai=n")]),
        # The vocabulary's own example: parameters are dropped, the last value (y) applies.
        "/cu-last-wins": signal_page("cu-last-wins", [("Content-Usage", "train-ai;allow=n, train-ai=y")]),
        # Labels outside the vocabulary are ignored.
        "/cu-other-labels": signal_page("cu-other-labels", [("Content-Usage", "ai-use=n, all=n")]),
        "/cs": signal_page("cs", [("Content-Signal", "search=yes, ai-train=no")]),
        "/tdm-header": signal_page("tdm-header", [("tdm-reservation", "1"), ("tdm-policy", "https://optout.test/policy")]),
        "/tdm-meta-override": signal_page("tdm-meta-override", [("tdm-reservation", "1")], meta='<meta name="tdm-reservation" content="0">'),
        "/tdm-bad-meta": signal_page("tdm-bad-meta", [("tdm-reservation", "1")], meta='<meta name="tdm-reservation" content="2">'),
    }
    for target in ("/from-noindex", "/from-other-bot", "/from-nofollow", "/from-none", "/from-snippet", "/plain"):
        pages[target] = signal_page(target.strip("/"))
    pages["/"] = signal_page("home", links=[p for p in pages if p not in ("/robots.txt", "/") and not p.startswith("/from-")] + ["/plain"])
    aipref = StaticSite({
        "/robots.txt": robots(
            # draft-ietf-aipref-attach-05's example, with two rules of ours
            # after it: identical paths (HTAB, then SP) combine, and n wins.
            "User-Agent: *\nAllow: /\nDisallow: /never/\nContent-Usage: train-ai=n\n"
            "Content-Usage: /ai-ok/ train-ai=y\n"
            "Content-Usage: /ai-ok/split/\ttrain-ai=n # combine\nContent-Usage: /ai-ok/split/ train-ai=y\n\n"
            "User-Agent: ExampleBot\nAllow: /\nContent-Usage: train-ai=y\n"
        ),
        "/": page("aipref home", ["/article", "/ai-ok/page", "/ai-ok/split/page", "/never/page", "/moved"]),
        # A redirect from a train-ai=n path to a train-ai=y one: the new URL's rule applies.
        "/moved": redirect("/ai-ok/moved"), "/ai-ok/moved": page("moved"),
        "/article": page("article"), "/ai-ok/page": page("ai ok"), "/ai-ok/split/page": page("split"),
        "/never/page": page("never"),
    })  # type: ignore[arg-type]  # fmt: skip
    signal = StaticSite({
        "/robots.txt": robots("User-agent: *\nContent-Signal: search=yes, ai-train=no\nAllow: /\n"),
        "/": page("signal home", ["/article"]), "/article": page("article"),
    })  # type: ignore[arg-type]  # fmt: skip
    tdm = StaticSite({
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/.well-known/tdmrep.json": WebResponse(headers=[("Content-Type", "application/json")], body=(
            '[{"location": "/free/*", "tdm-reservation": 0},'
            ' {"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://tdm.test/policy.json"}]')),
        "/": page("tdm home", ["/free/page", "/article", "/override"]), "/free/page": page("free"),
        "/article": page("article"),
        "/override": WebResponse(headers=[("Content-Type", "text/html"), ("tdm-reservation", "0")], body=page("override")),
    })  # type: ignore[arg-type]  # fmt: skip
    tdmbad = StaticSite({
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/.well-known/tdmrep.json": WebResponse(headers=[("Content-Type", "application/json")], body='{"oops": true}'),
        "/": page("tdmbad home", ["/article"]), "/article": page("article"),
    })  # type: ignore[arg-type]  # fmt: skip
    # The well-known file failing (5xx, or the connection dropped): the layer is
    # unset, logged, and the header layer still counts.
    tdm_failing = {
        host: StaticSite({
            "/robots.txt": robots("User-agent: *\nAllow: /\n"),
            "/.well-known/tdmrep.json": failure,
            "/": page(f"{host} home", ["/article", "/reserved"]), "/article": page("article"),
            "/reserved": WebResponse(headers=[("Content-Type", "text/html"), ("tdm-reservation", "1")], body=page("reserved")),
        })  # fmt: skip
        for host, failure in (("tdmdown.test", WebResponse(status=503, body="busy")), ("tdmdrop.test", WebResponse(drop=True)))
    }
    # The well-known file behind a redirect (read), and a redirect from a
    # reserved path to one no entry covers (the old entry must not follow).
    tdmredir = StaticSite({
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/.well-known/tdmrep.json": redirect("/tdm/policy-file.json"),
        "/tdm/policy-file.json": WebResponse(headers=[("Content-Type", "application/json")],
                                             body='[{"location": "/reserved/*", "tdm-reservation": 1}]'),
        "/": page("tdmredir home", ["/reserved/a", "/reserved/go"]), "/reserved/a": page("reserved"),
        "/reserved/go": redirect("/free/b"), "/free/b": page("free"),
    })  # type: ignore[arg-type]  # fmt: skip
    # A hostile well-known file (nested 200,000 deep): invalid, unset, and the host is crawled.
    tdmdeep = StaticSite({
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/.well-known/tdmrep.json": WebResponse(headers=[("Content-Type", "application/json")], body="[" * 200_000),
        "/": page("tdmdeep home", ["/article"]), "/article": page("article"),
    })  # type: ignore[arg-type]  # fmt: skip
    return {"optout.test": StaticSite(pages), "aipref.test": aipref, "signal.test": signal,
            "tdm.test": tdm, "tdmbad.test": tdmbad, "tdmredir.test": tdmredir, "tdmdeep.test": tdmdeep, **tdm_failing}  # type: ignore[arg-type]  # fmt: skip


# -- notices -----------------------------------------------------------------------


def notice_sites(pages: int = 400, delay: float = 0.05) -> dict[str, Site]:
    """A large slow host that receives a notice mid-crawl, and a bystander that must keep its items.

    ``bigsocial.test`` (and ``people.bigsocial.test``) answer every page after
    ``delay`` seconds and link widely, so dozens of requests wait in the
    crawler's queues and download slot when the notice arrives.
    """

    def slow(title: str, links: list[str]) -> WebResponse:
        return WebResponse(headers=[("Content-Type", "text/html; charset=utf-8")], body=page(title, links), delay=delay)

    social: dict[str, object] = {"/robots.txt": robots("User-agent: *\nAllow: /\n")}
    social["/"] = slow("bigsocial", [f"/u/{i}" for i in range(1, 30)] + ["http://people.bigsocial.test/"])
    for i in range(1, pages + 1):
        social[f"/u/{i}"] = slow(f"user {i}", [f"/u/{(i * 7 + k) % pages + 1}" for k in range(1, 8)])
    people: dict[str, object] = {"/robots.txt": robots("User-agent: *\nAllow: /\n"), "/": slow("people", ["/p/1", "/p/2"]),
                                 "/p/1": slow("p1", []), "/p/2": slow("p2", [])}  # fmt: skip
    bystander: dict[str, object] = {"/robots.txt": robots("User-agent: *\nAllow: /\n")}
    bystander["/"] = page("bystander", [f"/b/{i}" for i in range(1, 11)])
    for i in range(1, 11):
        bystander[f"/b/{i}"] = page(f"b{i}")
    # A host paced by Crawl-delay with many links: requests pile up in the
    # crawler's download slot, where only the transfer gate can stop them.
    # 400 pages at 0.5 s each outlast any `notice add` on a loaded machine,
    # so a test never depends on the notice arriving before the crawl ends.
    paced: dict[str, object] = {"/robots.txt": robots("User-agent: *\nCrawl-delay: 0.5\n")}
    paced["/"] = page("paced", [f"/q/{i}" for i in range(1, 401)])
    for i in range(1, 401):
        paced[f"/q/{i}"] = page(f"q{i}")
    return {
        "paced.test": StaticSite(paced),  # type: ignore[arg-type]
        "bigsocial.test": StaticSite(social),  # type: ignore[arg-type]
        "people.bigsocial.test": StaticSite(people),  # type: ignore[arg-type]
        "bystander.test": StaticSite(bystander),  # type: ignore[arg-type]
    }


# -- clusters ------------------------------------------------------------------------


def cluster_sites(pages: int = 60, paced_pages: int = 12, delay: float = 0.3) -> dict[str, Site]:
    """For distributed crawls: a wide fast host and a host that publishes a Crawl-delay."""

    def wide(host_pages: int, robots_text: str) -> StaticSite:
        content: dict[str, object] = {"/robots.txt": robots(robots_text)}
        content["/"] = page("home", [f"/n/{i}" for i in range(1, 8)])
        for i in range(1, host_pages + 1):
            content[f"/n/{i}"] = WebResponse(
                headers=[("Content-Type", "text/html; charset=utf-8")],
                body=page(f"n{i}", [f"/n/{(i * 3 + k) % host_pages + 1}" for k in range(1, 5)]),
                delay=0.02,
            )
        return StaticSite(content)  # type: ignore[arg-type]

    return {
        "fleet.test": wide(pages, "User-agent: *\nAllow: /\n"),
        "paced.fleet.test": wide(paced_pages, f"User-agent: *\nCrawl-delay: {delay}\n"),
    }


# --------------------------------------------------------------------------
# The real image corpus (../shared/corpora/pillow-test-images), every disguise
# --------------------------------------------------------------------------

#: Where the corpus lies: ``../shared/corpora/`` beside the repository (CI puts a copy of shared/ there),
#: for an editable install; the corpus test passes its own path, from the repository root.
CORPUS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "pillow-test-images"
#: The body bytes a corpus response sends before it holds the rest until the client hangs up.
CORPUS_HOLD_BYTES = 16 * 1024
#: zstd decodes a block (up to 128 KiB) only once all of it arrived, so the gate reads up to
#: its first 64 KiB (crawler.compliance.content.HEAD_BYTES) before it can tell: hold after those.
CORPUS_HOLD_BYTES_ZSTD = 64 * 1024
#: The disguises, each on its own host of corpus.test (one registered domain, one crawl).
CORPUS_DISGUISES = ("html", "notype", "octet", "gzip", "deflate", "raw-deflate", "br", "zstd")
#: How many corpus files one base64 page carries.
CORPUS_B64_PER_PAGE = 40


@dataclass(frozen=True)
class CorpusFile:
    index: int
    path: str  # relative to CORPUS_DIR
    size: int
    described: str  # what file(1) says (MANIFEST.tsv)
    root: Path = CORPUS_DIR

    @property
    def text(self) -> bool:
        """file(1) calls it plain text (palettes, notes, a font): not an image, may be collected."""
        return "ASCII text" in self.described

    def read(self) -> bytes:
        return (self.root / self.path).read_bytes()


def corpus_files(root: Path = CORPUS_DIR) -> list[CorpusFile]:
    """The corpus's files, from its MANIFEST.tsv; [] when the corpus is not there."""
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    rows = [line.split("\t") for line in manifest.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    return [CorpusFile(i, row[0], int(row[1]), row[3] if len(row) > 3 else "", root) for i, row in enumerate(rows)]


def corpus_url(host: str, f: CorpusFile) -> str:
    """The URL of one file under one disguise (``own``: its own name)."""
    if host == "own":
        return f"http://own.corpus.test/files/{quote(f.path)}"
    suffix = "" if host in ("notype", "octet") else ".html"
    return f"http://{host}.corpus.test/doc/{f.index}{suffix}"


def _encode(body: bytes, disguise: str) -> bytes:
    import zlib

    if disguise == "gzip":
        import gzip

        return gzip.compress(body, mtime=0)
    if disguise == "deflate":
        return zlib.compress(body)
    if disguise == "raw-deflate":
        packer = zlib.compressobj(wbits=-15)
        return packer.compress(body) + packer.flush()
    if disguise == "br":
        import brotli

        return bytes(brotli.compress(body, quality=4))  # the default (11) takes ~0.1 s a file
    if disguise == "zstd":
        if sys.version_info >= (3, 14):
            from compression import zstd  # pragma: no cover
        else:
            from backports import zstd
        return bytes(zstd.compress(body))
    return body


class CorpusSite(Site):
    """One host of corpus.test: the corpus under one disguise, read from disk per request.

    ``own``: each file at its own name with its own type; ``html``: ``/doc/N.html`` as
    text/html; ``notype`` and ``octet``: no Content-Type, application/octet-stream;
    ``gzip``, ``deflate`` (zlib), ``raw-deflate``, ``br``, ``zstd``: that Content-Encoding
    on text/html. ``corpus.test`` itself: the index, a page of links to every file,
    pages carrying the files in base64 (with and without ``data:``), ordinary text pages.
    Every image body sends :data:`CORPUS_HOLD_BYTES`, then holds the rest until
    the client hangs up: the access log shows where the client stopped reading.
    """

    def __init__(self, disguise: str, files: list[CorpusFile], text_pages: dict[str, WebResponse] | None = None) -> None:
        self.disguise = disguise
        self.files = files
        self.by_path = {f.path: f for f in files}
        self.text_pages = text_pages or {}

    def _file_response(self, f: CorpusFile) -> WebResponse:
        import mimetypes

        body = f.read()
        headers: list[tuple[str, str]] = []
        if self.disguise == "own":
            headers.append(("Content-Type", mimetypes.guess_type(f.path)[0] or "application/octet-stream"))
        elif self.disguise == "octet":
            headers.append(("Content-Type", "application/octet-stream"))
        elif self.disguise != "notype":
            headers.append(("Content-Type", "text/html"))
        if self.disguise in ("gzip", "deflate", "raw-deflate", "br", "zstd"):
            body = _encode(body, self.disguise)
            headers.append(("Content-Encoding", "deflate" if self.disguise == "raw-deflate" else self.disguise))
        hold = CORPUS_HOLD_BYTES_ZSTD if self.disguise == "zstd" else CORPUS_HOLD_BYTES
        return WebResponse(headers=headers, body=body, hold_after=0 if f.text else hold)

    def handle(self, req: WebRequest) -> WebResponse:
        if req.path == "/robots.txt":
            return robots("User-agent: *\nAllow: /\n")
        if self.disguise == "own" and req.path.startswith("/files/"):
            found = self.by_path.get(unquote(req.path.removeprefix("/files/")))
        elif req.path.startswith("/doc/"):
            number = req.path.removeprefix("/doc/").removesuffix(".html")
            found = self.files[int(number)] if number.isdigit() and int(number) < len(self.files) else None
        else:
            page_value = self.text_pages.get(req.path)
            return page_value if page_value is not None else text_response("not found\n", 404)
        if found is None:
            return text_response("not found\n", 404)
        return self._file_response(found)


def text_response(body: str, status: int = 200) -> WebResponse:
    return WebResponse(status=status, headers=[("Content-Type", "text/plain; charset=utf-8")], body=body)


def corpus_b64(f: CorpusFile, data_uri: bool) -> str:
    """How a corpus page carries a file: a data: URI on one line, or a bare block wrapped at 76 characters."""
    import base64
    import mimetypes

    encoded = base64.b64encode(f.read()).decode("ascii")
    if data_uri:
        return f"data:{mimetypes.guess_type(f.path)[0] or 'application/octet-stream'};base64,{encoded}"
    return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


#: Ordinary text pages served in the corpus crawl: each must still be stored.
CORPUS_PROSE = {
    "/prose/utf-8": ("text/html; charset=utf-8", "utf-8", "<p>Plain words about a gallery, in UTF-8: café, naïve.</p>"),
    "/prose/shift_jis": ("text/html", "shift_jis", '<meta charset="Shift_JIS"><p>日本語の文章です。画像はありません。</p>'),
    "/prose/windows-1251": ("text/html; charset=windows-1251", "cp1251", "<p>Обычный текст на русском языке.</p>"),
    "/prose/iso-8859-2": ("text/html; charset=ISO-8859-2", "iso-8859-2", "<p>Zażółć gęślą jaźń, řeřicha.</p>"),
    "/prose/utf-16": ("text/html", "utf-16", "<p>Text in UTF-16 with a byte order mark.</p>"),
    "/prose/stray-controls": ("text/html; charset=utf-8", "utf-8", "<p>A page\x0b with a\x00 few stray\x1b control\x08 bytes.</p>"),
}


def corpus_sites(files: list[CorpusFile] | None = None) -> dict[str, Site]:
    """``corpus.test`` and its disguise hosts (empty when the corpus is missing)."""
    import html as html_lib

    files = corpus_files() if files is None else files
    if not files:
        return {}
    pages: dict[str, WebResponse] = {}
    b64_pages: list[str] = []
    for style in ("data", "bare"):
        for start in range(0, len(files), CORPUS_B64_PER_PAGE):
            path = f"/b64/{style}/{start // CORPUS_B64_PER_PAGE}"
            blocks = "".join(
                f"<h2>File {f.index}</h2><p>Words before file {f.index}.</p><pre>{corpus_b64(f, style == 'data')}</pre>"
                f"<p>Words after file {f.index}.</p>"
                for f in files[start : start + CORPUS_B64_PER_PAGE]
            )
            pages[path] = WebResponse(headers=[("Content-Type", "text/html; charset=utf-8")],
                                      body=f"<!doctype html><html><head><title>{path}</title></head><body>{blocks}</body></html>")  # fmt: skip
            b64_pages.append(path)
    for path, (ctype, codec, body) in CORPUS_PROSE.items():
        document = f"<!doctype html><html><head><title>{path}</title></head><body>{body}</body></html>"
        pages[path] = WebResponse(headers=[("Content-Type", ctype)], body=document.encode(codec))
    links = "".join(
        f'<li><a href="{html_lib.escape(corpus_url("own", f))}">{html_lib.escape(corpus_url("own", f))}</a></li>' for f in files
    )
    pages["/links"] = WebResponse(headers=[("Content-Type", "text/html; charset=utf-8")],
                                  body=f"<!doctype html><html><head><title>links</title></head><body><ul>{links}</ul></body></html>")  # fmt: skip
    disguised = "".join(
        f'<a href="{corpus_url(host, f)}">{host} {f.index}</a> ' for host in CORPUS_DISGUISES for f in files
    )
    index_links = "".join(f'<a href="{p}">{p}</a> ' for p in ["/links", *b64_pages, *CORPUS_PROSE])
    pages["/"] = WebResponse(headers=[("Content-Type", "text/html; charset=utf-8")],
                             body=f"<!doctype html><html><head><title>corpus</title></head><body>{index_links}{disguised}</body></html>")  # fmt: skip
    sites: dict[str, Site] = {"corpus.test": CorpusSite("index", files, pages), "own.corpus.test": CorpusSite("own", files)}
    for host in CORPUS_DISGUISES:
        sites[f"{host}.corpus.test"] = CorpusSite(host, files)
    return sites
# -- hostile networks and hostile sizes (issue #15) --------------------------------

#: Where a cloud keeps its instance credentials: the classic SSRF target.
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


def ssrf_sites(loopback_port: int = 8080) -> dict[str, Site]:
    """Sites whose robots.txt, tdmrep.json and pages point the crawler at private addresses.

    None of those addresses is ever served: through the test web's proxy a
    request for one would be logged as an unknown host (and answered by the
    proxy itself), so a broken check fails the test without a packet leaving.
    """
    ok = page("ok", text="public page")
    return {
        "ssrf.test": StaticSite({"/robots.txt": redirect(METADATA_URL), "/": ok}),
        "loopback.test": StaticSite({"/robots.txt": redirect(f"http://127.0.0.1:{loopback_port}/"), "/": ok}),
        "tdm.test": StaticSite({
            "/robots.txt": robots("User-agent: *\nAllow: /\n"),
            "/.well-known/tdmrep.json": redirect("http://169.254.169.254/latest/meta-data/"),
            "/": page("tdm", ["/go", "/decimal", "/mapped"], text="tdm home"),
            "/go": redirect("http://10.0.0.1/admin"),
            "/decimal": redirect("http://2130706433/"),
            "/mapped": redirect("http://[::ffff:169.254.169.254]/latest/"),
        }),  # fmt: skip
        # A robots.txt redirect that leaves the crawl's domains (offsite, like a page's redirect).
        "offsite.test": StaticSite({"/robots.txt": redirect("http://elsewhere.test/robots.txt"), "/": ok}),
        "elsewhere.test": StaticSite({"/robots.txt": robots("User-agent: *\nAllow: /\n")}),
        # Served without the proxy, by a name mapped to 127.0.0.1 (crawler/testing/resolver.py).
        "intranet.test": StaticSite({"/robots.txt": robots("User-agent: *\nAllow: /\n"), "/": page("internal admin")}),
    }


MIB = 1024 * 1024


@functools.cache
def gzip_bomb(members: int = 1) -> bytes:
    """1 GiB of spaces gzip-compressed (about 1 MB), repeated as ``members`` gzip members.

    Spaces, not zero bytes: zeros are not text, and the text gate would refuse
    them at the first chunk (``content.not-text``) before any size limit is
    reached. A bomb of text must be stopped by the size limit itself.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = b" " * MIB
    member = b"".join(compressor.compress(block) for _ in range(1024)) + compressor.flush()
    return member * members


def _endless() -> Iterable[bytes]:
    chunk = b"<p>" + b"a" * 65_000 + b"</p>\n"
    while True:
        yield chunk


def _many_links(count: int) -> bytes:
    return ("<html><body>" + "".join(f'<a href="/l/{i}">{i}</a>' for i in range(count)) + "</body></html>").encode()


_ROBOTS_HEAD = b"User-agent: *\nDisallow: /secret/\n"
_ROBOTS_BLOCK = (b"Disallow: /private/" + b"x" * 60 + b"\n") * 1000


def _big_robots(size: int) -> WebResponse:
    """A robots.txt of about ``size`` bytes, produced lazily, with its Content-Length."""
    blocks = -(-size // len(_ROBOTS_BLOCK))
    return WebResponse(
        headers=[("Content-Type", "text/plain")], body_factory=lambda: [_ROBOTS_HEAD, *([_ROBOTS_BLOCK] * blocks)],
        content_length=len(_ROBOTS_HEAD) + blocks * len(_ROBOTS_BLOCK),
    )


def hostile_size_sites(links: int = 200_000, robots_size: int = 50 * 1000 * 1000) -> dict[str, Site]:
    """A gzip bomb, an endless body, a page of ``links`` links and a huge robots.txt (bench/hostile_memory.py)."""
    # 10 MB that inflate to 10 GiB (cut by the transfer limit), and 1 MB
    # that inflate to 1 GiB (cut while decompressing).
    big_bomb, small_bomb = gzip_bomb(10), gzip_bomb(1)
    allow = robots("User-agent: *\nAllow: /\n")
    html_type = ("Content-Type", "text/html; charset=utf-8")
    return {
        "bomb.test": StaticSite({
            "/robots.txt": allow, "/": page("bombs", ["/big", "/small"]),
            "/big": WebResponse(headers=[html_type, ("Content-Encoding", "gzip")], body=big_bomb),
            "/small": WebResponse(headers=[html_type, ("Content-Encoding", "gzip")], body=small_bomb),
        }),  # fmt: skip
        "endless.test": StaticSite({"/robots.txt": allow, "/": WebResponse(headers=[html_type], body_factory=_endless)}),
        "links.test": StaticSite({"/robots.txt": allow, "/": WebResponse(headers=[html_type], body=_many_links(links))}),
        "bigrobots.test": StaticSite({
            "/robots.txt": _big_robots(robots_size),
            "/": page("big robots", ["/secret/x", "/open"]), "/open": page("open"), "/secret/x": page("secret"),
        }),  # fmt: skip
    }
