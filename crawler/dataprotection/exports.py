"""Telling the recipients: export manifests, deletion requests in the outbox, and their delivery.

GDPR Art. 19: an erasure is communicated to each recipient the data were
disclosed to. That needs a record of what went where, so every export writes
a manifest (:func:`record_export`): which items (store id, URL, content hash)
went to which destination, when, for which purposes. A purge of any kind
(notice, retention, erasure, plain ``scrapy purge``) then lists in its
receipt every export that held an item in its scope (:func:`held_by`) and
writes one deletion request per destination under ``var/outbox/``
(:func:`write_deletion_requests`). ``scrapy exports notify`` prints them and
POSTs each to its destination's webhook (:func:`deliver`): a delivered
request moves to ``outbox/sent/``; a failed one stays, with its attempts
recorded in the file, and is tried again next time: never dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crawler.compliance.domains import filed_under
from crawler.compliance.store import Store, utcnow
from crawler.dataprotection.tables import ensure_schema, export_items, exports

REQUEST_FORMAT = "ethical-crawler-deletion-request/1"
CHUNK = 1000


def content_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the record as exported (canonical JSON): lets a recipient find the exact copy."""
    text = json.dumps(dict(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ManifestWriter:
    """Rows of one export's manifest, written in chunks as records are exported."""

    store: Store
    export_id: str
    pending: list[dict[str, Any]]
    count: int = 0

    def add(self, url: str, record: Mapping[str, Any], item_id: int | None = None, item_key: str = "") -> None:
        _, domain = filed_under(url) if url else ("", "")
        self.pending.append({"export_id": self.export_id, "item_id": item_id, "item_key": item_key, "url": url,
                             "domain": domain, "content_hash": content_hash(record)})  # fmt: skip
        self.count += 1
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.store.engine.begin() as conn:
            conn.execute(export_items.insert(), self.pending)
            conn.execute(exports.update().where(exports.c.id == self.export_id).values(count=exports.c.count + len(self.pending)))
        self.pending = []


def start_export(store: Store, destination: str, kind: str, location: str, purposes: Iterable[str],
                 operator: str = "", crawl_id: str | None = None) -> ManifestWriter:  # fmt: skip
    """Record an export (before its first record leaves) and return the writer of its manifest."""
    ensure_schema(store)
    export_id = "ex-" + uuid.uuid4().hex[:16]
    with store.engine.begin() as conn:
        conn.execute(exports.insert().values(id=export_id, destination=destination, kind=kind, location=location, at=utcnow(),
                                             purposes=sorted(set(purposes)), operator=operator, crawl_id=crawl_id, count=0))  # fmt: skip
    return ManifestWriter(store, export_id, [])


def list_exports(store: Store) -> list[dict[str, Any]]:
    ensure_schema(store)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(exports).order_by(exports.c.at)).mappings().all()
    return [_export_record(r) for r in rows]


def _export_record(row: Mapping[str, Any]) -> dict[str, Any]:
    at = row["at"]
    if at.tzinfo is None:
        from datetime import UTC

        at = at.replace(tzinfo=UTC)
    return {"id": row["id"], "destination": row["destination"], "kind": row["kind"], "location": row["location"],
            "at": at.isoformat(timespec="seconds"), "purposes": list(row["purposes"] or []), "items": int(row["count"]),
            "crawl_id": row["crawl_id"], "operator": row["operator"]}  # fmt: skip


def items_with_ids(store: Store, domain: str | None = None, batch: int = 1000) -> Iterator[tuple[int, dict[str, Any]]]:
    """(store id, the item as ``scrapy items export`` writes it), oldest first."""
    from crawler.compliance.store import domain_filter, item_record, items

    last_id = 0
    while True:
        query = sa.select(items).where(items.c.id > last_id).order_by(items.c.id).limit(batch)
        if domain:
            query = query.where(domain_filter(items, domain))
        with store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        if not rows:
            return
        for row in rows:
            last_id = row["id"]
            yield int(row["id"]), item_record(row)


# -- which exports held what a purge covers ---------------------------------------------------


def _held_rows(store: Store, scope: Any) -> Iterator[Mapping[str, Any]]:
    """Manifest rows (joined with their export) whose URL is in the purge's scope."""
    columns = [export_items.c.export_id, export_items.c.item_id, export_items.c.url, export_items.c.content_hash]
    urls = getattr(scope, "urls", None)
    with store.engine.connect() as conn:
        if urls is not None:
            ordered = sorted(urls)
            for start in range(0, len(ordered), CHUNK):
                chunk = ordered[start : start + CHUNK]
                yield from conn.execute(sa.select(*columns).where(export_items.c.url.in_(chunk))).mappings()
            return
        domains = sorted(scope.domains)
        if domains:
            yield from conn.execute(sa.select(*columns).where(export_items.c.domain.in_(domains))).mappings()
        candidates = sorted(scope.pattern_domains)
        if candidates:
            for row in conn.execute(sa.select(*columns).where(export_items.c.domain.in_(candidates))).mappings():
                if scope.match(row["url"]) is not None:
                    yield row


def held_by(store: Store, scope: Any) -> dict[str, dict[str, Any]]:
    """{export id: the export's record and the in-scope items it held}, for a purge's receipt."""
    ensure_schema(store)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in _held_rows(store, scope):
        found.setdefault(row["export_id"], []).append(
            {"id": row["item_id"], "url": row["url"], "content_hash": row["content_hash"]}
        )
    if not found:
        return {}
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(exports).where(exports.c.id.in_(sorted(found)))).mappings().all()
    return {r["id"]: {**_export_record(r), "held": found[r["id"]]} for r in rows}


