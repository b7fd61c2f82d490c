"""``scrapy erase``: a person's erasure request, purged everywhere and kept on the suppression list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crawler.cli import ComplianceCommand, UserMistake

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "(--email E | --name N | --phone P | --handle H | --url U)... --reason TEXT [--dry-run] [--verify]"

    def short_desc(self) -> str:
        return "Erase every stored item that concerns a person, and refuse it on every later crawl"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        for kind, meta, what in (("email", "E", "an e-mail address"), ("name", "N", "a full name (two words or more)"),
                                 ("phone", "P", "a phone number (+country code, or COMPLIANCE_ERASURE_PHONE_REGION)"),
                                 ("handle", "H", "a handle (@name)"), ("url", "U", "a page about the person")):  # fmt: skip
            parser.add_argument(f"--{kind}", action="append", default=[], metavar=meta, help=f"{what}; repeatable")
        parser.add_argument("--reason", default="", help="why (goes into the ledger: do not write the identifiers here)")
        parser.add_argument("--dry-run", action="store_true", help="count the items found; change nothing")
        parser.add_argument("--verify", action="store_true", help="then search again; exit 1 if anything remains")
        parser.add_argument("--operator", help="who runs this (default: user@machine, or COMPLIANCE_OPERATOR)")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        from crawler.dataprotection import settings as dp_settings
        from crawler.dataprotection.identifiers import KINDS, IdentifierError, normalise

        assert self.settings is not None
        if args:
            raise UserMistake(f"unexpected argument {args[0]!r}; identifiers are given with --email, --name, --phone, --handle, --url")
        config = dp_settings.read(self.settings)
        identifiers, problems = [], []
        for kind in KINDS:
            for given in getattr(opts, kind):
                try:
                    identifiers.append(normalise(kind, given, config.phone_region))
                except IdentifierError as exc:
                    problems.append(str(exc))
        if problems:
            raise UserMistake("; ".join(problems))
        if not identifiers:
            raise UserMistake("say whom to erase: --email, --name, --phone, --handle or --url (each repeatable)")
        identifiers = list(dict.fromkeys(identifiers))
        if not opts.dry_run and not opts.reason.strip():
            raise UserMistake("--reason is required: say why (the request's reference, not the identifiers: it goes into the ledger)")
        # A real erasure appends to the ledger: signed, so its receipt carries a proof (crawler/verify_receipt.py).
        store = self.open_store() if opts.dry_run else self.open_signing_store()
        if opts.dry_run:
            return self.dry_run(store, identifiers, config)
        return self.erase(store, identifiers, config, opts)

    def dry_run(self, store: Any, identifiers: list[Any], config: Any) -> int:
        from crawler.dataprotection.search import find
        from crawler.notices_cli import print_json

        found = find(store, identifiers, config.phone_region)
        per = {i.key: sum(1 for _, keys in found.values() if i.key in keys) for i in identifiers}
        print_json({"dry_run": True, "items": len(found),
                    "identifiers": [{"kind": i.kind, "normalised": i.value, "items": per[i.key]} for i in identifiers]})  # fmt: skip
        return 0

    def erase(self, store: Any, identifiers: list[Any], config: Any, opts: argparse.Namespace) -> int:
        import uuid

        from crawler.compliance.purge import PurgeRequest, survey
        from crawler.compliance.store import items
        from crawler.config import machine_name
        from crawler.dataprotection.itemscope import ItemScope
        from crawler.dataprotection.search import find
        from crawler.dataprotection.suppression import SuppressionKeyError, add_entries, load_or_create_key
        from crawler.dataprotection.tables import erasures
        from crawler.compliance.store import utcnow
        from crawler.notices_cli import extra_locations, operator_of, print_json

        assert self.settings is not None
        request_id = "er-" + uuid.uuid4().hex[:12]
        operator = operator_of(opts, self.settings)
        kinds: dict[str, int] = {}
        for identifier in identifiers:
            kinds[identifier.kind] = kinds.get(identifier.kind, 0) + 1
        if config.erasure_key is None:
            raise UserMistake("COMPLIANCE_ERASURE_KEY: no project here to keep the erasure key in (var/); run inside the project or name the key file")
        try:
            key = load_or_create_key(config.erasure_key)
            # On the list first: a crawl running now refuses the person's pages from its next check on.
            added = add_entries(store, key, identifiers, request_id)
        except SuppressionKeyError as exc:
            raise UserMistake(str(exc)) from None
        reason = opts.reason.strip()
        with store.engine.begin() as conn:
            conn.execute(erasures.insert().values(id=request_id, created_at=utcnow(), reason=reason, operator=operator, identifiers=kinds))
        store.append_ledger("erasure.requested", {"request_id": request_id, "reason": reason, "operator": operator,
                                                  "identifiers": kinds, "suppression_added": added})  # fmt: skip
        found = find(store, identifiers, config.phone_region)
        urls = {url for url, _ in found.values()} | {i.value for i in identifiers if i.kind == "url"}
        ids = sorted(found)
        scope = ItemScope(frozenset(urls), items.c.id.in_(ids) if ids else items.c.id < 0, f"erasure {request_id}")
        record = {"erasure": request_id, "identifiers": kinds, "items": len(ids)}
        request = PurgeRequest(scope, record, f"erasure {request_id}: {reason}", operator)  # type: ignore[arg-type]
        machine = machine_name(self.settings)
        extra = extra_locations(self.settings)
        receipt = self.purge_everywhere(store, request, opts, machine, extra, "erase")
        with store.engine.begin() as conn:
            conn.execute(erasures.update().where(erasures.c.id == request_id).values(purge_id=receipt["purge_id"], receipt=receipt))
        result = {"erasure_request": request_id, "suppressed_identifiers": len(identifiers), **receipt}
        if not opts.verify:
            print_json(result)
            return 0
        remaining = find(store, identifiers, config.phone_region)
        elsewhere = [(loc, out) for loc, out in survey(store, scope, machine, extra) if loc.kind != "store"]  # type: ignore[arg-type]
        from crawler.commands.purge import _verdict

        status, verdict = _verdict(elsewhere, machine)
        if remaining:
            status = 1
            verdict["verified"] = False
            verdict["problems"].insert(0, f"{len(remaining)} stored item(s) still hold an identifier")
        print_json({**result, "verify": {"store_remaining": len(remaining), **verdict}})
        return status
