"""The tamper-evident ledger: a hash chain of everything done about objections.

Every notice added or withdrawn, every purge (started and completed, with its
receipt) and every consent change is one entry. An entry's hash is the sha256
of its own canonical JSON, which includes the previous entry's hash; the first
entry starts from :data:`GENESIS`. Changing, deleting, inserting or reordering
any entry breaks the chain from that entry on, and :func:`verify` names it.
The store also keeps the head (last sequence number and hash), so cutting
entries off the end is detected too.

The chain proves order to whoever trusts the store. For everyone else each
entry is also a leaf of an append-only Merkle tree with signed heads (see
crawler/transparency): the chain is kept, and checked, as before.

BIPA §15(a) asks for destruction on a published schedule; GDPR Art. 17 for
erasure without undue delay. The ledger is how a third party checks both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = hashlib.sha256(b"crawler-compliance ledger, genesis").hexdigest()

#: The kinds of entry; ``scrapy ledger show`` prints them as they are.
KINDS = ("notice.added", "notice.withdrawn", "purge.started", "purge.completed", "purge.completed-by-crawl", "consent.changed")


# One text per value: sorted keys, no spaces, UTF-8 kept as is (RFC 8785-like for our data).
# Defined in the standalone verifier, which must hash entries exactly as the store does.
from crawler.verify_receipt import canonical_json, entry_leaf_hash  # noqa: E402


def entry_hash(seq: int, at: str, kind: str, payload: Any, prev_hash: str) -> str:
    body = {"seq": seq, "at": at, "kind": kind, "payload": payload, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _parsed(payload: str) -> Any:
    """The payload as JSON, or its raw text when it is not JSON (an altered entry is shown, not a crash)."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    kind: str
    payload: str  # canonical JSON text, as stored
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "at": self.at, "kind": self.kind, "payload": _parsed(self.payload),
            "prev_hash": self.prev_hash, "hash": self.hash,
        }  # fmt: skip

    def leaf_hash(self) -> bytes:
        """Its leaf in the Merkle tree: SHA-256(0x00 || canonical JSON of :meth:`as_dict`) (RFC 9162 section 2.1.1)."""
        return entry_leaf_hash(self.as_dict())


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    message: str
    bad_seq: int | None = None


def verify(entries: Iterable[Entry], head: tuple[int, str] | None) -> Verdict:
    """Walk the chain in sequence order; the first entry that does not fit is named."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    last: Entry | None = None
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            what = "missing (deleted?)" if entry.seq > expected_seq else "out of order or duplicated (inserted?)"
            return Verdict(False, count, f"entry {expected_seq} is {what}: found entry {entry.seq} in its place", expected_seq)
        if entry.prev_hash != prev_hash:
            return Verdict(
                False, count,
                f"entry {entry.seq} ({entry.kind}) does not follow entry {entry.seq - 1}: its prev_hash "
                f"{entry.prev_hash[:16]}... should be {prev_hash[:16]}... (an entry was deleted, inserted or reordered)",
                entry.seq,
            )  # fmt: skip
        try:
            payload = json.loads(entry.payload)
        except ValueError:
            return Verdict(False, count, f"entry {entry.seq} ({entry.kind}): payload is not JSON (altered)", entry.seq)
        if canonical_json(payload) != entry.payload:
            return Verdict(False, count, f"entry {entry.seq} ({entry.kind}) was altered: its payload is not in canonical form", entry.seq)
        recomputed = entry_hash(entry.seq, entry.at, entry.kind, payload, entry.prev_hash)
        if recomputed != entry.hash:
            return Verdict(
                False, count,
                f"entry {entry.seq} ({entry.kind}) was altered: its content hashes to {recomputed[:16]}..., "
                f"the ledger says {entry.hash[:16]}...",
                entry.seq,
            )  # fmt: skip
        prev_hash = entry.hash
        expected_seq += 1
        last = entry
    if head is not None and head[0] < 0:
        return Verdict(False, count, f"the recorded head {head[1][:32]!r} is not a 'seq:hash' value (store_meta ledger_head was altered)",
                       last.seq if last is not None else 1)  # fmt: skip
    if head is not None:
        head_seq, head_hash = head
        if last is None or last.seq != head_seq or last.hash != head_hash:
            found = f"entry {last.seq}" if last is not None else "no entry"
            return Verdict(
                False, count,
                f"the ledger ends at {found} but its recorded head is entry {head_seq} ({head_hash[:16]}...): "
                "entries were cut off the end",
                (last.seq + 1) if last is not None else 1,
            )  # fmt: skip
    elif last is not None:
        return Verdict(False, count, "the ledger has entries but no recorded head (store_meta ledger_head deleted)", last.seq)
    return Verdict(True, count, f"intact: {count} entries, head {last.hash if last else GENESIS}")