def receipt_summary(held: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What the receipt (and so the ledger) says about exports: ids, destinations, counts; no URLs."""
    return [{"export_id": e["id"], "destination": e["destination"], "at": e["at"], "purposes": e["purposes"],
             "items": len(e["held"])} for e in held.values()]  # fmt: skip


def _slug(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:40]
    return f"{cleaned or 'destination'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def write_deletion_requests(outbox: Path, held: Mapping[str, dict[str, Any]], receipt: Mapping[str, Any],
                            deadline_days: int) -> list[str]:  # fmt: skip
    """One JSON deletion request per destination under ``outbox``; their paths.

    Named after the purge and the destination, written atomically: a purge
    resumed after a crash rewrites the same file rather than adding one.
    """
    from crawler.compliance.files import replaced_atomically

    by_destination: dict[str, list[dict[str, Any]]] = {}
    for export in held.values():
        by_destination.setdefault(export["destination"], []).append(export)
    written = []
    created = utcnow()
    for destination, held_exports in sorted(by_destination.items()):
        seen: dict[tuple[Any, str], dict[str, Any]] = {}
        for export in held_exports:
            for item in export["held"]:
                seen.setdefault((item["id"], item["url"]), {**item, "export_id": export["id"]})
        request = {
            "format": REQUEST_FORMAT,
            "request_id": f"{receipt['purge_id']}:{_slug(destination)}",
            "destination": destination,
            "created_at": created.isoformat(timespec="seconds"),
            "deadline": (created + timedelta(days=deadline_days)).isoformat(timespec="seconds"),
            "reason": receipt.get("reason"),
            "notice_id": receipt.get("notice_id"),
            "erasure_request_id": (receipt.get("scope") or {}).get("erasure"),
            "purge_id": receipt["purge_id"],
            "ledger_entry": receipt.get("ledger_entry"),
            "exports": [{"export_id": e["id"], "at": e["at"], "purposes": e["purposes"], "location": e["location"]} for e in held_exports],
            "items": sorted(seen.values(), key=lambda i: (i["url"], str(i["id"]))),
        }
        outbox.mkdir(parents=True, exist_ok=True)
        path = outbox / f"{receipt['purge_id']}-{_slug(destination)}.json"
        with replaced_atomically(path) as handle:
            handle.write(json.dumps(request, indent=2, sort_keys=False, default=str) + "\n")
        written.append(str(path))
    return written


# -- delivery ------------------------------------------------------------------------------


def pending_requests(outbox: Path) -> list[Path]:
    return sorted(p for p in outbox.glob("*.json") if p.is_file()) if outbox.is_dir() else []


def _post(url: str, body: bytes, timeout: float) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an http(s) URL the operator configured
            return int(response.status)
    except urllib.error.HTTPError as exc:  # an answer, just not a success
        return int(exc.code)


def deliver(path: Path, webhook: str | None, *, attempts: int = 3, pause: float = 0.5, timeout: float = 10.0,
            post: Callable[[str, bytes, float], int] = _post) -> tuple[str, str]:  # fmt: skip
    """Try to deliver one request: ("sent" | "failed" | "no-webhook", detail).

    Each attempt is recorded in the request file (``delivery``) before the
    next: a request whose delivery failed stays in the outbox with its history.
    """
    from crawler.compliance.files import replaced_atomically

    request = json.loads(path.read_text(encoding="utf-8"))
    if not webhook:
        return "no-webhook", "no webhook configured for this destination (COMPLIANCE_EXPORT_WEBHOOKS): deliver it by hand"
    history = request.setdefault("delivery", [])
    body = json.dumps({k: v for k, v in request.items() if k != "delivery"}, sort_keys=False, default=str).encode()
    detail = ""
    for attempt in range(attempts):
        try:
            status = post(webhook, body, timeout)
            ok = 200 <= status < 300
            detail = f"HTTP {status}"
        except Exception as exc:  # noqa: BLE001 - any failure is recorded and retried, never raised past here
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        history.append({"at": utcnow().isoformat(timespec="seconds"), "webhook": webhook, "result": detail, "ok": ok})
        with replaced_atomically(path) as handle:
            handle.write(json.dumps(request, indent=2, default=str) + "\n")
        if ok:
            sent = path.parent / "sent"
            sent.mkdir(exist_ok=True)
            path.replace(sent / path.name)
            return "sent", detail
        if attempt + 1 < attempts:
            time.sleep(pause * (2**attempt))
    return "failed", detail
