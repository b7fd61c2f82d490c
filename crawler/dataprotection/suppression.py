"""The suppression list: erased identifiers as keyed hashes, checked before every item is stored.

An erasure the next crawl undoes is not one (GDPR Art. 17; FACTS §10). The
list holds ``HMAC-SHA-256(secret, "kind:normal form")`` of each identifier,
never the identifier: someone who reads the store (or a backup of it) cannot
test guesses without the per-installation secret, which is kept like the
signing key: a file under ``var/`` (``COMPLIANCE_ERASURE_KEY``), mode 0600,
refused when others may read it. What the list does show: each entry's kind,
and for names their number of words (the matcher needs both).

The check runs on every item a crawl stores, so each entry also holds a
second keyed hash, its *hint*, that is cheap to test first (no clear text
either): for a phone number, its last :data:`PHONE_TAIL` digits (libphonenumber
reads a span only when one of the span's digit windows is such a tail); for a
name, its first word (n-grams are hashed only where such a word starts).
Entries written before hints existed have none: their kind is then checked
without the pre-filter (slower, as exact). Equal hints show that two entries
share their last digits or first word, nothing more.

Every machine of a cluster needs the same secret (copy the file, as for the
signing key). The store records the secret's fingerprint with the first
entry; a process whose secret differs cannot match anything, so it refuses
every item (``erasure.key-mismatch``) rather than store what the list forbids.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from itemadapter import ItemAdapter

from crawler.compliance.decision import Decision
from crawler.compliance.store import Store, store_meta, utcnow
from crawler.dataprotection.identifiers import Identifier, Wanted, candidates, fold, phone_spans, phones_in, words
from crawler.dataprotection.tables import bump_meta_counter, ensure_schema, meta_value, suppression
from crawler.itemfields import PLAIN

KEY_FORMAT = "ethical-crawler-erasure-key/1"
VERSION_KEY = "suppression_version"
FINGERPRINT_KEY = "suppression_key_id"
#: How many answers (n-grams, words, digit strings) a crawl keeps (then starts again).
SEEN_LIMIT = 200_000
#: A phone number's hint: its last digits. Five, because libphonenumber only ever adds digits
#: in front of what is written (national prefix rules, e.g. Norfolk Island's 5-digit local
#: numbers gain a leading 3), so the last five digits of the E.164 form are always written.
PHONE_TAIL = 5


class SuppressionKeyError(ValueError):
    """The secret is missing, unreadable, malformed, too widely readable, or not the one the list was made with."""


# -- the secret ----------------------------------------------------------------------------


def load_key(path: Path) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SuppressionKeyError(f"{path}: no erasure key file (the first `scrapy erase` creates it)") from None
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SuppressionKeyError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read the erasure key; fix: chmod 600 {path}"
        )
    try:
        lines = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise SuppressionKeyError(f"{path}: cannot read ({exc})") from None
    if len(lines) != 2 or lines[0] != KEY_FORMAT or len(lines[1]) != 64:
        raise SuppressionKeyError(f"{path}: expected {KEY_FORMAT!r} and 64 hex digits")
    try:
        return bytes.fromhex(lines[1])
    except ValueError:
        raise SuppressionKeyError(f"{path}: the key is not hex") from None


def load_or_create_key(path: Path) -> bytes:
    """The key at ``path``, created (0600, linked into place so two processes agree) if there is none."""
    if path.exists():
        return load_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".erasure-key-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{KEY_FORMAT}\n{secrets.token_hex(32)}\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return load_key(path)


def fingerprint(key: bytes) -> str:
    return hmac.digest(key, b"ethical-crawler erasure key fingerprint", "sha256").hex()[:16]


def keyed_hash(key: bytes, identifier_key: str) -> str:
    return hmac.digest(key, identifier_key.encode("utf-8"), "sha256").hex()


def hint(identifier: Identifier) -> str | None:
    """What the entry's pre-filter hash is made of (before keying), or None when the kind has no pre-filter.

    ``phone-tail:<last digits>`` for a phone number whose national number has
    that many digits, ``name-first:<first word>`` for a name.
    """
    if identifier.kind == "phone":
        import phonenumbers

        national = len(identifier.value) - 1 - len(str(phonenumbers.parse(identifier.value).country_code))
        return f"phone-tail:{identifier.value[-PHONE_TAIL:]}" if national >= PHONE_TAIL else None
    if identifier.kind == "name":
        return "name-first:" + identifier.value.split(" ", 1)[0]
    return None


# -- the list in the store -----------------------------------------------------------------


def add_entries(store: Store, key: bytes, identifiers: Iterable[Identifier], request_id: str) -> int:
    """Put the identifiers' hashes on the list (one transaction, with a new list version): how many were new."""
    ensure_schema(store)
    mine = fingerprint(key)
    added = 0
    with store.engine.begin() as conn:
        recorded = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == FINGERPRINT_KEY).with_for_update()).scalar()
        if recorded is None:
            conn.execute(store_meta.insert().values(key=FINGERPRINT_KEY, value=mine))
        elif recorded != mine:
            raise SuppressionKeyError(
                f"this erasure key (fingerprint {mine}) is not the one the store's suppression list was made with "
                f"({recorded}); use the same key file on every machine (COMPLIANCE_ERASURE_KEY)"
            )
        now = utcnow()
        for identifier in identifiers:
            digest = keyed_hash(key, identifier.key)
            made_of = hint(identifier)
            hinted = keyed_hash(key, made_of) if made_of else None
            present = conn.execute(sa.select(suppression.c.hint).where(suppression.c.hash == digest)).first()
            if present is None:
                conn.execute(suppression.insert().values(hash=digest, kind=identifier.kind, words=identifier.words,
                                                         request_id=request_id, created_at=now, hint=hinted))  # fmt: skip
                added += 1
            elif present.hint is None and hinted is not None:
                # Listed before hints existed: given again, it gains one.
                conn.execute(suppression.update().where(suppression.c.hash == digest).values(hint=hinted))
        bump_meta_counter(conn, VERSION_KEY)
    return added


