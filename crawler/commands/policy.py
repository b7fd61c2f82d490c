"""``scrapy policy validate|check|schema|list``: the policy files, explained."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse

    from crawler.compliance.policy import PolicySet

ACTIONS = ("validate", "check", "schema", "list", "audit")


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "validate [DIR] | check URL [--json] | schema | list | audit [--platform P] [--cassette FILE] [--json]"

    def short_desc(self) -> str:
        return "Validate, explain and list the compliance policies"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="check, audit: print JSON")
        parser.add_argument("--platform", metavar="P", help="audit: only this platform policy")
        parser.add_argument("--cassette", metavar="FILE", help="audit: replay this vcrpy cassette instead of the network")

    def load(self) -> PolicySet:
        return self.policies()

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if not args or args[0] not in ACTIONS:
            raise UsageError(f"expected one of: {', '.join(ACTIONS)}", print_help=True)
        action, rest = args[0], args[1:]
        if action == "validate":
            return self.validate(rest[0] if rest else None)
        if action == "schema":
            from crawler.compliance.policy import json_schema

            print(json.dumps(json_schema(), indent=2, sort_keys=True))
            return 0
        if action == "list":
            return self.list()
        if action == "audit":
            return self.audit(opts)
        if len(rest) != 1:
            raise UsageError("check needs one URL", print_help=False)
        return self.check(rest[0], opts.json)

    def validate(self, given: str | None) -> int:
        """Every policy and notice file of the project (or of DIR), and the shipped ones they build on."""
        from crawler.compliance.notices import load_notice_files
        from crawler.compliance.policy import load_policies, shipped_label, SHIPPED
        from crawler.config import policy_dir, policy_dir_required

        assert self.settings is not None
        directory = given or policy_dir(self.settings)
        required = bool(given) or policy_dir_required(self.settings)
        policies, errors = load_policies(directory, required=required)
        shown = directory if directory is not None and Path(directory).exists() else f"{shipped_label(SHIPPED)} (the project has no policies/ folder)"
        platform_ids = [p.policy.id for p in policies.platforms] if policies is not None else None
        notices, notice_errors = load_notice_files(directory, platform_ids)
        errors = [*errors, *notice_errors]
        if errors:
            for error in errors:
                print(error)
            print(f"{len(errors)} error(s) in {shown}")
            return 1
        assert policies is not None
        print(
            f"{shown}: valid ({len(policies.platforms)} platform policies, {len(notices)} notices, "
            f"version {policies.version})"
        )
        return 0

    def list(self) -> int:
        policies = self.load()
        today = datetime.now(UTC).date()
        print(f"{'platform':<12} {'collection':<19} {'consent today':<15} domains  [file]")
        for loaded in sorted(policies.platforms, key=lambda p: p.policy.id):
            policy = loaded.policy
            valid = [c for c in policy.consents if c.state(today) == "valid"]
            state = "n/a" if policy.collection != "consent-required" else (f"{len(valid)} valid" if valid else "none")
            print(f"{policy.id:<12} {policy.collection:<19} {state:<15} {', '.join(policy.domains)}  [{loaded.path}]")
        default = policies.default
        print(f"{'(default)':<12} {default.collection:<19} {'n/a':<15} every other host, "
              f"min_delay {default.rate.min_delay:g}s, max_concurrency {default.rate.max_concurrency}  [{policies.default_path}]")
        return 0

    def audit(self, opts: argparse.Namespace) -> int:
        """Fetch each platform's terms (and robots.txt); exit 1 when the sha256 differs from the reviewed one."""
        from crawler.terms_audit import audit_platforms
        from crawler.config import Config, ConfigError

        policies = self.load()
        selected = [p for p in policies.platforms if not opts.platform or p.policy.id == opts.platform]
        if not selected:
            known = ", ".join(sorted(p.policy.id for p in policies.platforms))
            raise CommandFailed(f"--platform {opts.platform!r}: no such platform policy; known: {known}")
        assert self.settings is not None
        try:
            config = Config.from_settings(self.settings)
        except ConfigError as exc:
            raise CommandFailed(str(exc)) from None
        from crawler.cassettes import CassetteError

        from crawler.progress_display import TaskProgress, task_progress, tracked

        try:
            with task_progress(TaskProgress("policy audit", len(selected), "platforms"), self.progress_setting(opts)) as progress:
                findings = audit_platforms(tracked(selected, progress), config.user_agent, config.bot_name, cassette=opts.cassette)
        except CassetteError as exc:
            raise CommandFailed(str(exc).removeprefix("COMPLIANCE_CASSETTE: ")) from None
        if opts.json:
            print(json.dumps([f.as_dict() for f in findings], indent=2))
        else:
            for finding in findings:
                print(finding.line())
        needs_review = [f for f in findings if f.status != "unchanged"]
        if needs_review:
            print(f"{len(needs_review)} platform(s) need a person to re-read their terms: "
                  f"{', '.join(f.platform for f in needs_review)}")  # fmt: skip
            return 1
        print(f"all {len(findings)} platform(s) unchanged since review")
        return 0

    def seen_by_crawls(self, url: str) -> dict[str, Any] | None:
        """What the last crawl recorded about ``url``: robots.txt and opt-out signals."""
        from crawler.compliance.optouts import describe_signals
        from crawler.compliance.store import StoreError

        try:
            item, refused = self.open_store().last_seen(url)
        except StoreError:
            return None
        lines: list[str] = []
        # The newest of the two: a page stored once and refused later (or the
        # other way round) is shown as the last crawl saw it.
        if item is not None and (not refused or _when(item["fetched_at"]) >= _when(refused[0]["at"])):
            provenance = item.get("provenance") or {}
            robots = provenance.get("robots") or {}
            optouts = provenance.get("optouts") or {}
            lines.append(f"stored; robots.txt: {robots.get('reason', '?')} {robots.get('rule', '')} ({robots.get('source', '')})")
            signals = optouts.get("signals") or {}
            lines.append(f"opt-out signals: {describe_signals(signals)}; purposes {', '.join(optouts.get('purposes') or [])}")
            return {"crawl_id": item["crawl_id"], "when": str(item["fetched_at"]), "stored": True, "provenance": provenance, "lines": lines}
        if refused:
            last = refused[0]
            lines.append(f"refused {last['reason']} at {last['gate']}: {last['rule']} ({last['source']})")
            return {"crawl_id": last["crawl_id"], "when": str(last["at"]), "stored": False, "refusal": {k: str(v) for k, v in last.items()}, "lines": lines}
        return None

    def check(self, url: str, as_json: bool) -> int:
        from crawler.compliance.images import url_decision

        if not url.startswith(("http://", "https://")):
            raise CommandFailed(f"{url!r} is not an absolute http(s) URL")
        policies = self.load()
        today = datetime.now(UTC).date()
        terms = policies.decide(url, today)
        notices = self.notice_registry(policies)
        layers = [("schedule", "notices", notices.decide(url)), ("schedule", "images", url_decision(url)), ("schedule", "terms", terms)]
        host = urlsplit(url).hostname or ""
        platform = policies.platform_for(host)
        final_gate, final = next(((g, d) for g, _, d in layers if not d.allowed), ("schedule", terms))
        rate = policies.rate_for(host)
        seen = self.seen_by_crawls(url)
        report = {
            "url": url,
            "allowed": final.allowed,
            "decision": final.at(final_gate, url).as_dict(),
            "platform": platform.policy.id if platform else None,
            "policies_version": policies.version,
            "rate": {"min_delay": rate.min_delay, "max_concurrency": rate.max_concurrency},
            "consents": [
                {"reference": c.reference, "granted_by": c.granted_by, "paths": c.paths,
                 "valid_from": str(c.valid_from), "valid_until": str(c.valid_until),
                 "state": c.state(today)}
                for c in (platform.policy.consents if platform else [])
            ],
            "layers": [{"gate": g, "layer": name, **d.as_dict()} for g, name, d in layers],
            "seen_by_crawls": seen,
            "not_evaluated": "robots.txt and opt-outs are decided by a crawl; this command fetches nothing",
        }
        if as_json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print(f"{url}\n  {'ALLOWED' if final.allowed else 'REFUSED'}: {final.reason}")
            for gate, name, decision in layers:
                verdict = "allow " if decision.allowed else "REFUSE"
                print(f"  [{gate:<8}] {name:<8} {verdict} {decision.reason}")
                if decision.rule:
                    print(f"             rule:   {decision.rule}")
                if decision.source:
                    print(f"             source: {decision.source}")
            if platform is not None:
                policy = platform.policy
                states = [f"{c['reference']} ({c['state']} {c['valid_from']}..{c['valid_until']})" for c in report["consents"]]
                print(f"  platform: {policy.id} ({policy.name}), collection: {policy.collection}, "
                      f"consents: {', '.join(states) or 'none'}")
            print(f"  pace: at least {rate.min_delay:g}s between requests, at most {rate.max_concurrency} at once"
                  f" (robots.txt Crawl-delay may slow it further)")
            print(f"  policies version {policies.version} in {Path(policies.directory)}")
            if seen is None:
                print("  response layer (robots.txt, opt-outs): no crawl in the store has seen this URL")
            else:
                print(f"  response layer, as the last crawl saw it ({seen['crawl_id']}, {seen['when']}):")
                for line in seen["lines"]:
                    print(f"    {line}")
        return 0


def _when(value: Any) -> datetime:
    """A stored timestamp (datetime or ISO text, naive meaning UTC) as an aware datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
