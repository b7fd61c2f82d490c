"""Find the stored items that hold a person's identifiers, with the database's own full-text index.

Two steps, so that the index does the work and the rules stay one:

1. the index selects candidates: a query built from the identifier that
   every item holding it must satisfy (a superset), run by SQLite FTS5 or by
   PostgreSQL (``tsvector`` for names; regular expressions served by the
   ``pg_trgm`` index for the rest), never a scan of every item in Python;
2. each candidate is read and its identifiers extracted and normalised by
   :mod:`.identifiers`, the same code the crawl's suppression check uses: an
   item is found when one of them is one of the person's.

Why a superset and not the exact form: the index sees tokens
(``john.doe+x@gmail.com`` is ``john doe x gmail com`` to FTS5), and on
SQLite only which items hold them, not where; while the normal form ignores
Gmail's dots and tags and a phone number's spacing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from crawler.compliance.store import Store, items
from crawler.dataprotection.identifiers import GMAIL_DOMAINS, PLUS_TAG_DOMAINS, Identifier, Wanted, candidates
from crawler.dataprotection.tables import PG_DOCUMENT, ensure_schema

_TOKEN = re.compile(r"[^\W_]+")
READ_CHUNK = 500


def _term(word: str) -> str:
    """One FTS5 term (quoted, so no word is read as an operator)."""
    return '"' + word.replace('"', '""') + '"'


def _all(words: Iterable[str]) -> str:
    return " AND ".join(_term(w) for w in words)


def fts5_query(identifier: Identifier) -> str | None:
    """The FTS5 MATCH expression every item holding ``identifier`` satisfies (None: no token to narrow by).

    The index keeps which items hold a token, not where (``detail=none``: a
    third of the write cost), so phrases are written as every token of
    them; the check of each candidate (see :func:`find`) is exact.
    """
    kind, value = identifier.kind, identifier.value
    if kind == "email":
        local, _, domain = value.rpartition("@")
        if domain == "gmail.com":
            # Dots may split the local part anywhere: the first token written is a prefix of it.
            local_alnum = "".join(_TOKEN.findall(local))
            prefixes = " OR ".join(_term(local_alnum[:end]) for end in range(1, len(local_alnum) + 1))
            domains = " OR ".join(f"({_all(_TOKEN.findall(written))})" for written in sorted(GMAIL_DOMAINS))
            return f"({prefixes}) AND ({domains})" if prefixes else None
        if domain in PLUS_TAG_DOMAINS:
            tokens = _TOKEN.findall(local) + _TOKEN.findall(domain)
        else:
            tokens = _TOKEN.findall(value)
    elif kind == "phone":
        digits = value.lstrip("+")
        # However the number is grouped, its last group is a suffix of its digits.
        return " OR ".join(_term(digits[-n:]) for n in range(2, len(digits) + 1))
    elif kind == "url":
        tokens = _TOKEN.findall(value)
        tokens = tokens[1:] if tokens and tokens[0] in ("http", "https") else tokens
    else:  # name, handle
        tokens = _TOKEN.findall(value)
    return _all(tokens) or None


def _pg_literal(text: str) -> str:
    """``text`` as a literal inside a PostgreSQL regular expression (ARE)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def pg_condition(identifier: Identifier) -> sa.ColumnElement[bool]:
    """The PostgreSQL condition every item holding ``identifier`` satisfies (index-served where it can be)."""
    kind, value = identifier.kind, identifier.value
    document = sa.literal_column(PG_DOCUMENT)
    if kind == "name":
        return sa.literal_column(f"to_tsvector('simple', {PG_DOCUMENT})").op("@@")(sa.func.phraseto_tsquery("simple", value))
    if kind == "email":
        local, _, domain = value.rpartition("@")
        if domain == "gmail.com":
            pattern = r"\.?".join(_pg_literal(c) for c in local) + r"(\+[^@[:space:]]*)?@(gmail|googlemail)\.com"
        elif domain in PLUS_TAG_DOMAINS:
            pattern = _pg_literal(local) + r"(\+[^@[:space:]]*)?@" + _pg_literal(domain)
        else:
            pattern = _pg_literal(value)
    elif kind == "phone":
        import phonenumbers

        national = str(phonenumbers.parse(value).national_number)
        pattern = "[^0-9]{0,3}".join(national)
    elif kind == "handle":
        pattern = r"(^|[^[:alnum:]_.@])@?" + _pg_literal(value) + r"($|[^[:alnum:]_])"
    else:  # url: its host, port and path as written
        pattern = _pg_literal(value.split("://", 1)[1])
    return document.op("~*")(pattern)


def candidate_ids(store: Store, identifier: Identifier) -> list[int]:
    """Ids of the items the index selects for ``identifier`` (a superset of those that hold it)."""
    ensure_schema(store)
    with store.engine.connect() as conn:
        if store.is_sqlite:
            query = fts5_query(identifier)
            if query is None:  # nothing the index could narrow by: every item is a candidate
                rows = conn.execute(sa.select(items.c.id))
            else:
                # The text as written, and the NFKC form of the items NFKC changes (crawler/dataprotection/tables.py).
                rows = conn.execute(sa.text("SELECT rowid FROM items_fts WHERE items_fts MATCH :q UNION "
                                            "SELECT rowid FROM items_nfkc_fts WHERE items_nfkc_fts MATCH :q"), {"q": query})  # fmt: skip
        else:
            rows = conn.execute(sa.select(items.c.id).where(pg_condition(identifier)))
        return sorted(int(r[0]) for r in rows)


def holds(row: Any, wanted: Wanted, targets: set[str]) -> list[str]:
    """The ``kind:value`` keys of ``targets`` that the item ``row`` holds."""
    found = {c.key for c in candidates(row.url, (row.title, row.text), wanted)}
    return sorted(found & targets)


def find(store: Store, identifiers: list[Identifier], region: str | None) -> dict[int, tuple[str, list[str]]]:
    """Every stored item holding any of ``identifiers``: {item id: (url, the keys it holds)}."""
    ensure_schema(store)
    ids: set[int] = set()
    for identifier in identifiers:
        ids.update(candidate_ids(store, identifier))
    wanted = Wanted.of(identifiers, region)
    targets = {i.key for i in identifiers}
    found: dict[int, tuple[str, list[str]]] = {}
    for chunk in _chunks(sorted(ids), READ_CHUNK):
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(items.c.id, items.c.url, items.c.title, items.c.text).where(items.c.id.in_(chunk))).all()
        for row in rows:
            keys = holds(row, wanted, targets)
            if keys:
                found[int(row.id)] = (row.url, keys)
    return found


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
