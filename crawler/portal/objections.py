"""Objections from site owners: the form, the book in the store, and their life cycle.

An objection is filed *pending*: at once, a pause notice goes into the
store's notice registry (the same registry, the same version bump, the same
ledger entry ``notice.added`` as ``scrapy notice add``), so every running
crawl stops collecting from its scope within its poll interval. The pause
demands stop but not delete, and carries ``expires_at``: crawls themselves
stop enforcing it then, whether or not anything else runs. Then:

- *verified* (the owner proved control) or *approved* (the operator, on a
  letter): the objection becomes an active notice (tag
  ``site-owner-objection``; stop and delete), the pause is withdrawn after
  it, the purge runs, and the receipt is kept with the objection;
- *rejected* (the operator, with a reason) or *expired* (never verified
  within ``COMPLIANCE_OBJECTION_PENDING_DAYS``): the pause is withdrawn.

Each outcome is an ``objection.<outcome>`` ledger entry, beside the
``notice.added`` / ``notice.withdrawn`` / ``purge.*`` entries it causes.

Two identifiers: ``id`` is a secret (the objection's page is
``/objections/<id>``, a capability only the filer holds); ``public_id`` names
the notices (``objection-<public_id>``), which show in refusals, logs and
the ledger. The contact e-mail and the statement stay in the objections
table (an append-only ledger could never forget them); the notice carries
the sender, the type and the scope, as ``scrapy notice add`` does.

Completion is resumable: the notice record is fixed when the objection is
claimed, ``add_notice`` is idempotent for the same record, and ``run_purge``
resumes an unfinished purge of the same notice; :meth:`ObjectionBook.sweep`
finishes any claimed objection without a receipt (a portal killed mid-purge).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crawler.compliance.domains import is_ip_literal, registered_domain
from crawler.compliance.ledger import Entry
from crawler.compliance.notices import (
    CEASE_AND_DESIST, NOTICE_TYPES, OBJECTION_TAG, PAUSE_TAG, CompiledScope, Notice, Scope, notice_type,
)  # fmt: skip
from crawler.compliance.store import Store, StoreError, utcnow

#: The kinds the form offers: Lumen's types, and cease-and-desist (Lumen files it as Other with that tag).
OBJECTION_KINDS: tuple[str, ...] = (CEASE_AND_DESIST, *NOTICE_TYPES)
#: Bounds of what a form may carry (a hostile client cannot fill the store).
MAX_SENDER = 200
MAX_EMAIL = 254  # RFC 5321's path limit
MAX_STATEMENT = 5000
MAX_PATTERNS = 20
MAX_PATTERN = 2000
DEFAULT_PENDING_DAYS = 14.0
#: Where the proof of control is looked for.
PROOF_FILE_PATH = "/.well-known/ethical-crawler-verification.txt"
PROOF_META_NAME = "ethical-crawler-verification"
STATUSES = ("pending", "verified", "approved", "rejected", "expired")

_EMAIL = re.compile(r"^[^@\s<>\"'`]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")

# The portal's own table, on the store's engine, created when first needed
# (the crawl's schema does not change; an old store gains it on first use).
metadata = sa.MetaData()
objections = sa.Table(
    "portal_objections",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("public_id", sa.String(32), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False, index=True),
    sa.Column("scope", sa.JSON, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("statement", sa.Text, nullable=False, default=""),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("client", sa.String(100), nullable=False, default=""),
    sa.Column("pause_notice_id", sa.String(128), nullable=False),
    sa.Column("notice_id", sa.String(128)),
    # The active notice's record, fixed when the objection is claimed (so a resumed completion files the same).
    sa.Column("notice_record", sa.JSON),
    sa.Column("decision", sa.JSON),
    sa.Column("attempts", sa.JSON, nullable=False, default=list),
    sa.Column("receipt", sa.JSON),
)


class ObjectionError(ValueError):
    """A request the book refuses (unknown id, wrong state); the message is for the person."""


# -- the form -----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectionForm:
    """A validated objection form: the scope as ``scrapy notice add`` would accept it, and who sends it."""

    scope: Scope
    domain: str  # the registered domain whose control is proved
    kind: str
    sender: str
    email: str
    statement: str


def parse_form(fields: Mapping[str, str]) -> tuple[ObjectionForm | None, list[str]]:
    """The form's fields -> an ObjectionForm, or every problem (one line each, naming the field).

    The scope goes through the notice model's own validators (the command
    line's): registered domains only, no public suffix, no wildcard, URL
    patterns that can match. The portal adds: one registered domain (the one
    whose control is proved), and a domain name, not an IP address.
    """
    errors: list[str] = []
    domain = str(fields.get("domain") or "").strip().lower()
    raw_patterns = [line.strip() for line in str(fields.get("url_patterns") or "").splitlines() if line.strip()]
    sender = str(fields.get("sender") or "").strip()
    email = str(fields.get("email") or "").strip()
    kind = str(fields.get("kind") or "").strip()
    statement = str(fields.get("statement") or "").strip()
    if not domain and not raw_patterns:
        errors.append("domain: give a registered domain, or URL patterns (one per line)")
    if len(domain) > 253:
        errors.append("domain: longer than 253 characters")
    if len(raw_patterns) > MAX_PATTERNS:
        errors.append(f"url_patterns: at most {MAX_PATTERNS} patterns (got {len(raw_patterns)})")
    if any(len(p) > MAX_PATTERN for p in raw_patterns):
        errors.append(f"url_patterns: a pattern is longer than {MAX_PATTERN} characters")
    if not sender or len(sender) > MAX_SENDER:
        errors.append(f"sender: who objects (a name or an organisation), 1 to {MAX_SENDER} characters")
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        errors.append("email: an e-mail address to reach you (name@example.org)")
    if kind not in OBJECTION_KINDS:
        errors.append(f"kind: one of {', '.join(OBJECTION_KINDS)}")
    if len(statement) > MAX_STATEMENT:
        errors.append(f"statement: at most {MAX_STATEMENT} characters (got {len(statement)})")
    if any(ord(c) < 0x20 and c not in "\r\n\t" for c in statement + sender):
        errors.append("statement: control characters are not accepted")
    if errors:
        return None, errors
    try:
        scope = Scope(domains=[domain] if domain else [], url_patterns=raw_patterns)
    except ValueError as exc:
        return None, [_first_error(exc)]
    domains = {*scope.domains, *(registered_domain(_host(p)) for p in scope.url_patterns)}
    if len(domains) != 1:
        return None, [f"url_patterns: every pattern must be under one registered domain, the one you prove control of (got {', '.join(sorted(domains))})"]
    [proved] = domains
    if is_ip_literal(proved.strip("[]")):
        return None, ["domain: an IP address has no site to prove control of; name the domain"]
    return ObjectionForm(scope, proved, kind, sender, email, statement), []


def _host(pattern: str) -> str:
    from urllib.parse import urlsplit

    return (urlsplit(pattern).hostname or "").lower()


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "scope"
        return f"{where}: {first['msg'].removeprefix('Value error, ')}"
    return str(exc)


# -- the book ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """What finishing an objection needs besides the store: filled in by the command that runs the portal."""

    machine: str
    policies: Any = None  # a PolicySet (platform domains); None: the scope names domains and patterns only
    notices_dir: Path | None = None  # where `notice add` writes notice files; None: the store only
    extra_locations: Callable[[], Sequence[Any]] = tuple  # purge's extra locations (crawler.notices_cli.extra_locations)


class ObjectionBook:
    """The objections in the store, and every change to them (each a transaction, each in the ledger)."""

    def __init__(self, store: Store, *, pending_days: float = DEFAULT_PENDING_DAYS, completion: Completion | None = None) -> None:
        self.store = store
        self.pending_days = pending_days
        self.completion = completion or Completion(machine="portal")
        metadata.create_all(store.engine, checkfirst=True)

    # -- reading --

    def get(self, objection_id: str) -> dict[str, Any] | None:
        if not objection_id or len(objection_id) > 64:
            return None
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(objections).where(objections.c.id == objection_id)).mappings().first()
        return _record(row) if row is not None else None

    def by_public_id(self, public_id: str) -> dict[str, Any] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(objections).where(objections.c.public_id == public_id)).mappings().first()
        return _record(row) if row is not None else None

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(objections).order_by(objections.c.created_at)
        if status:
            query = query.where(objections.c.status == status)
        with self.store.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings().all()]

    def verified_for(self, objection_id: str, domain: str) -> bool:
        """True when ``objection_id`` is an objection whose control of ``domain`` was proved.

        Only a proof counts: an objection the operator approved (a letter on
        paper) says nothing about who filed it in the portal.
        """
        record = self.get(objection_id)
        return record is not None and record["status"] == "verified" and record["domain"] == domain

    # -- filing --

    def file(self, form: ObjectionForm, client: str = "", now: datetime | None = None) -> dict[str, Any]:
        """Record a pending objection and its pause notice (registry bumped, ``notice.added`` in the ledger)."""
        now = now or utcnow()
        objection_id = secrets.token_urlsafe(24)
        public_id = secrets.token_hex(6)
        token = "ecv-" + secrets.token_urlsafe(24)
        expires = now + timedelta(days=self.pending_days)
        lumen_type, tags = notice_type(form.kind)
        pause = Notice(
            id=f"objection-{public_id}-pending", type=lumen_type,  # type: ignore[arg-type]
            title=f"Objection from the site owner of {form.domain}, pending proof of control",
            sender_name=form.sender, date_received=now.date(), tags=[*tags, OBJECTION_TAG, PAUSE_TAG],
            action_taken="Partial", scope=form.scope,
            demands={"stop_collection": True, "delete_existing": False},  # type: ignore[arg-type]
            effective_at=now, expires_at=expires,
        )  # fmt: skip
        record = pause.as_record()
        resolved = sorted(CompiledScope.build(form.scope, None).domains)
        with self.store.engine.begin() as conn:
            conn.execute(objections.insert().values(
                id=objection_id, public_id=public_id, status="pending", created_at=now, expires_at=expires, updated_at=now,
                domain=form.domain, scope=form.scope.model_dump(mode="json", exclude_none=True), kind=form.kind,
                sender=form.sender, email=form.email, statement=form.statement, token=token, client=client[:100],
                pause_notice_id=pause.id, attempts=[],
            ))  # fmt: skip
        # Its own transaction (the store's): the objection row first, so a
        # pause never exists without the objection that explains it.
        self.store.add_notice(record, resolved, "", f"portal (objection {public_id})")
        found = self.get(objection_id)
        assert found is not None
        return found

    def record_attempt(self, objection_id: str, attempt: Mapping[str, Any]) -> None:
        with self.store.engine.begin() as conn:
            row = conn.execute(sa.select(objections.c.attempts).where(objections.c.id == objection_id)).first()
            if row is None:
                raise ObjectionError("no such objection")
            attempts = [*(row[0] or []), dict(attempt)][-20:]
            conn.execute(objections.update().where(objections.c.id == objection_id).values(attempts=attempts, updated_at=utcnow()))

    # -- outcomes --

    def complete(self, objection_id: str, how: str, detail: Mapping[str, Any], operator: str) -> dict[str, Any]:
        """Verified (``how="verified"``, the proof in ``detail``) or approved by the operator: notice, purge, receipt."""
        if how not in ("verified", "approved"):
            raise ValueError(how)
        record = self.get(objection_id)
        if record is None:
            raise ObjectionError("no such objection")
        if record["status"] != "pending":
            if record["status"] in ("verified", "approved") and record["receipt"] is None:
                return self._finish(objection_id, operator)  # a claimed objection whose completion was cut short
            raise ObjectionError(f"this objection is {record['status']}, not pending")
        now = utcnow()
        lumen_type, tags = notice_type(record["kind"])
        notice = Notice(
            id=f"objection-{record['public_id']}", type=lumen_type,  # type: ignore[arg-type]
            title=f"Objection from the site owner of {record['domain']}",
            sender_name=record["sender"], date_received=record["created_at"].date(), tags=[*tags, OBJECTION_TAG],
            action_taken="Yes", scope=Scope.model_validate(record["scope"]),
            demands={"stop_collection": True, "delete_existing": True},  # type: ignore[arg-type]
            effective_at=now,
        )  # fmt: skip
        # Every ledger entry the completion appends comes after this one: the
        # receipt reads them from here (a range of the primary key), not the whole ledger.
        head = self.store.ledger_head()
        decision = {"outcome": how, "at": now.isoformat(), "operator": operator, **dict(detail),
                    "ledger_from": max(head[0], 0) if head else 0}  # fmt: skip
        with self.store.engine.begin() as conn:
            claimed = conn.execute(
                objections.update().where(objections.c.id == objection_id, objections.c.status == "pending").values(
                    status=how, notice_id=notice.id, notice_record=notice.as_record(), decision=decision, updated_at=now)
            ).rowcount  # fmt: skip
        if not claimed:
            raise ObjectionError("this objection was decided meanwhile; reload the page")
        return self._finish(objection_id, operator)

    def _finish(self, objection_id: str, operator: str) -> dict[str, Any]:
        from crawler.compliance.purge import PurgeRequest, run_purge

        record = self.get(objection_id)
        assert record is not None and record["notice_record"] is not None
        notice = Notice.model_validate(record["notice_record"])
        scope = CompiledScope.build(notice.scope, self.completion.policies)
        resolved = sorted(scope.domains)
        file = ""
        if self.completion.notices_dir is not None:
            file = str(self._write_notice_file(notice))
        # The notice first, then the pause lifted: never a moment without either.
        added, added_entry = self.store.add_notice(notice.as_record(), resolved, file, operator)
        self._end_pause(record, f"objection {record['status']}; replaced by notice {notice.id}", operator)
        entries: list[Entry] = [e for e in [added_entry] if e is not None]
        if not self._has_outcome_entry(record):
            entries.append(self.store.append_ledger(f"objection.{record['status']}", {
                "objection": record["public_id"], "notice_id": notice.id, "pause_notice_id": record["pause_notice_id"],
                "operator": operator, **{k: v for k, v in (record["decision"] or {}).items() if k in ("method", "url", "at", "reason")},
            }))  # fmt: skip
        request = PurgeRequest(
            scope, {**notice.scope.model_dump(mode="json", exclude_none=True), "resolved_domains": resolved},
            f"notice {notice.id}", operator, notice.id,
        )  # fmt: skip
        purge = run_purge(self.store, request, self.completion.machine, list(self.completion.extra_locations()))
        receipt = build_receipt(self.store, record, notice.as_record(), purge)
        with self.store.engine.begin() as conn:
            conn.execute(objections.update().where(objections.c.id == objection_id).values(receipt=receipt, updated_at=utcnow()))
        return receipt

    def _write_notice_file(self, notice: Notice) -> Path:
        from crawler.notices_cli import notice_yaml, write_atomically

        assert self.completion.notices_dir is not None
        path = self.completion.notices_dir / f"{notice.id}.yaml"
        if not path.exists():
            write_atomically(path, notice_yaml(notice))
        return path

    def _has_outcome_entry(self, record: Mapping[str, Any]) -> bool:
        return bool(_own_entries(self.store, record, {f"objection.{record['status']}": record["public_id"]}))

    def _end_pause(self, record: Mapping[str, Any], reason: str, operator: str) -> None:
        row = self.store.notice_row(record["pause_notice_id"])
        if row is None or row.data.get("status") == "withdrawn":
            return
        withdrawn = Notice.model_validate({**row.data, "status": "withdrawn", "withdrawn_at": utcnow().isoformat()})
        try:
            self.store.withdraw_notice(row.id, withdrawn.as_record(), operator, reason)
        except StoreError:
            pass  # withdrawn meanwhile (the ledger says so)

    def reject(self, objection_id: str, reason: str, operator: str) -> dict[str, Any]:
        reason = reason.strip()
        if not reason or len(reason) > 2000:
            raise ObjectionError("a rejection needs a reason (1 to 2000 characters)")
        return self._close(objection_id, "rejected", {"reason": reason}, operator)

    def _close(self, objection_id: str, outcome: str, detail: Mapping[str, Any], operator: str) -> dict[str, Any]:
        record = self.get(objection_id)
        if record is None:
            raise ObjectionError("no such objection")
        now = utcnow()
        decision = {"outcome": outcome, "at": now.isoformat(), "operator": operator, **dict(detail)}
        with self.store.engine.begin() as conn:
            claimed = conn.execute(
                objections.update().where(objections.c.id == objection_id, objections.c.status == "pending")
                .values(status=outcome, decision=decision, updated_at=now)
            ).rowcount  # fmt: skip
        if not claimed:
            raise ObjectionError(f"this objection is {record['status']}, not pending")
        why = detail.get("reason") or outcome
        self._end_pause(record, f"objection {outcome}: {why}", operator)
        self.store.append_ledger(f"objection.{outcome}", {
            "objection": record["public_id"], "pause_notice_id": record["pause_notice_id"], "operator": operator,
            "at": now.isoformat(), **dict(detail), "purged": False,
        })  # fmt: skip
        found = self.get(objection_id)
        assert found is not None
        return found

    def sweep(self, now: datetime | None = None) -> list[str]:
        """Expire pending objections past their time; finish claimed ones without a receipt. Returns what changed."""
        now = now or utcnow()
        changed = []
        for record in self.list("pending"):
            if record["expires_at"] <= now:
                try:
                    # The entry is written when the portal next looks; it names the moment the pause really ended.
                    self._close(record["id"], "expired", {"reason": f"not verified within {self.pending_days:g} days",
                                                          "expired_at": _aware(record["expires_at"]).isoformat()}, "portal")  # fmt: skip
                    changed.append(record["public_id"])
                except ObjectionError:
                    pass
        for status in ("verified", "approved"):
            for record in self.list(status):
                if record["receipt"] is None:
                    self._finish(record["id"], "portal (resumed)")
                    changed.append(record["public_id"])
        return changed


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    record = dict(row)
    for key in ("created_at", "expires_at", "updated_at"):
        record[key] = _aware(record[key])
    return record


def token_matches(found: str, expected: str) -> bool:
    """Constant time: the token is a secret until the owner publishes it."""
    return hmac.compare_digest(found.encode("utf-8", "replace"), expected.encode("utf-8"))


# -- receipts ---------------------------------------------------------------------------

RECEIPT_FORMAT = "ethical-crawler/objection-receipt/1"


def _own_entries(store: Store, record: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Entry]:
    """The ledger entries of ``wanted`` kinds naming this objection's notice or id (``kind -> id``), appended since its claim.

    Read from ``decision.ledger_from`` (the ledger's head when the objection
    was claimed), so the cost is the entries appended since, not the ledger's
    length; an objection claimed before that was recorded reads from the start.
    """
    import json

    after = (record.get("decision") or {}).get("ledger_from")
    found = []
    for entry in store.ledger_entries(after if isinstance(after, int) else 0, wanted):
        payload = json.loads(entry.payload)
        key = (payload.get("notice") or {}).get("id") if entry.kind == "notice.added" else payload.get("objection")
        if key == wanted[entry.kind]:
            found.append(entry)
    return found


def build_receipt(store: Store, record: Mapping[str, Any], notice: Mapping[str, Any], purge: Mapping[str, Any]) -> dict[str, Any]:
    """The receipt a site owner downloads: the objection, the notice, the purge's receipt, and the ledger entries that hold them.

    ``purge`` is what ``run_purge`` returned, kept whole: whatever it carries
    (today the ledger entry's seq and hash; with the transparency log, the
    inclusion proof and the signed head) is in the download unchanged.
    """
    wanted_seqs = set()
    entries = [e.as_dict() for e in _own_entries(store, record, {"notice.added": notice.get("id"), f"objection.{record['status']}": record["public_id"]})]
    if isinstance(purge.get("ledger_entry"), Mapping):
        seq = purge["ledger_entry"].get("seq")
        found = store.ledger_entry(seq) if isinstance(seq, int) else None
        if found is not None:
            wanted_seqs.add(seq)
            entries.append(found.as_dict())
    decision = dict(record.get("decision") or {})
    entries.sort(key=lambda e: e["seq"])
    purge = dict(purge)
    proofs: list[dict[str, Any]] = []
    if store.head_key is not None:
        # Every entry of the receipt (the notice, the objection's outcome, the
        # purge) proved against one signed head, so one consistency proof
        # later covers them all (crawler/verify_receipt.py).
        head = store.sign_tree_head()
        proofs = [store.ledger_receipt(e["seq"], head) for e in entries if e["seq"] not in wanted_seqs]
        if isinstance(purge.get("ledger_entry"), Mapping):
            purge["ledger_receipt"] = store.ledger_receipt(purge["ledger_entry"]["seq"], head)
    return {
        "format": RECEIPT_FORMAT,
        "objection": {
            "id": record["public_id"], "domain": record["domain"], "scope": record["scope"], "kind": record["kind"],
            "filed_at": _aware(record["created_at"]).isoformat(), "outcome": record["status"],
            "decided_at": decision.get("at"), "method": decision.get("method"), "proof_url": decision.get("url"),
        },
        "notice": dict(notice),
        "purge": purge,
        "ledger_entries": entries,
        "ledger_receipts": proofs,
    }  # fmt: skip


def today() -> date:
    return datetime.now(UTC).date()


def check_receipt(receipt: Any, entries_by_seq: Mapping[int, Entry]) -> list[tuple[bool, str]]:
    """Check a downloaded receipt against the store's ledger: one (ok, line) per check.

    Each ledger entry the receipt quotes must hash to its own hash and be the
    very entry the ledger holds at that number; the ``purge.completed`` entry
    must carry exactly the purge receipt shown (the counts included), and the
    ``notice.added`` entry the notice shown. (Whether the ledger itself is
    intact is ``scrapy ledger verify``'s other half.)
    """
    import json

    from crawler.compliance.ledger import canonical_json, entry_hash

    results: list[tuple[bool, str]] = []
    if not isinstance(receipt, dict) or receipt.get("format") != RECEIPT_FORMAT:
        return [(False, f"not an objection receipt (format {RECEIPT_FORMAT!r} expected)")]
    quoted = receipt.get("ledger_entries")
    if not isinstance(quoted, list) or not quoted:
        return [(False, "the receipt quotes no ledger entry")]
    kinds: dict[str, dict[str, Any]] = {}
    for item in quoted:
        try:
            seq, at, kind, payload, prev, digest = (item[k] for k in ("seq", "at", "kind", "payload", "prev_hash", "hash"))
        except (KeyError, TypeError):
            results.append((False, f"a quoted ledger entry lacks fields: {str(item)[:100]}"))
            continue
        own = entry_hash(seq, at, kind, payload, prev) == digest
        results.append((own, f"entry {seq} ({kind}) {'hashes to its hash' if own else 'does NOT hash to its hash (altered)'}"))
        stored = entries_by_seq.get(seq) if isinstance(seq, int) else None
        same = stored is not None and stored.hash == digest and stored.payload == canonical_json(payload)
        results.append((same, f"entry {seq} ({kind}) {'is in the ledger' if same else 'is NOT the ledger entry at that number'}"))
        kinds[kind] = payload if isinstance(payload, dict) else {}
    purge = receipt.get("purge") if isinstance(receipt.get("purge"), dict) else {}
    completed = kinds.get("purge.completed")
    if completed is None:
        results.append((False, "no purge.completed entry quoted"))
    else:
        agree = all(canonical_json(purge.get(k)) == canonical_json(v) for k, v in completed.items())
        results.append((agree, f"the purge receipt shown {'matches' if agree else 'does NOT match'} its ledger entry "
                               f"(counts {json.dumps(completed.get('counts'), sort_keys=True)})"))  # fmt: skip
    added = kinds.get("notice.added")
    notice = receipt.get("notice")
    if added is not None:
        agree = canonical_json(added.get("notice")) == canonical_json(notice)
        results.append((agree, f"the notice shown {'matches' if agree else 'does NOT match'} its notice.added entry"))
    return results
