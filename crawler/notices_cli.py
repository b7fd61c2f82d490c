"""What ``scrapy notice`` and ``scrapy purge`` share: scopes from options, receipts, operators."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.cli import CommandFailed

if TYPE_CHECKING:
    import argparse

    from scrapy.settings import BaseSettings

    from crawler.compliance.notices import Notice, Scope
    from crawler.compliance.policy import PolicySet
    from crawler.compliance.purge import PurgeRequest


def add_scope_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", action="append", default=[], metavar="D", help="a registered domain (subdomains are covered); repeatable")
    parser.add_argument("--platform", metavar="P", help="a platform policy id (its domains are covered)")
    parser.add_argument("--url-pattern", action="append", default=[], metavar="PAT",
                        help="a URL with robots-style '*' and '$' in its path; repeatable")  # fmt: skip
    parser.add_argument("--operator", help="who runs this (default: user@machine, or COMPLIANCE_OPERATOR)")


def scope_from_options(opts: argparse.Namespace, policies: PolicySet) -> Scope:
    from crawler.compliance.notices import Scope

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
    from crawler.config import machine_name

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
    from crawler.compliance.notices import CompiledScope
    from crawler.compliance.purge import PurgeRequest

    compiled = CompiledScope.build(scope, policies, resolved or ())
    record = {
        **scope.model_dump(mode="json", exclude_none=True),
        "resolved_domains": sorted(compiled.domains),
    }
    return PurgeRequest(compiled, record, reason, operator, notice_id)


def notice_yaml(notice: Notice) -> str:
    import yaml

    header = (
        "# A notice, in the Lumen database's vocabulary plus this project's scope and demands.\n"
        "# Written by `scrapy notice add`; validated by `scrapy policy validate`.\n"
        "# Withdraw it with `scrapy notice withdraw ID` (never by deleting this file).\n"
    )
    return header + yaml.safe_dump(notice.as_record(), sort_keys=False, allow_unicode=True, width=100)


def write_atomically(path: Path, text: str) -> None:
    from crawler.compliance.files import replaced_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():
        raise OSError(f"{path} exists and is not a file; move it away first")
    with replaced_atomically(path) as handle:
        handle.write(text)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


#: Entry point group for a package's own purge locations (see crawler.compliance.purge.PurgeLocation).
PURGE_LOCATIONS_GROUP = "ethical_crawler.purge_locations"


def extra_locations(settings: BaseSettings) -> list[Any]:
    """The locations purge visits that no crawl records in the store.

    - batches the store refused, kept in COMPLIANCE_DATA_DIR/unwritten/;
    - the project's own locations: ``COMPLIANCE_PURGE_LOCATIONS`` (a list of
      import paths, or a dict of import path to order) and the
      ``ethical_crawler.purge_locations`` entry points.

    A location that cannot be loaded is an error (CommandFailed): a purge
    that silently skipped the project's own copy would report a deletion
    that did not happen.
    """
    from importlib.metadata import entry_points

    from scrapy.utils.misc import load_object

    from crawler.compliance.purge import Location, custom_location
    from crawler.config import unwritten_files

    found: list[Any] = [Location("feed", str(path.resolve()), {"format": "jsonlines"}) for path in unwritten_files(settings)]
    named = settings.get("COMPLIANCE_PURGE_LOCATIONS") or []
    if isinstance(named, str):
        named = [part.strip() for part in named.split(",") if part.strip()]
    elif isinstance(named, dict) or hasattr(named, "copy_to_dict"):
        named = [path for path, order in sorted(dict(named).items(), key=lambda pair: pair[1] or 0) if order is not None]
    sources: list[tuple[str, Any]] = [("COMPLIANCE_PURGE_LOCATIONS", path) for path in named]
    sources += [(f"entry point {PURGE_LOCATIONS_GROUP}:{ep.name}", ep) for ep in entry_points(group=PURGE_LOCATIONS_GROUP)]
    for where, target in sources:
        try:
            obj = target.load() if hasattr(target, "load") and hasattr(target, "group") else load_object(target)
            if isinstance(obj, type):
                obj = obj.from_settings(settings) if hasattr(obj, "from_settings") else obj()
        except Exception as exc:  # noqa: BLE001 - the project's code: name it and stop
            raise CommandFailed(f"{where}: cannot load purge location {target!r}: {type(exc).__name__}: {exc}") from None
        if not callable(getattr(obj, "count", None)) or not callable(getattr(obj, "delete", None)):
            raise CommandFailed(f"{where}: {target!r} is not a purge location (it needs count(scope) and delete(scope))")
        found.append(custom_location(obj))
    return found
