"""``scrapy ledger verify|show|head|heads|prove|consistency``: the record of notices, purges and consents.

The ledger is a hash chain (the store's own check) and an append-only
Merkle tree with signed heads (crawler/transparency), which lets someone who
does not trust the store check a receipt with crawler/verify_receipt.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse

    from crawler.compliance.ledger import Entry
    from crawler.compliance.store import Store

ACTIONS = ("verify", "show", "head", "heads", "prove", "consistency")


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(name: str, text: str) -> int:
    if not text.isdigit():
        raise CommandFailed(f"{name}: expected a whole number, got {text!r}")
    return int(text)


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "verify [--receipt FILE] | show [--json] | head | heads [--json] | prove SEQ [--size N] | consistency OLD_SIZE [NEW_SIZE]"

    def short_desc(self) -> str:
        return "Verify or show the ledger; print signed tree heads, inclusion and consistency proofs"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="show, heads: one JSON object per line")
        parser.add_argument("--size", default=None, help="prove: against the signed head of this tree size (default: the latest)")
        parser.add_argument("--receipt", metavar="FILE",
                            help="verify: also check an objection receipt downloaded from the portal against this ledger")  # fmt: skip

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if not args or args[0] not in ACTIONS:
            raise UsageError(f"expected one of: {', '.join(ACTIONS)}", print_help=True)
        action, rest = args[0], args[1:]
        wanted = {"prove": (1, 1), "consistency": (1, 2)}.get(action, (0, 0))
        if not wanted[0] <= len(rest) <= wanted[1]:
            raise UsageError(f"ledger {action}: wrong number of arguments; see `scrapy ledger -h`", print_help=False)
        if action == "verify":
            return self.verify(opts.receipt)
        if action == "show":
            return self.show(opts)
        if action == "heads":
            return self.heads(opts)
        # head, prove and consistency answer for the current tree: a head that
        # covers it is signed first if entries were appended without the key.
        store = self.open_signing_store()
        if action == "head":
            print(json.dumps(store.sign_tree_head(), indent=2))
            return 0
        if action == "prove":
            return self.prove(store, _number("SEQ", rest[0]), opts.size)
        return self.consistency(store, _number("OLD_SIZE", rest[0]), _number("NEW_SIZE", rest[1]) if len(rest) > 1 else None)

    # -- proofs -----------------------------------------------------------------------

    def prove(self, store: Store, seq: int, size: str | None) -> int:
        latest = store.sign_tree_head()
        head = latest if size is None else store.tree_head(_number("--size", size))
        if head is None:
            raise CommandFailed(f"--size {size}: no signed head of that size; see `scrapy ledger heads`")
        if not 1 <= seq <= head["tree_size"]:
            raise CommandFailed(f"SEQ {seq}: the signed head of size {head['tree_size']} holds entries 1..{head['tree_size']}")
        print(json.dumps(store.ledger_receipt(seq, head), indent=2, ensure_ascii=False))
        return 0

    def consistency(self, store: Store, old: int, new: int | None) -> int:
        latest = store.sign_tree_head()
        head = latest if new is None else store.tree_head(new)
        if head is None:
            raise CommandFailed(f"NEW_SIZE {new}: no signed head of that size (the latest is of size {latest['tree_size']}); "
                                "see `scrapy ledger heads`")  # fmt: skip
        if not 1 <= old <= head["tree_size"]:
            raise CommandFailed(f"OLD_SIZE {old}: must be 1..{head['tree_size']} (the newer head's size)")
        proof = store.consistency_proof(old, head["tree_size"])
        print(json.dumps({"old_size": old, "new_size": head["tree_size"], "proof": [h.hex() for h in proof],
                          "new_head": head}, indent=2))  # fmt: skip
        return 0

    def heads(self, opts: argparse.Namespace) -> int:
        store = self.open_store()
        count = 0
        for head in store.tree_heads():
            count += 1
            if opts.json:
                print(json.dumps(head, sort_keys=True))
            else:
                print(f"{head['tree_size']:>8} {_when(head['timestamp'])} {head['root_hash']} key {head['key_id']}")
        if not count and not opts.json:
            print("no signed tree heads yet (`scrapy ledger head` signs one)")
        return 0

    # -- verify -----------------------------------------------------------------------

    def verify(self, receipt: str | None = None) -> int:
        from crawler.compliance.ledger import verify

        store = self.open_store()
        # The head first: entries appended while we read are beyond it and not judged.
        head = store.ledger_head()
        beyond: list[int] = []
        audit = self._tree_audit(store, head[0] if head is not None and head[0] >= 0 else 0)

        def up_to_head() -> Iterator[Entry]:
            for entry in store.ledger_entries():
                if head is not None and 0 <= head[0] < entry.seq:
                    beyond.append(entry.seq)
                else:
                    audit.add(entry.seq, entry.leaf_hash())
                    yield entry

        verdict = verify(up_to_head(), head)
        # The ledger is the source of truth for notices: a registry row that
        # says otherwise (edited status, scope or dates) is reported too.
        disagreements = store.notice_disagreements()
        for line in disagreements:
            print(f"registry DISAGREES with the ledger: {line}")
        if verdict.ok and beyond:
            # Entries appended while we read moved the head on; any still
            # beyond the head now were not written through it.
            now = store.ledger_head()
            stray = [seq for seq in beyond if now is None or seq > now[0]]
            if stray:
                print(f"ledger BROKEN at entry {stray[0]}: beyond the recorded head ({head[0] if head else 0}); "
                      "it was not appended through the ledger")  # fmt: skip
                return 1
        if not verdict.ok:
            print(f"ledger BROKEN at entry {verdict.bad_seq}: {verdict.message}")
            return 1
        print(f"ledger {verdict.message}")
        audit.finish()
        tree_ok = self._report_tree(store, audit)
        if receipt and not self.check_receipt(receipt, store):
            return 1
        if disagreements:
            print(f"{len(disagreements)} notice(s) in the registry disagree with the ledger; crawls treat them as active")
            return 1
        return 0 if tree_ok else 1

    def _tree_audit(self, store: Store, size: int) -> Any:
        from crawler.transparency.audit import TreeAudit

        # Heads signed after the chain head was read are beyond what is judged
        # (an append running beside verify); :meth:`_report_tree` checks them
        # against the tree as it is at the end.
        heads = (h for h in store.tree_heads() if h["tree_size"] <= size)
        return TreeAudit(store.ledger_nodes, heads, self._head_keys())

    def _head_keys(self) -> dict[str, Any] | None:
        """The public keys of the key file (current and retired), by key id; None without a usable key file."""
        from crawler.identity import keyring
        from crawler.identity.config import identity_settings
        from crawler.transparency.heads import keys_by_id

        assert self.settings is not None
        path = identity_settings(self.settings).key_path
        try:
            ring = keyring.load(path)
        except keyring.KeyFileError:
            return None  # each signed head is then reported as uncheckable
        return keys_by_id([stored.key for stored in ring.keys])

    def _report_tree(self, store: Store, audit: Any) -> bool:
        stored_leaves = store.ledger_tree_size()
        problems = list(audit.problems)
        latest = store.latest_tree_head()
        now = store.ledger_head()
        entries_now = now[0] if now is not None and now[0] >= 0 else 0
        if stored_leaves < audit.size or stored_leaves > max(audit.size, entries_now):
            problems.insert(0, f"the tree holds {stored_leaves} leaves for {max(audit.size, entries_now)} entries")
        if latest is not None and latest["tree_size"] > stored_leaves:
            problems.append(f"signed head of size {latest['tree_size']} is beyond the tree ({stored_leaves} leaves): "
                            "entries were removed after it was signed")  # fmt: skip
        for problem in problems:
            print(f"tree BROKEN: {problem}")
        if problems:
            return False
        print(f"tree intact: {audit.size} leaves, root {audit.root().hex()}, {audit.nodes_checked} nodes checked")
        if audit.heads_checked:
            print(f"heads intact: {audit.heads_checked} signed head(s) match the tree and their signatures check")
        else:
            print("no signed tree heads yet (`scrapy ledger head` signs one)")
        return True

    # -- show -------------------------------------------------------------------------

    def show(self, opts: argparse.Namespace) -> int:
        store = self.open_store()
        for entry in store.ledger_entries():
            if opts.json:
                print(json.dumps(entry.as_dict(), sort_keys=True))
            else:
                try:
                    payload = json.loads(entry.payload)
                except ValueError:
                    payload = {"payload": "(not JSON: the entry was altered; `scrapy ledger verify`)"}
                if not isinstance(payload, dict):
                    payload = {"payload": str(payload)}
                summary = ", ".join(f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int)) and k != "operator")
                print(f"{entry.seq:>5} {entry.at} {entry.kind:<26} {entry.hash[:16]} {summary[:120]}")
        return 0

    def check_receipt(self, path: str, store: Any) -> bool:
        """Print one line per check of an objection receipt (crawler/portal/objections.py check_receipt); True if all pass."""
        from crawler.cli import CommandFailed
        from crawler.portal.objections import check_receipt

        try:
            receipt = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115
        except OSError as exc:
            raise CommandFailed(f"--receipt {path}: cannot read it ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise CommandFailed(f"--receipt {path}: not JSON ({exc})") from None
        entries = {e.seq: e for e in store.ledger_entries()}
        results = check_receipt(receipt, entries)
        for ok, line in results:
            print(f"receipt {'ok' if ok else 'FAILED'}: {line}")
        return all(ok for ok, _ in results)
