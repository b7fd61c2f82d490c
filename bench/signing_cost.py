"""What signing one request costs (Web Bot Auth, crawler/identity/signing.py).

    .venv/bin/python bench/signing_cost.py [--requests N]

Times, per request, in one process: the project's ``RequestSigner.headers``
(signature base + Ed25519 + headers, with a Signature-Agent), the raw
Ed25519 signature alone, and, when the test extra is installed,
``http-message-signatures`` signing the same request (``sign()`` and
``prepare()`` + an external signature), which produces the same bytes.
Best of five rounds, so a busy machine shows up as noise rather than as
cost. A measurement, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable

from crawler.identity.signing import RequestSigner, SigningKey

AGENT = "https://bot.example/"
COMPONENTS = ["@authority", "@method", "@path", '"signature-agent";key="sig1"']


def best_of(rounds: int, count: int, work: Callable[[int], object]) -> float:
    """Microseconds per call, best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(count):
            work(index)
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per round (default 5000)")
    count = parser.parse_args().requests
    key = SigningKey.generate()
    signer = RequestSigner(key, agent=AGENT)
    urls = [f"https://shop.example/products/{i}?page={i % 7}" for i in range(count)]
    rows = [
        ("RequestSigner.headers (this project)", best_of(5, count, lambda i: signer.headers("GET", urls[i]))),
        ("Ed25519 signature alone (cryptography)", best_of(5, count, lambda i: key.sign(urls[i].encode() * 3))),
    ]
    try:
        from http_message_signatures import HTTPMessageSigner, algorithms
        from http_message_signatures._messages import _Request
    except ImportError:
        print("(http-message-signatures not installed: pip install -e '.[test]' to compare)")
    else:

        class Resolver:
            def resolve_private_key(self, key_id: str):  # noqa: ANN202
                return key.private_key

        library = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Resolver())

        def options() -> dict:
            now = datetime.datetime.now(datetime.UTC)
            return dict(key_id=key.key_id, created=now, expires=now + datetime.timedelta(seconds=300),
                        nonce="n", label="sig1", tag="web-bot-auth", covered_component_ids=COMPONENTS)  # fmt: skip

        def library_sign(i: int) -> None:
            library.sign(_Request("GET", urls[i], {"Signature-Agent": f'sig1="{AGENT}"'}), **options())

        def library_prepare(i: int) -> None:
            prepared = library.prepare(_Request("GET", urls[i], {"Signature-Agent": f'sig1="{AGENT}"'}), **options())
            key.sign(prepared.signature_base)

        rows.append(("http-message-signatures sign()", best_of(5, count, library_sign)))
        rows.append(("http-message-signatures prepare() + Ed25519", best_of(5, count, library_prepare)))
    for name, micros in rows:
        print(f"{name:<48} {micros:8.1f} µs/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
