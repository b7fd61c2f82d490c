import pytest

from crawler.testing.plugin import hostile_sites
from crawler.testing.sites import robots
from crawler.testing.web import StaticSite


def catalogue(page: int, books: list[tuple[str, str]], last: bool) -> str:
    items = "".join(f'<li class="book"><span class="title">{t}</span> <span class="price">{p}</span></li>' for t, p in books)
    more = "" if last else f'<a class="next" href="/page/{page + 1}">next</a>'
    return f"<!doctype html><html><head><title>Books {page}</title></head><body><ul>{items}</ul>{more}</body></html>"


@pytest.fixture
def compliance_sites():
    """The framework's hostile hosts, and this project's own catalogue at books.test."""
    books = StaticSite({
        "/robots.txt": robots("User-agent: *\nDisallow: /page/3\n"),
        "/": catalogue(1, [("Dune", "9.99"), ("Emma", "4.50")], last=False),
        "/page/2": catalogue(2, [("Ulysses", "12.00")], last=False),
        "/page/3": catalogue(3, [("Secret", "0.00")], last=True),
    })
    return {**hostile_sites(), "books.test": books}
