"""What ``scrapy notice`` and ``scrapy purge`` share: scopes from options, receipts, operators."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from crawler.cli import CommandFailed
from crawler.compliance.files import replaced_atomically
from crawler.compliance.notices import CompiledScope, Notice, Scope
from crawler.compliance.purge import PurgeRequest
from crawler.config import DEFAULTS, machine_name

if TYPE_CHECKING:
    import argparse

    from scrapy.settings import BaseSettings

    from crawler.compliance.policy import PolicySet


def add_scope_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", action="append", default=[], metavar="D", help="a registered domain (subdomains are covered); repeatable")
    parser.add_argument("--platform", metavar="P", help="a platform policy id (its domains are covered)")
    parser.add_argument("--url-pattern", action="append", default=[], metavar="PAT",
                        help="a URL with robots-style '*' and '$' in its path; repeatable")  # fmt: skip
    parser.add_argument("--operator", help="who runs this (default: user@machine, or COMPLIANCE_OPERATOR)")


def scope_from_options(opts: argparse.Namespace, policies: PolicySet) -> Scope:
    if not (opts.domain or opts.platform or opts.url_pattern):
        raise CommandFailed("say what is in scope: --domain D, --platform P or --url-pattern PAT")
    if opts.platform and opts.platform not in {p.policy.id for p in policies.platforms}:
        known = ", ".join(sorted(p.policy.id for p in policies.platforms))
        raise CommandFailed(f"--platform {opts.platform!r}: no such platform policy; known: {known}")
    try:
        return Scope(platform=opts.platform, domains=[d.strip().lower() for d in opts.domain], url_patterns=opts.url_pattern)
    except ValueError as exc:
        raise CommandFailed(f"scope: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}"
        given = first.get("input")
        # The value that was wrong; not a whole record (a check across fields names its fields itself).
        return message if isinstance(given, dict | list) else f"{message} (got {given!r:.200})"
    return str(exc)


def operator_of(opts: argparse.Namespace, settings: BaseSettings) -> str:
    given = opts.operator or settings.get("COMPLIANCE_OPERATOR") or os.environ.get("COMPLIANCE_OPERATOR")
    if given:
        return str(given)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{machine_name(settings)}"


def purge_request(scope: Scope, policies: PolicySet, reason: str, operator: str, notice_id: str | None,
                  resolved: list[str] | None = None) -> PurgeRequest:  # fmt: skip
    compiled = CompiledScope.build(scope, policies, resolved or ())
    record = {
        **scope.model_dump(mode="json", exclude_none=True),
        "resolved_domains": sorted(compiled.domains),
    }
    return PurgeRequest(compiled, record, reason, operator, notice_id)


def policy_dir(settings: BaseSettings) -> Path:
    return Path(str(settings.get("COMPLIANCE_POLICY_DIR") or DEFAULTS["COMPLIANCE_POLICY_DIR"]))


def notice_yaml(notice: Notice) -> str:
    header = (
        "# A notice, in the Lumen database's vocabulary plus this project's scope and demands.\n"
        "# Written by `scrapy notice add`; validated by `scrapy policy validate`.\n"
        "# Withdraw it with `scrapy notice withdraw ID` (never by deleting this file).\n"
    )
    return header + yaml.safe_dump(notice.as_record(), sort_keys=False, allow_unicode=True, width=100)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():
        raise OSError(f"{path} exists and is not a file; move it away first")
    with replaced_atomically(path) as handle:
        handle.write(text)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))