def list_version(store: Store) -> int:
    ensure_schema(store)
    return int(meta_value(store, VERSION_KEY) or 0)


@dataclass
class Suppressor:
    """The list as a crawl holds it: hashes to request ids, the hints, and which candidates to extract."""

    key: bytes | None
    entries: dict[str, str]
    wanted: Wanted
    version: int = 0
    #: Why nothing can be matched although the list is not empty (refuse everything).
    broken: str = ""
    #: The hints of the phone numbers and of the names; None when some entry of the kind has none.
    phone_tails: frozenset[str] | None = None
    name_firsts: frozenset[str] | None = None
    _seen: dict[str, str | None] = field(default_factory=dict)
    _words_seen: set[str] = field(default_factory=set)
    _first_words: set[str] = field(default_factory=set)
    _tails_seen: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Store, key_path: Path, region: str | None) -> Suppressor:
        ensure_schema(store)
        version = list_version(store)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(suppression.c.hash, suppression.c.kind, suppression.c.words, suppression.c.request_id,
                                          suppression.c.hint)).all()  # fmt: skip
        entries: dict[str, str] = {}
        kinds: set[str] = set()
        lengths: set[int] = set()
        hints: dict[str, set[str] | None] = {"phone": set(), "name": set()}
        for digest, kind, words_in_name, request_id, hinted in rows:  # one pass: a crawl loads the list as it opens
            entries[digest] = request_id
            kinds.add(kind)
            if kind == "name":
                lengths.add(int(words_in_name))
            known = hints.get(kind)
            if known is not None:
                if hinted is None:
                    hints[kind] = None  # an entry without a hint: its kind is checked without the pre-filter
                else:
                    known.add(hinted)
        wanted = Wanted(frozenset(kinds), frozenset(lengths), region)
        if not entries:
            return cls(None, {}, wanted, version)
        try:
            key = load_key(key_path)
        except SuppressionKeyError as exc:
            return cls(None, entries, wanted, version, broken=f"erasure.no-key: {exc}")
        recorded = meta_value(store, FINGERPRINT_KEY)
        if recorded is not None and recorded != fingerprint(key):
            return cls(None, entries, wanted, version,
                       broken=f"erasure.key-mismatch: {key_path} is not the key the suppression list was made with")  # fmt: skip
        phone_tails, name_firsts = hints["phone"], hints["name"]
        return cls(key, entries, wanted, version, phone_tails=None if phone_tails is None else frozenset(phone_tails),
                   name_firsts=None if name_firsts is None else frozenset(name_firsts))  # fmt: skip

    def __len__(self) -> int:
        return len(self.entries)

    def check(self, url: str, texts: Iterable[str]) -> Decision | None:
        """A refusal when the item holds a suppressed identifier (or the list cannot be checked); else None."""
        if not self.entries:
            return None
        if self.key is None:
            reason, _, detail = self.broken.partition(": ")
            return Decision.refuse(reason, rule="the suppression list cannot be checked: every item is refused", detail=detail)
        key, entries, kinds = self.key, self.entries, self.wanted.kinds
        texts = [t for t in texts if t]
        joined = "\0".join(texts)
        # Phone numbers and names through their pre-filters (below) when every entry has a hint.
        plain = kinds - {"name"} - ({"phone"} if self.phone_tails is not None else set())
        if plain:
            for candidate in candidates(url, texts, Wanted(plain, frozenset(), self.wanted.region)):
                request = entries.get(keyed_hash(key, candidate.key))
                if request is not None:
                    return _refusal(request, candidate.kind)
        if "phone" in kinds and self.phone_tails is not None:
            # One pass over all texts: no span crosses the NUL between two of them.
            for span, digits in phone_spans(joined):
                if self._tail_written(digits):
                    for candidate in phones_in(span, self.wanted.region):
                        request = entries.get(keyed_hash(key, candidate.key))
                        if request is not None:
                            return _refusal(request, "phone")
        if self.wanted.name_lengths:
            request = self._name_in(texts, joined)
            if request is not None:
                return _refusal(request, "name")
        return None

    def _tail_written(self, digits: str) -> bool:
        """Whether a window of ``digits`` is the tail of a listed phone number (each digit string answered once)."""
        seen = self._tails_seen
        answer = seen.get(digits)
        if answer is None:
            if len(seen) > SEEN_LIMIT:
                seen.clear()
            key, tails = self.key, self.phone_tails
            assert key is not None and tails is not None
            answer = seen[digits] = any(
                keyed_hash(key, "phone-tail:" + digits[start : start + PHONE_TAIL]) in tails
                for start in range(len(digits) - PHONE_TAIL + 1)
            )  # fmt: skip
        return answer

    def _name_in(self, texts: list[str], joined: str) -> str | None:
        """The request id of a listed name among the texts' word n-grams, or None.

        With hints, the words of all texts (``joined``: no word crosses the NUL) are first tested as first words
        (each distinct word once per crawl, bounded; set operations, so a page
        of words already seen costs a few microseconds), and only n-grams
        starting at a listed first word are hashed.
        """
        key = self.key
        assert key is not None
        firsts: set[str] | None = None
        if self.name_firsts is not None:
            seen, firsts = self._words_seen, self._first_words
            distinct = set(words(fold(joined)))
            if len(seen) > SEEN_LIMIT:
                seen.clear()
                firsts.clear()
            for word in distinct.difference(seen):
                if keyed_hash(key, "name-first:" + word) in self.name_firsts:
                    firsts.add(word)
            seen.update(distinct)
            if not distinct & firsts:
                return None
        # Common n-grams recur from page to page, so their answers are kept (bounded; the list's
        # answers only: a new list version builds a new Suppressor).
        seen_grams, entries, digest = self._seen, self.entries, hmac.digest
        if len(seen_grams) > SEEN_LIMIT:
            seen_grams.clear()
        grams: set[str] = set()
        for text in texts:
            found = words(fold(text))
            starts = range(len(found)) if firsts is None else [i for i, word in enumerate(found) if word in firsts]
            for n in self.wanted.name_lengths:
                grams.update(" ".join(found[i : i + n]) for i in starts if i + n <= len(found))
        for gram in grams:
            if gram in seen_grams:
                request = seen_grams[gram]
            else:
                request = seen_grams[gram] = entries.get(digest(key, ("name:" + gram).encode(), "sha256").hex())
            if request is not None:
                return request
        return None


def _refusal(request_id: str, kind: str) -> Decision:
    return Decision.refuse(
        f"erasure.{request_id}", rule=f"erasure request {request_id}: the item holds an erased {kind}", source="store:dp_suppression"
    )


def item_texts(item: object) -> list[str]:
    """Every string an item holds (any item type; nested lists, dicts and items too): what the check reads.

    Walks the item as it is, without a plain copy (:func:`crawler.itemfields.item_fields`
    costs more than the check itself): strings, numbers and dates are answered without
    asking ItemAdapter.
    """
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, PLAIN):
            pass
        elif isinstance(value, dict):
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(inner)
        elif ItemAdapter.is_item(value):
            for inner in ItemAdapter(value).values():
                walk(inner)

    walk(item)
    return found
