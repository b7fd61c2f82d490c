"""The suppression list: erased identifiers as keyed hashes, checked before every item is stored.

An erasure the next crawl undoes is not one (GDPR Art. 17; FACTS §10). The
list holds ``HMAC-SHA-256(secret, "kind:normal form")`` of each identifier,
never the identifier: someone who reads the store (or a backup of it) cannot
test guesses without the per-installation secret, which is kept like the
signing key: a file under ``var/`` (``COMPLIANCE_ERASURE_KEY``), mode 0600,
refused when others may read it. What the list does show: each entry's kind,
and for names their number of words (the matcher needs both).

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

from crawler.compliance.decision import Decision
from crawler.compliance.store import Store, store_meta, utcnow
from crawler.dataprotection.identifiers import _WORD, Identifier, Wanted, candidates, fold
from crawler.dataprotection.tables import bump_meta_counter, ensure_schema, meta_value, suppression

KEY_FORMAT = "ethical-crawler-erasure-key/1"
VERSION_KEY = "suppression_version"
FINGERPRINT_KEY = "suppression_key_id"
#: How many n-grams' answers a crawl keeps (then starts again).
SEEN_LIMIT = 200_000


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
            if conn.execute(sa.select(suppression.c.hash).where(suppression.c.hash == digest)).first() is None:
                conn.execute(suppression.insert().values(hash=digest, kind=identifier.kind, words=identifier.words,
                                                         request_id=request_id, created_at=now))  # fmt: skip
                added += 1
        bump_meta_counter(conn, VERSION_KEY)
    return added


def list_version(store: Store) -> int:
    ensure_schema(store)
    return int(meta_value(store, VERSION_KEY) or 0)


@dataclass
class Suppressor:
    """The list as a crawl holds it: hashes to request ids, and which candidates to extract."""

    key: bytes | None
    entries: dict[str, str]
    wanted: Wanted
    version: int = 0
    #: Why nothing can be matched although the list is not empty (refuse everything).
    broken: str = ""
    _names: frozenset[int] = field(default=frozenset())
    _seen: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Store, key_path: Path, region: str | None) -> Suppressor:
        ensure_schema(store)
        version = list_version(store)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(suppression.c.hash, suppression.c.kind, suppression.c.words, suppression.c.request_id)).all()
        entries = {r.hash: r.request_id for r in rows}
        wanted = Wanted(frozenset(r.kind for r in rows), frozenset(int(r.words) for r in rows if r.kind == "name"), region)
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
        return cls(key, entries, wanted, version, _names=wanted.name_lengths)

    def __len__(self) -> int:
        return len(self.entries)

    def check(self, url: str, texts: Iterable[str]) -> Decision | None:
        """A refusal when the item holds a suppressed identifier (or the list cannot be checked); else None."""
        if not self.entries:
            return None
        if self.key is None:
            reason, _, detail = self.broken.partition(": ")
            return Decision.refuse(reason, rule="the suppression list cannot be checked: every item is refused", detail=detail)
        key, entries = self.key, self.entries
        texts = [t for t in texts if t]
        other = Wanted(self.wanted.kinds - {"name"}, frozenset(), self.wanted.region)
        for candidate in candidates(url, texts, other):
            request = entries.get(keyed_hash(key, candidate.key))
            if request is not None:
                return _refusal(request, candidate.kind)
        if self._names:
            # The hot path: word n-grams of every text, each distinct one hashed once. Common
            # n-grams recur from page to page, so their answers are kept (bounded; the list's
            # answers only: a new list version builds a new Suppressor).
            digest, seen = hmac.digest, self._seen
            grams: set[str] = set()
            for text in texts:
                words = _WORD.findall(fold(text))
                for n in self._names:
                    grams.update(" ".join(words[start : start + n]) for start in range(len(words) - n + 1))
            if len(seen) > SEEN_LIMIT:
                seen.clear()
            for gram in grams:
                if gram in seen:
                    request = seen[gram]
                else:
                    request = seen[gram] = entries.get(digest(key, ("name:" + gram).encode(), "sha256").hex())
                if request is not None:
                    return _refusal(request, "name")
        return None


def _refusal(request_id: str, kind: str) -> Decision:
    return Decision.refuse(
        f"erasure.{request_id}", rule=f"erasure request {request_id}: the item holds an erased {kind}", source="store:dp_suppression"
    )


def item_texts(fields: dict[str, object]) -> list[str]:
    """Every string an item holds (nested lists and dicts too): what the check reads."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(inner)

    walk(fields)
    return found

