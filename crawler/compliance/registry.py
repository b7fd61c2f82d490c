"""The notice registry as crawls must enforce it: each registry row checked against the ledger.

The reconciliation is pure: :func:`notice_rows` takes the registry's rows
and the ledger's notice entries, however they were read. The store reads
them through SQLAlchemy; :func:`read_sqlite_registry` reads a SQLite store
with the standard library alone, so ``scrapy notice list`` does not pay
for importing SQLAlchemy on every run (issue #13: a command starts at most
1.3x as slowly as ``scrapy version``). Nothing here imports SQLAlchemy.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from crawler.compliance.ledger import canonical_json, entry_hash


class StoreError(RuntimeError):
    """The store URL is unusable; the message says which setting to fix."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class LedgerRow(NamedTuple):
    """A ledger entry as stored (``payload`` is its JSON text)."""

    seq: int
    at: str
    kind: str
    payload: str
    prev_hash: str
    hash: str


#: The store's schema: the store creates and migrates to it (``crawler.compliance.store``); the
#: standard-library read below reads only a store already at it.
SCHEMA_VERSION = 5

#: The ledger kinds that make or end a notice.
NOTICE_KINDS = ("notice.added", "notice.withdrawn")


@dataclass(frozen=True)
class NoticeRow:
    """A notice of the registry as crawls must enforce it.

    The ledger is the source of truth for a notice's state: when the
    registry row disagrees with it (status, scope, dates, or the row has no
    ledger entry, or the ledger entry was altered), ``disagreements`` says
    how, and ``data`` is the fail-closed reading: active, from the earliest
    effective time either gives, over the union of both scopes.
    """

    id: str
    data: dict[str, Any]
    resolved_domains: list[str]
    file: str
    recorded_at: datetime
    disagreements: tuple[str, ...] = ()



@dataclass
class _LedgerNotice:
    """A notice as the ledger records it (``record`` None: only a withdrawal, of a notice never in the registry)."""

    record: dict[str, Any] | None
    resolved_domains: list[str]
    seq: int | None
    at: str | None
    withdrawn_at: str | None
    intact: bool  # every entry read for it hashes to its recorded hash

    def expected(self) -> dict[str, Any] | None:
        if self.record is None:
            return None
        if self.withdrawn_at is None:
            return self.record
        return {**self.record, "status": "withdrawn", "withdrawn_at": self.withdrawn_at}


#: How far a row's recorded_at may be from its ledger entry's time (both are taken in one transaction).
_RECORDED_SLACK = 5.0


