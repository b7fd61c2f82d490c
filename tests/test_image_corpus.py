"""Real image files nobody on this project wrote (../shared/corpora/pillow-test-images),
under every disguise, in one crawl: only text is collected.

The corpus is read at run time, never copied into the project. Which of its
files are images is decided by file(1) (its MANIFEST.tsv), not by the code
under test: everything but what file(1) calls "ASCII text" (GIMP palettes,
notes, a BDF font) is an image file here, PostScript included.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.compliance.content import HEAD_BYTES
from crawler.compliance.images import IMAGE_EXTENSIONS
from crawler.testing.runner import run_site_crawl
from crawler.testing.sites import (
    CORPUS_B64_PER_PAGE, CORPUS_DISGUISES, CORPUS_HOLD_BYTES, CORPUS_HOLD_BYTES_ZSTD, CORPUS_PROSE, CorpusFile, corpus_files,
    corpus_sites, corpus_url,
)  # fmt: skip
from crawler.testing.web import TestWeb
from conftest import REQUIRE_SERVICES

#: The corpus: ../shared/corpora/ relative to the repository root (CI puts a copy of shared/ there).
CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "pillow-test-images"
#: A run of this many base64 characters (18 bytes of a file) is a copy of it.
B64_WINDOW = 24


@pytest.fixture(scope="module")
def files() -> list[CorpusFile]:
    found = corpus_files(CORPUS_DIR)
    if not found:
        message = f"the image corpus is missing: {CORPUS_DIR} (MANIFEST.tsv) is not there"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (COMPLIANCE_REQUIRE_SERVICES=1: CI has it)")
        pytest.skip(message)
    assert len(found) == 630, f"{CORPUS_DIR}/MANIFEST.tsv lists {len(found)} files, not 630"
    return found


@pytest.fixture
def corpus_web(files: list[CorpusFile]) -> Iterator[TestWeb]:
    with TestWeb(corpus_sites(files)) as server:
        yield server
        assert not server.unknown_hosts()


def _b64_windows(data: bytes) -> set[str]:
    """Every base64 run of B64_WINDOW characters that stands for bytes of ``data`` at any offset."""
    windows = set()
    for shift in range(3):
        encoded = base64.b64encode(data[shift:]).decode("ascii")
        stop = len(encoded) - (4 if len(data[shift:]) % 3 else 0)  # the last group may be padded
        windows.update(encoded[i : i + B64_WINDOW] for i in range(0, max(stop - B64_WINDOW + 1, 1), 4))
    return {w for w in windows if len(w) == B64_WINDOW}


def test_no_byte_base64_copy_or_url_of_any_real_image_is_collected(corpus_web: TestWeb, files: list[CorpusFile], store_url: str,
                                                                   guard_env: dict, policy_dir) -> None:  # type: ignore[no-untyped-def]
    """630 real files, each under every disguise, in one crawl: no image reaches an item (bytes, base64, URL),
    no transfer of one goes past its first chunk, and the ordinary text pages of the same crawl are stored."""
    run = run_site_crawl(
        corpus_web, ["http://corpus.test/"], store_url, env=guard_env, timeout=400,
        # The corpus index links every file under every disguise (several thousand links):
        # above the default links-per-page bound, which has its own test (test_network.py).
        settings={"COMPLIANCE_POLICY_DIR": str(policy_dir), "CONCURRENT_REQUESTS": 64, "LOG_LEVEL": "INFO",
                  "COMPLIANCE_MAX_LINKS_PER_PAGE": 20_000},
    ).check()  # fmt: skip
    images = [f for f in files if not f.text]
    assert len(images) > 600
    items = {i["url"]: i for i in run.store.iter_items()}

    # 1. Ordinary text pages are stored: the index, the links page, every base64 page (scrubbed), every prose page.
    b64_pages = {f"http://corpus.test/b64/{style}/{n}" for style in ("data", "bare") for n in range(-(-len(files) // CORPUS_B64_PER_PAGE))}
    text_pages = {"http://corpus.test/", "http://corpus.test/links", *b64_pages, *(f"http://corpus.test{p}" for p in CORPUS_PROSE)}
    assert text_pages <= set(items), sorted(text_pages - set(items))
    assert "Words after file 0." in items["http://corpus.test/b64/bare/0"]["text"]
    assert "日本語の文章です" in items["http://corpus.test/prose/shift_jis"]["text"]
    assert "Обычный текст" in items["http://corpus.test/prose/windows-1251"]["text"]

    # 2. No image file under any disguise became an item; only the file(1) "ASCII text" files may have.
    text_urls = {corpus_url(host, f) for f in files if f.text for host in ("own", *CORPUS_DISGUISES)}
    assert set(items) <= text_pages | text_urls, sorted(set(items) - text_pages - text_urls)[:20]

    # 3. No base64 copy of any image file, and no URL of one with an image extension, in any stored field.
    stored = "\n".join(" ".join(str(v) for v in item.values()) for item in items.values())
    runs = {
        run[i : i + B64_WINDOW]
        for run in re.findall(r"[A-Za-z0-9+/]{%d,}" % B64_WINDOW, re.sub(r"\s+", "", stored))
        for i in range(len(run) - B64_WINDOW + 1)
    }
    # Bytes a text file of the corpus holds too (spaces, a script an EPS file embeds) are no image's own.
    shared = set().union(*(_b64_windows(f.read()) for f in files if f.text))
    leaks = [f.path for f in images if not runs.isdisjoint(_b64_windows(f.read()) - shared)]
    assert not leaks, f"base64 copies of {len(leaks)} image files stored: {leaks[:10]}"
    named = [f for f in images if f.path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS]
    assert len(named) > 550
    assert not [f.path for f in named if f"/files/{f.path}" in stored or corpus_url("own", f) in stored]
    assert "[image removed]" in items["http://corpus.test/links"]["text"]

    # 4. No transfer of an image went past its first chunk. Server side: each image body
    # sends CORPUS_HOLD_BYTES, then holds the rest until the client hangs up; a client
    # still reading would get it all. Crawler side: each refusal says what it had read.
    # (A client that timed out would hang up too: none did.)
    assert "DownloadTimeoutError" not in run.stderr
    log = {f"http://{e.host}{e.path}": e for e in corpus_web.log if e.host.endswith("corpus.test")}
    for f in images:
        assert corpus_url("own", f) not in log or f.path.rsplit(".", 1)[-1].lower() not in IMAGE_EXTENSIONS
        for host in CORPUS_DISGUISES:
            entry = log[corpus_url(host, f)]  # every disguise was requested
            assert entry.bytes_sent <= (CORPUS_HOLD_BYTES_ZSTD if host == "zstd" else CORPUS_HOLD_BYTES), (f.path, host, entry.bytes_sent)
    refusals = [r for r in run.store.refusals() if ".corpus.test/" in r["url"]]
    assert refusals
    late = [r for r in refusals if r["gate"] == "body" and not r["detail"].startswith("transfer aborted after")]
    assert not late, late[:5]  # nothing was refused only once downloaded
    read = [int(r["detail"].split("after ")[1].split(" ")[0]) for r in refusals if r["detail"].startswith("transfer aborted")]
    assert read and max(read) <= HEAD_BYTES
    reasons = {r["reason"] for r in refusals}
    # content.unverifiable: a zstd block not complete within the first 64 KiB
    assert reasons <= {"image.url", "image.magic", "content.not-text", "image.content-type", "content.unverifiable"}, reasons
    refused_urls = {r["url"] for r in refusals}
    unrefused = [corpus_url(host, f) for f in images for host in CORPUS_DISGUISES if corpus_url(host, f) not in refused_urls]
    assert not unrefused, (len(unrefused), unrefused[:10], run.stderr[-3000:])
