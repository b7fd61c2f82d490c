"""``scrapy notice add|list|show|withdraw``: the cease-and-desist registry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand
from crawler.notices_cli import (
    add_scope_options, extra_locations, notice_yaml, operator_of, print_json, purge_request, scope_from_options,
    write_atomically, _first_error,
)  # fmt: skip

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from crawler.compliance.ledger import Entry
    from crawler.compliance.notices import Notice

ACTIONS = ("add", "list", "show", "withdraw")


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return (
            "add (--domain D | --platform P | --url-pattern PAT ...) --sender S --received YYYY-MM-DD "
            "[--type T] [--id ID] | list | show ID | withdraw ID [--reason TEXT]"
        )

    def short_desc(self) -> str:
        return "File, list, show and withdraw cease-and-desist and takedown notices"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        add_scope_options(parser)
        parser.add_argument("--sender", help="add: who sent the notice (Lumen sender_name)")
        parser.add_argument("--received", help="add: the day it was received, YYYY-MM-DD")
        parser.add_argument("--type", default="cease-and-desist",
                            help="add: a Lumen type (DMCA, CourtOrder, DataProtection, ..., Other) or cease-and-desist (the default: Other with that tag)")  # fmt: skip
        parser.add_argument("--id", dest="notice_id", help="add: the notice id (default: RECEIVED-SCOPE)")
        parser.add_argument("--title", default="", help="add: a title")
        parser.add_argument("--principal", default="", help="add: on whose behalf (Lumen principal_name)")
        parser.add_argument("--sent", help="add: the day it was sent, YYYY-MM-DD")
        parser.add_argument("--jurisdiction", action="append", default=[], help="add: repeatable")
        parser.add_argument("--keep-existing", action="store_true",
                            help="add: the notice demands only that collection stop (no purge)")  # fmt: skip
        parser.add_argument("--reason", default="", help="withdraw: why")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if not args or args[0] not in ACTIONS:
            raise UsageError(f"expected one of: {', '.join(ACTIONS)}", print_help=True)
        action = args[0]
        if action == "add":
            return self.add(opts)
        if action == "list":
            return self.list()
        if len(args) != 2:
            raise UsageError(f"{action} needs a notice id", print_help=False)
        return self.show(args[1]) if action == "show" else self.withdraw(args[1], opts)

    # -- add -------------------------------------------------------------------------

    def notices_dir(self) -> Path:
        from crawler.config import notices_dir

        assert self.settings is not None
        return notices_dir(self.settings)

    def add(self, opts: argparse.Namespace) -> int:
        from crawler.compliance.notices import notice_type
        from crawler.config import machine_name

        assert self.settings is not None
        if not opts.sender:
            raise CommandFailed("--sender is required (who sent the notice)")
        received = _day("--received", opts.received, required=True)
        sent = _day("--sent", opts.sent)
        try:
            lumen_type, tags = notice_type(opts.type)
        except ValueError as exc:
            raise CommandFailed(f"--type: {exc}") from None
        policies = self.policies_to_stop()
        scope = scope_from_options(opts, policies)
        store = self.open_signing_store()
        directory = self.notices_dir()
        operator = operator_of(opts, self.settings)
        fields: dict[str, Any] = {
            "type": lumen_type, "title": opts.title or f"{opts.type} from {opts.sender}", "sender_name": opts.sender,
            "principal_name": opts.principal, "date_sent": sent, "date_received": received,
            "jurisdictions": opts.jurisdiction, "tags": tags, "action_taken": "Yes", "scope": scope,
            "demands": {"stop_collection": True, "delete_existing": not opts.keep_existing},
        }  # fmt: skip
        notice, resumed = self._resolve(opts.notice_id, fields, scope, received, store, directory)
        record = notice.as_record()
        path = directory / f"{notice.id}.yaml"
        if not resumed or not path.exists():
            write_atomically(path, notice_yaml(notice))
        request = purge_request(scope, policies, f"notice {notice.id}", operator, notice.id)
        added, entry = store.add_notice(record, request.scope_record["resolved_domains"], str(path), operator)
        result: dict[str, Any] = {
            "notice": record,
            "file": str(path),
            "recorded": "new" if added else "already recorded (this run resumes it)",
            "registry_version": store.registry_version(),
        }
        if entry is not None:
            result["ledger_entry"] = {"seq": entry.seq, "hash": entry.hash}
        if notice.demands.delete_existing:
            result["purge"] = self.purge_everywhere(store, request, opts, machine_name(self.settings), extra_locations(self.settings))
        else:
            result["purge"] = None
        # Both receipts proved against one signed head (the latest), so one
        # consistency proof later covers both (crawler/verify_receipt.py).
        head = store.sign_tree_head()
        if entry is not None:
            result["ledger_receipt"] = store.ledger_receipt(entry.seq, head)
        if result["purge"] is not None:
            result["purge"]["ledger_receipt"] = store.ledger_receipt(result["purge"]["ledger_entry"]["seq"], head)
        print_json(result)
        return 0

    def _resolve(self, given_id: str | None, fields: dict[str, Any], scope: Any, received: date, store: Any, directory: Any) -> tuple[Notice, bool]:
        """The notice to record, and whether it was already filed (a re-run of the same command resumes it)."""
        from crawler.compliance.notices import NOTICE_ID_RE, Notice, load_notice_files

        existing = {r.id: r for r in store.notice_rows()}
        files = {n.notice.id: n.notice for n in load_notice_files(directory.parent)[0]}

        def same(other: dict[str, Any]) -> bool:
            # A re-run of the same command: same content, and still in force. A
            # withdrawn notice is never "the same": filing again is a new notice.
            keys = ("type", "sender_name", "date_received", "scope", "demands")
            mine = Notice(id="x", effective_at=datetime.now(UTC), **fields).as_record()
            return other.get("status", "active") != "withdrawn" and all(other.get(k) == mine.get(k) for k in keys)

        if given_id:
            if not re.match(NOTICE_ID_RE, given_id):
                raise CommandFailed(f"--id {given_id!r}: use letters, digits, '.', '_' or '-' (at most 128)")
            candidates = [given_id]
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", (scope.platform or (scope.domains or [""])[0] or scope.url_patterns[0].split("/")[2]).lower()).strip("-")
            base = f"{received.isoformat()}-{slug}"
            candidates = [base, *(f"{base}-{n}" for n in range(2, 100))]
        for candidate in candidates:
            if candidate in existing:
                if same(existing[candidate].data):
                    return Notice.model_validate(existing[candidate].data), True
                if given_id:
                    withdrawn = existing[candidate].data.get("status") == "withdrawn"
                    raise CommandFailed(f"notice {given_id!r} is already recorded"
                                        f"{' (and withdrawn)' if withdrawn else ' with other content'}; choose another --id")  # fmt: skip
                continue
            if candidate in files:
                if same(files[candidate].as_record()):
                    return files[candidate], True
                if given_id:
                    raise CommandFailed(f"{directory / (candidate + '.yaml')} already holds another notice; choose another --id")
                continue
            try:
                return Notice(id=candidate, effective_at=datetime.now(UTC), **fields), False
            except ValueError as exc:
                raise CommandFailed(f"notice: {_first_error(exc)}") from None
        raise CommandFailed("could not find a free notice id; give one with --id")

    # -- list, show, withdraw ---------------------------------------------------------

    def _all(self) -> dict[str, tuple[Notice, str]]:
        from crawler.compliance.notices import FILED_DOMAINS, Notice, load_notice_files

        assert self.settings is not None
        found: dict[str, tuple[Notice, str]] = {}
        rows = self.notice_rows()
        # The domains of each notice the ledger records as filed, unaltered, were checked against
        # the suffix list when it was filed: listing it again need not load the list (its own
        # file only: another file naming the same domain is checked in full).
        filed = {row.id: frozenset(_scope_domains(row.data)) for row in rows if not row.disagreements}
        files, errors = load_notice_files(self.notices_dir().parent, filed_domains=filed)
        for loaded in files:
            found[loaded.notice.id] = (loaded.notice, "file only (not in the store)")
        for row in rows:
            if row.disagreements:
                print(f"warning: notice {row.id}: the registry disagrees with the ledger ({'; '.join(row.disagreements)}); "
                      "shown and enforced as active; see `scrapy ledger verify`")  # fmt: skip
            found[row.id] = (Notice.model_validate(row.data, context={FILED_DOMAINS: filed.get(row.id, frozenset())}), "store")
        for error in errors:
            print(f"warning: {error}")
        return found

    def list(self) -> int:
        notices = self._all()
        if not notices:
            print("no notices")
            return 0
        print(f"{'id':<32} {'status':<10} {'type':<17} {'received':<11} {'sender':<24} scope")
        for notice_id, (notice, where) in sorted(notices.items(), key=lambda pair: pair[1][0].date_received):
            kind = "cease-and-desist" if notice.is_cease_and_desist else notice.type
            suffix = "" if where == "store" else f"  [{where}]"
            print(f"{notice_id:<32} {notice.status:<10} {kind:<17} {notice.date_received!s:<11} {notice.sender_name[:24]:<24} {notice.scope.describe()}{suffix}")
        return 0

    def show(self, notice_id: str) -> int:
        notices = self._all()
        if notice_id not in notices:
            raise CommandFailed(f"no notice {notice_id!r}; see `scrapy notice list`")
        notice, where = notices[notice_id]
        store = self.open_store()
        rows = store.purges(notice_id)
        print_json({"notice": notice.as_record(), "where": where, "purges": purges_with_proof(rows, store.ledger_entries())})
        return 0

    def withdraw(self, notice_id: str, opts: argparse.Namespace) -> int:
        from crawler.compliance.notices import Notice

        assert self.settings is not None
        notices = self._all()
        if notice_id not in notices:
            raise CommandFailed(f"no notice {notice_id!r}; see `scrapy notice list`")
        notice, where = notices[notice_id]
        if notice.status == "withdrawn":
            raise CommandFailed(f"notice {notice_id!r} is already withdrawn (at {notice.withdrawn_at})")
        withdrawn = notice.model_copy(update={"status": "withdrawn", "withdrawn_at": datetime.now(UTC)})
        withdrawn = Notice.model_validate(withdrawn.model_dump())
        operator = operator_of(opts, self.settings)
        path = self.notices_dir() / f"{notice_id}.yaml"
        store = self.open_signing_store()
        if where == "store":
            entry = store.withdraw_notice(notice_id, withdrawn.as_record(), operator, opts.reason)
        else:
            entry = store.append_ledger(
                "notice.withdrawn",
                {"notice_id": notice_id, "withdrawn_at": withdrawn.as_record()["withdrawn_at"], "operator": operator,
                 "reason": opts.reason, "registry_version": None, "purged_data_restored": False},
            )  # fmt: skip
        write_atomically(path, notice_yaml(withdrawn))
        print_json({
            "withdrawn": notice_id, "at": withdrawn.as_record()["withdrawn_at"], "file": str(path),
            "note": "blocking stops from now on; purged data is never restored",
            "ledger_entry": {"seq": entry.seq, "hash": entry.hash},
            "ledger_receipt": store.ledger_receipt(entry.seq),
        })  # fmt: skip
        return 0


def _day(option: str, value: str | None, required: bool = False) -> date | None:
    if not value:
        if required:
            raise CommandFailed(f"{option} is required (YYYY-MM-DD)")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandFailed(f"{option}: {value!r} is not a date; write YYYY-MM-DD") from None


def _scope_domains(record: dict[str, Any]) -> list[str]:
    scope = record.get("scope")
    domains = scope.get("domains") if isinstance(scope, dict) else None
    return [d for d in domains if isinstance(d, str)] if isinstance(domains, list) else []


def purges_with_proof(rows: list[dict[str, Any]], entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Each purge's receipt, with the ledger entry that holds it and whether the two agree.

    The ``purges`` table is the working record; the ledger is the proof. For
    every purge this names the ``purge.completed`` entry (seq and hash) and
    checks that it carries exactly the receipt shown (``in_ledger``), and lists
    the ``purge.completed-by-crawl`` entries of crawls that applied the purge
    to their own files afterwards.
    """
    from crawler.compliance.ledger import canonical_json

    by_seq: dict[int, Entry] = {}
    by_crawl: dict[str, list[dict[str, Any]]] = {}
    ids = {row["id"] for row in rows}
    seqs = {row.get("ledger_seq") for row in rows}
    for entry in entries:
        if entry.seq in seqs:
            by_seq[entry.seq] = entry
        elif entry.kind == "purge.completed-by-crawl":
            payload = json.loads(entry.payload)
            for result in payload.get("results", []):
                if result.get("purge_id") in ids:
                    by_crawl.setdefault(result["purge_id"], []).append(
                        {"seq": entry.seq, "hash": entry.hash, "crawl_id": payload.get("crawl_id"), **result}
                    )
    shown = []
    for row in rows:
        receipt = row.get("receipt") or {"purge_id": row["id"], "status": row["status"]}
        entry = by_seq.get(row.get("ledger_seq"))  # type: ignore[arg-type]
        proof: dict[str, Any] = {"seq": row.get("ledger_seq"), "hash": row.get("ledger_hash")}
        if row.get("receipt") is None:
            proof["in_ledger"] = None  # not finished: no receipt yet
        else:
            proof["in_ledger"] = (
                entry is not None and entry.kind == "purge.completed" and entry.hash == row.get("ledger_hash")
                and entry.payload == canonical_json(row["receipt"])
            )  # fmt: skip
        shown.append({**receipt, "ledger": proof, "applied_by_crawls": by_crawl.get(row["id"], [])})
    return shown