def _aware(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _reconciled(row: Mapping[str, Any], state: _LedgerNotice | None) -> NoticeRow:
    """The row as crawls must enforce it: as stored when it agrees with the ledger, else active over both scopes."""
    data = row["data"] if isinstance(row["data"], dict) else {}
    resolved = list(row["resolved_domains"] or [])
    recorded_at = row["recorded_at"]
    expected = state.expected() if state is not None else None
    found: list[str] = []
    if expected is None:
        found.append("the registry holds it, but the ledger has no notice.added entry for it")
    else:
        if not state.intact:  # type: ignore[union-attr]
            found.append("its ledger entry was altered (`scrapy ledger verify` names it)")
        status = "withdrawn" if state.withdrawn_at is not None else "active"  # type: ignore[union-attr]
        if row["status"] != status:
            found.append(f"status is {row['status']!r} in the registry, {status!r} in the ledger")
        for key in sorted(set(data) | set(expected)):
            if canonical_json(data.get(key)) != canonical_json(expected.get(key)):
                found.append(f"{key} is {_short(data.get(key))} in the registry, {_short(expected.get(key))} in the ledger")
        effective = _aware(row["effective_at"])
        if effective is None or effective != _aware(expected.get("effective_at")):
            found.append(f"effective_at column is {_short(row['effective_at'])}, {_short(expected.get('effective_at'))} in the ledger")
        if sorted(resolved) != sorted(state.resolved_domains):  # type: ignore[union-attr]
            found.append(f"resolved_domains are {_short(resolved)} in the registry, {_short(state.resolved_domains)} in the ledger")  # type: ignore[union-attr]
        entered = _aware(state.at)  # type: ignore[union-attr]
        recorded = _aware(recorded_at)
        if entered is None or recorded is None or abs((recorded - entered).total_seconds()) > _RECORDED_SLACK:
            found.append(f"recorded_at is {_short(recorded_at)} in the registry, the ledger entry is of {state.at}")  # type: ignore[union-attr]
    if not found:
        return NoticeRow(row["id"], data, resolved, row["file"], recorded_at)
    records = [r for r in (data, expected) if isinstance(r, dict)]
    resolved_all = sorted({*resolved, *(state.resolved_domains if state is not None else [])})
    earliest = min(filter(None, [_aware(recorded_at), _aware(state.at) if state is not None else None]), default=utcnow())
    return NoticeRow(row["id"], _widest(row["id"], records), resolved_all, row["file"], earliest, tuple(found))


def _from_ledger_only(notice_id: str, state: _LedgerNotice) -> NoticeRow:
    """A notice the ledger recorded whose registry row is gone: in force all the same, over its ledger scope."""
    record = state.record or {}
    at = _aware(state.at) or utcnow()
    return NoticeRow(notice_id, _widest(notice_id, [record]), list(state.resolved_domains), "", at,
                     ("the ledger recorded it (notice.added), but its registry row is missing",))  # fmt: skip


def _widest(notice_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One active record covering every scope in ``records``, effective from the earliest time any of them gives."""
    base = dict(records[-1]) if records else {}
    domains: list[str] = []
    patterns: list[str] = []
    platform = None
    for record in records:
        scope = record.get("scope") if isinstance(record.get("scope"), dict) else {}
        domains += [d for d in scope.get("domains") or [] if isinstance(d, str) and d not in domains]
        patterns += [p for p in scope.get("url_patterns") or [] if isinstance(p, str) and p not in patterns]
        platform = platform or scope.get("platform")
    times = [t for t in (_aware(r.get("effective_at")) for r in records) if t is not None]
    base.update({
        "id": notice_id, "status": "active",
        "scope": {k: v for k, v in (("platform", platform), ("domains", domains), ("url_patterns", patterns)) if v},
        # Collection stops; what to delete stays as the ledger recorded it (a purge is not undone).
        "demands": {**(base.get("demands") if isinstance(base.get("demands"), dict) else {}), "stop_collection": True},
        "effective_at": min(times).isoformat() if times else datetime(1970, 1, 1, tzinfo=UTC).isoformat(),
    })  # fmt: skip
    base.pop("withdrawn_at", None)
    return base


def _short(value: Any) -> str:
    text = value.isoformat() if isinstance(value, datetime) else canonical_json(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def ledger_notice_states(entries: Iterable[LedgerRow]) -> dict[str, _LedgerNotice]:
    """Each notice's state as the ledger holds it: its last ``notice.added`` and any ``notice.withdrawn`` after it.

    ``entries``: the ledger's entries of :data:`NOTICE_KINDS`, in order.
    """
    states: dict[str, _LedgerNotice] = {}
    for entry in entries:
        try:
            payload = json.loads(entry.payload)
            intact = entry_hash(entry.seq, entry.at, entry.kind, payload, entry.prev_hash) == entry.hash
        except ValueError:
            payload, intact = {}, False
        if not isinstance(payload, dict):
            payload, intact = {}, False
        if entry.kind == "notice.added":
            record = payload.get("notice")
            notice_id = record.get("id") if isinstance(record, dict) else None
            if not isinstance(notice_id, str):
                continue
            states[notice_id] = _LedgerNotice(
                record, list(payload.get("resolved_domains") or []), entry.seq, entry.at, None, intact
            )
        else:
            notice_id = payload.get("notice_id")
            if not isinstance(notice_id, str):
                continue
            state = states.setdefault(notice_id, _LedgerNotice(None, [], None, None, None, True))
            state.withdrawn_at = str(payload.get("withdrawn_at") or "")
            state.intact = state.intact and intact
    return states


def notice_rows(rows: Iterable[Mapping[str, Any]], entries: Iterable[LedgerRow]) -> list[NoticeRow]:
    """The registry, each row (in recorded order) checked against the ledger (see :class:`NoticeRow`)."""
    in_ledger = ledger_notice_states(entries)
    found = [_reconciled(r, in_ledger.pop(r["id"], None)) for r in rows]
    # Filed through the ledger, gone from the registry: still in force (fail closed).
    for notice_id, state in in_ledger.items():
        if state.record is not None:
            found.append(_from_ledger_only(notice_id, state))
    return found


# -- the standard-library read of a SQLite store --------------------------------

_NOTICE_COLUMNS = ("id", "status", "effective_at", "recorded_at", "updated_at", "data", "resolved_domains", "file")


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` store URL, or None for any other URL (a driver, options, another engine)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or url.startswith("sqlite:////:memory:"):
        return None
    path = url[len(prefix):]
    return Path(path) if path and path != ":memory:" else None


def read_sqlite_registry(url: str) -> list[NoticeRow] | None:
    """The registry of a SQLite store read with :mod:`sqlite3` alone, or None when the caller must open the store.

    None whenever this read cannot stand for the store's own: the URL is
    not a plain SQLite file, the file does not exist (the store reports
    that, or creates it, as it does for every command), its schema is not
    :data:`SCHEMA_VERSION` (the store migrates it), or the database cannot be
    read (the store's own error says why). The file is opened read-only:
    this path never creates or changes anything.
    """
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        found = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
        if found is None or str(found[0]) != str(SCHEMA_VERSION):
            return None
        rows = [
            _sqlite_notice(dict(zip(_NOTICE_COLUMNS, row, strict=True)))
            for row in conn.execute(f"SELECT {', '.join(_NOTICE_COLUMNS)} FROM notices ORDER BY recorded_at, id")
        ]
        entries = [
            LedgerRow(*row)
            for row in conn.execute(
                "SELECT seq, at, kind, payload, prev_hash, hash FROM ledger WHERE kind IN (?, ?) ORDER BY seq", NOTICE_KINDS
            )
        ]
    except (sqlite3.Error, ValueError):
        return None
    finally:
        conn.close()
    return notice_rows(rows, entries)


def _sqlite_notice(row: dict[str, Any]) -> dict[str, Any]:
    """A notices row as SQLAlchemy would give it: JSON columns parsed, times as (naive) datetimes."""
    for name in ("data", "resolved_domains"):
        row[name] = json.loads(row[name]) if isinstance(row[name], str) else row[name]
    for name in ("effective_at", "recorded_at", "updated_at"):
        if isinstance(row[name], str):
            row[name] = datetime.fromisoformat(row[name])
    return row
