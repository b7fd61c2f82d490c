"""``scrapy exports list|notify``: what went to which recipient, and the deletion requests owed to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "list [--json] | notify [--attempts N]"

    def short_desc(self) -> str:
        return "List recorded exports, or print and deliver the deletion requests in the outbox"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="list: as JSON")
        parser.add_argument("--attempts", type=int, default=3, help="notify: tries per request before reporting it failed")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if len(args) != 1 or args[0] not in ("list", "notify"):
            raise UsageError("expected 'list' or 'notify'", print_help=True)
        from crawler.dataprotection import settings as dp_settings

        assert self.settings is not None
        config = dp_settings.read(self.settings)
        if args[0] == "list":
            from crawler.dataprotection.exports import list_exports
            from crawler.notices_cli import print_json

            found = list_exports(self.open_store())
            if opts.json:
                print_json(found)
                return 0
            for export in found:
                print(f"{export['id']}  {export['at']}  {export['items']:>7} items  to {export['destination']}"
                      f"  purposes: {','.join(export['purposes']) or '-'}  ({export['kind']})")  # fmt: skip
            print(len(found))
            return 0
        return notify(config, max(1, opts.attempts))


def notify(config: object, attempts: int) -> int:
    """Print each pending request and POST it to its destination's webhook; exit 1 if any is still undelivered."""
    import json
    import sys

    from crawler.dataprotection.exports import deliver, pending_requests

    outbox = config.outbox  # type: ignore[attr-defined]
    webhooks = config.webhooks  # type: ignore[attr-defined]
    pending = pending_requests(outbox)
    undelivered = 0
    for path in pending:
        request = json.loads(path.read_text(encoding="utf-8"))
        destination = request.get("destination", "")
        print(json.dumps({k: v for k, v in request.items() if k != "delivery"}, indent=2, default=str))
        status, detail = deliver(path, webhooks.get(destination), attempts=attempts)
        line = f"{path.name}: {status} ({detail})"
        if status == "sent":
            print(line)
        else:
            undelivered += 1
            print(f"error: {line}; kept in {outbox}", file=sys.stderr)
    print(f"{len(pending) - undelivered} delivered, {undelivered} pending")
    return 1 if undelivered else 0
