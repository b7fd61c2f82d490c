"""Per-chunk cost of the download gate: the image signature check alone against the text check.

    .venv/bin/python bench/text_gate.py [--repeat N]

Prints microseconds per call (the best of five rounds, each the mean of N
calls) for chunks of 1, 16 and 64 KiB of an ordinary HTML page, a UTF-16
page and a page in Shift_JIS, and for a gzip-encoded chunk fed through the
whole per-response sniffer. See bench/README.md ("Text gate").
"""

from __future__ import annotations

import argparse
import gzip
import timeit

from crawler.compliance.content import BodySniffer, text_decision
from crawler.compliance.images import SNIFF_BYTES, magic_decision


def _page(words: str, size: int, codec: str = "utf-8", charset: str = "utf-8") -> bytes:
    paragraph = f"<p>{words}</p>\n"
    body = f"<!doctype html><html><head><meta charset={charset}><title>t</title></head><body>" + paragraph * (size // len(paragraph) + 1)
    return body.encode(codec)[:size]


def _feed_all(ctype: str, chunks: list[bytes]) -> None:
    sniffer = BodySniffer(ctype)
    for chunk in chunks:
        if sniffer.feed(chunk) is not None:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()

    def best(call: object) -> float:
        return min(timeit.repeat(call, number=args.repeat, repeat=5)) / args.repeat * 1e6  # type: ignore[arg-type]

    ctype = "text/html; charset=utf-8"
    rows = []
    for kib in (1, 16, 64):
        size = kib * 1024
        html = _page("Ordinary words of an ordinary page, with a link or two.", size)
        rows.append((f"{kib:>2} KiB UTF-8 HTML", best(lambda: magic_decision(html[:SNIFF_BYTES])),
                     best(lambda: text_decision(html, ctype, final=False))))  # fmt: skip
        sjis = _page("日本語の文章です。画像はありません。", size, "shift_jis", "shift_jis")
        rows.append((f"{kib:>2} KiB Shift_JIS HTML", best(lambda: magic_decision(sjis[:SNIFF_BYTES])),
                     best(lambda: text_decision(sjis, "text/html", final=False))))  # fmt: skip
        utf16 = _page("UTF-16 words", size, "utf-16", "utf-16")
        rows.append((f"{kib:>2} KiB UTF-16 HTML", best(lambda: magic_decision(utf16[:SNIFF_BYTES])),
                     best(lambda: text_decision(utf16, "text/html", final=False))))  # fmt: skip
        packed = gzip.compress(html)
        rows.append((f"{kib:>2} KiB gzip, whole sniffer", best(lambda: magic_decision(html[:SNIFF_BYTES])),
                     best(lambda: BodySniffer(ctype, "gzip").feed(packed))))  # fmt: skip
        if kib > 1:  # what a real network delivers: the body in TCP-segment-sized chunks, through the whole sniffer
            chunks = [html[i:i + 1460] for i in range(0, len(html), 1460)]
            rows.append((f"{kib:>2} KiB in 1460 B chunks", best(lambda: magic_decision(html[:SNIFF_BYTES])),
                         best(lambda: _feed_all(ctype, chunks))))  # fmt: skip
    print(f"{'chunk':<28}{'signatures only (us)':>22}{'text gate (us)':>16}{'per KiB (us)':>14}")
    for name, magic, text in rows:
        kib = int(name.split()[0])
        print(f"{name:<28}{magic:>22.1f}{text:>16.1f}{text / kib:>14.2f}")


if __name__ == "__main__":
    main()
