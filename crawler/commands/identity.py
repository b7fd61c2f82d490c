"""``scrapy identity init|show|rotate|directory``: the crawler's Web Bot Auth signing keys.

Imports nothing heavy at module level (Scrapy imports every command module
for every ``scrapy`` call): ``cryptography`` and the keyring are imported
inside :meth:`Command.execute`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse

    from crawler.identity.config import IdentitySettings
    from crawler.identity.keyring import Keyring

ACTIONS = ("init", "show", "rotate", "directory")


def _when(timestamp: int | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if timestamp else "-"


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "init | show [--json] | rotate [--overlap SECONDS] | directory [--authority HOST] [--body-only | --json]"

    def short_desc(self) -> str:
        return "Manage the Ed25519 key that signs every request (Web Bot Auth) and print its key directory"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="show/directory: machine-readable output")
        parser.add_argument("--overlap", type=int, default=None,
                            help="rotate: seconds the old key stays published (default COMPLIANCE_SIGNING_KEY_OVERLAP)")
        parser.add_argument("--authority", default=None,
                            help="directory: the host (and :port) that serves it (default: COMPLIANCE_SIGNATURE_AGENT's)")
        parser.add_argument("--lifetime", type=int, default=86_400,
                            help="directory: seconds its signatures stay valid (default 86400, the draft's maximum)")
        parser.add_argument("--body-only", action="store_true", help="directory: print only the JWKS")  # fmt: skip

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if len(args) != 1 or args[0] not in ACTIONS:
            raise UsageError(f"expected one of {', '.join(ACTIONS)}", print_help=True)
        from crawler.identity import keyring
        from crawler.identity.config import identity_settings

        assert self.settings is not None
        options = identity_settings(self.settings)
        try:
            return getattr(self, f"do_{args[0]}")(options, opts)
        except keyring.KeyFileError as exc:
            raise CommandFailed(str(exc)) from None

    def do_init(self, options: IdentitySettings, opts: argparse.Namespace) -> int:
        from crawler.identity import keyring

        ring, created = keyring.load_or_create(options.key_path)
        state = "created" if created else "already exists"
        print(f"signing key {state}: {options.key_path} (mode 0600)")
        print(f"key id: {ring.current.key_id}")
        return 0

    def do_show(self, options: IdentitySettings, opts: argparse.Namespace) -> int:
        ring = self._ring(options)
        published = {key.key_id for key in ring.published()}
        rows = [
            {"key_id": s.key.key_id, "current": s.retired is None, "published": s.key.key_id in published,
             "created": _when(s.created), "retired": _when(s.retired), "publish_until": _when(s.publish_until),
             "jwk": s.key.public_jwk()}
            for s in ring.keys
        ]  # fmt: skip
        if opts.json:
            print(json.dumps({"key_file": str(options.key_path), "keys": rows}, indent=2))
            return 0
        print(f"key file: {options.key_path}")
        for row in rows:
            status = "current" if row["current"] else f"retired {row['retired']}, published until {row['publish_until']}"
            if not row["published"]:
                status += " (no longer published)"
            print(f"key id: {row['key_id']} ({status})")
            print(f"  public JWK: {json.dumps(row['jwk'])}")
        print(f"signature agent: {options.agent or '(none: set COMPLIANCE_SIGNATURE_AGENT to an https URL)'}")
        return 0

    def do_rotate(self, options: IdentitySettings, opts: argparse.Namespace) -> int:
        overlap = options.overlap if opts.overlap is None else opts.overlap
        ring = self._ring(options)
        old = ring.current.key_id
        rotated = ring.rotate(overlap)
        print(f"new current key id: {rotated.current.key_id}")
        retired = next(s for s in rotated.keys if s.key.key_id == old)
        print(f"previous key {old} stays published until {_when(retired.publish_until)}")
        print("publish the new directory now: scrapy identity directory")
        return 0

    def do_directory(self, options: IdentitySettings, opts: argparse.Namespace) -> int:
        import time
        from urllib.parse import urlsplit

        from crawler.identity.signing import DIRECTORY_PATH, SigningError, directory_body, signed_directory

        ring = self._ring(options)
        if opts.body_only:
            sys.stdout.write(directory_body(ring.published()).decode("ascii") + "\n")
            return 0
        authority = opts.authority or (urlsplit(options.agent).netloc if options.agent else "")
        if not authority:
            raise CommandFailed(
                "the directory's signatures name the host that serves it: pass --authority HOST, or set "
                "COMPLIANCE_SIGNATURE_AGENT to the https URL that serves it (or use --body-only for the unsigned JWKS)"
            )
        try:
            headers, body = signed_directory(ring.published(), authority, created=int(time.time()), lifetime=opts.lifetime)
        except SigningError as exc:
            raise CommandFailed(f"directory: {exc}") from None
        if opts.json:
            url = f"https://{authority.lower()}{DIRECTORY_PATH}"
            print(json.dumps({"url": url, "headers": headers, "body": body.decode("ascii")}, indent=2))
            return 0
        for name, value in headers.items():
            print(f"{name}: {value}")
        print()
        print(body.decode("ascii"))
        return 0

    def _ring(self, options: IdentitySettings) -> Keyring:
        from crawler.identity import keyring

        return keyring.load(options.key_path)
