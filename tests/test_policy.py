"""Platform policies: strict models, human error messages, decisions, schema, commands."""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest

from crawler.compliance.policy import SHIPPED, json_schema, load_policies
from crawler.testing.runner import policy_dir_with_pace, project_dir, scrapy_command

ROOT = project_dir()
TODAY = date(2026, 11, 26)

DEFAULT = "collection: allowed-per-robots\nrate:\n  min_delay: 0.5\n  max_concurrency: 2\n"
PLATFORM = """\
id: partner
name: Partner
owner: Partner Inc.
domains: [partner.test]
terms:
  url: https://partner.test/terms
  clause: No robots without a contract.
  reviewed: 2026-11-01
collection: consent-required
consents:
  - granted_by: Partner legal
    reference: CONTRACT-1
    paths: [/public/]
    valid_from: 2026-01-01
    valid_until: 2026-12-31
  - granted_by: Partner legal
    reference: LETTER-0
    paths: [/old/]
    valid_from: 2025-01-01
    valid_until: 2025-06-30
paths:
  - deny: /public/private
  - allow: /public/private/ok
rate:
  min_delay: 2
  max_concurrency: 1
"""


def make_dir(tmp_path: Path, platforms: dict[str, str], default: str = DEFAULT) -> Path:
    root = tmp_path / "pol"
    (root / "platforms").mkdir(parents=True)
    (root / "default.yaml").write_text(default)
    for name, text in platforms.items():
        (root / "platforms" / name).write_text(textwrap.dedent(text))
    return root


def errors_for(tmp_path: Path, platforms: dict[str, str], default: str = DEFAULT) -> list[str]:
    policies, errors = load_policies(make_dir(tmp_path, platforms, default))
    assert policies is None
    return [e.replace(str(tmp_path / "pol") + "/", "") for e in errors]


def test_shipped_policies_are_valid_and_cover_the_platforms() -> None:
    """The shipped policies load on their own, and each named platform domain is consent-required with no consent."""
    policies, errors = load_policies(None)
    assert errors == [] and policies is not None
    for domain in ["facebook.com", "fb.com", "instagram.com", "messenger.com", "twitter.com", "x.com",
                   "youtube.com", "youtu.be", "linkedin.com", "venmo.com"]:  # fmt: skip
        loaded = policies.by_domain[domain]
        assert loaded.policy.collection == "consent-required" and loaded.policy.consents == []
        decision = policies.decide(f"https://www.{domain}/someone", TODAY)
        assert decision.reason == "terms.consent-required" and decision.source.startswith("shipped/platforms/")
        assert loaded.policy.terms.url in decision.rule


def test_every_policy_file_starts_with_schema_line() -> None:
    """Editors find the schema from the first line of every shipped policy file (as `compliance init` copies them)."""
    paths = list(SHIPPED.rglob("*.yaml"))
    assert len(paths) == 6
    for path in paths:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target == (SHIPPED / "schema.json").resolve(), path


def test_committed_schema_is_current() -> None:
    """crawler/shipped/schema.json is what the models generate (regenerate: scrapy policy schema > crawler/shipped/schema.json)."""
    committed = json.loads((SHIPPED / "schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "crawler/shipped/schema.json is stale"


def test_consent_path_rules_and_rate(tmp_path: Path) -> None:
    """Valid consent allows its paths; expired consent refuses saying when; path rules take the longest match."""
    policies, errors = load_policies(make_dir(tmp_path, {"partner.yaml": PLATFORM}))
    assert errors == [] and policies is not None
    ok = policies.decide("https://www.partner.test/public/page", TODAY)
    assert (ok.allowed, ok.reason) == (True, "terms.consent") and "CONTRACT-1" in ok.rule
    assert ok.source.endswith("partner.yaml:11")
    expired = policies.decide("https://partner.test/old/page", TODAY)
    assert (expired.allowed, expired.reason) == (False, "terms.consent-expired")
    assert "expired on 2025-06-30" in expired.rule and expired.source.endswith("partner.yaml:16")
    none = policies.decide("https://partner.test/other", TODAY)
    assert none.reason == "terms.consent-required"
    denied = policies.decide("https://partner.test/public/private/x", TODAY)
    assert (denied.reason, denied.source.endswith("partner.yaml:22")) == ("terms.path-denied", True)
    assert policies.decide("https://partner.test/public/private/ok", TODAY).allowed
    assert policies.decide("https://partner.test/public/page", date(2027, 1, 1)).reason == "terms.consent-expired"
    assert policies.rate_for("a.partner.test").min_delay == 2
    assert policies.rate_for("elsewhere.test").min_delay == 0.5
    assert policies.decide("https://elsewhere.test/", TODAY).reason == "terms.default"


def test_forbidden_and_allowed(tmp_path: Path) -> None:
    """'forbidden' refuses everything, 'allowed' allows (robots.txt still applies later)."""
    forbidden = PLATFORM.replace("collection: consent-required", "collection: forbidden")
    allowed = PLATFORM.replace("id: partner", "id: open").replace("partner.test]", "open.test]").replace(
        "collection: consent-required", "collection: allowed"
    )
    policies, errors = load_policies(make_dir(tmp_path, {"p.yaml": forbidden, "o.yaml": allowed}))
    assert errors == [] and policies is not None
    assert policies.decide("https://partner.test/public/x", TODAY).reason == "terms.forbidden"
    assert policies.decide("https://open.test/x", TODAY).reason == "terms.allowed"


def test_error_messages_name_file_line_field(tmp_path: Path) -> None:
    """Every error of every file is reported as FILE:LINE: field: message, with the offending value."""
    bad = PLATFORM.replace("collection: consent-required", "collection: maybe").replace("min_delay: 2", "min_delay: -2")
    bad = bad.replace("owner: Partner Inc.\n", "owner: Partner Inc.\ncolour: blue\n")
    other = PLATFORM.replace("id: partner", "id: other").replace("reviewed: 2026-11-01", "reviewed: soon")
    errors = errors_for(tmp_path, {"bad.yaml": bad, "other.yaml": other})
    assert errors == [
        "platforms/bad.yaml:4: colour: unknown field; accepted here: id, name, owner, domains, terms, collection, consents, paths, rate, purposes, retention",
        "platforms/bad.yaml:10: collection: must be 'forbidden', 'consent-required', 'allowed-per-robots' or 'allowed' (got 'maybe')",
        "platforms/bad.yaml:26: rate.min_delay: Input should be greater than or equal to 0 (got -2)",
        "platforms/other.yaml:8: terms.reviewed: Input should be a valid date or datetime, input is too short (got 'soon')",
    ]


def test_unknown_field_in_a_section_lists_that_sections_fields(tmp_path: Path) -> None:
    """An unknown field inside a consent names the consent's accepted fields."""
    errors = errors_for(tmp_path, {"p.yaml": PLATFORM.replace("    reference: CONTRACT-1\n", "    reference: CONTRACT-1\n    signed: yes\n")})
    assert errors == ["platforms/p.yaml:13: consents.0.signed: unknown field; accepted here: granted_by, reference, paths, purposes, valid_from, valid_until"]


def test_duplicate_domain_names_both_files(tmp_path: Path) -> None:
    """Two policies claiming one domain is an error naming both files and lines."""
    other = PLATFORM.replace("id: partner", "id: other").replace("domains: [partner.test]", "domains: [x.test, partner.test]")
    errors = errors_for(tmp_path, {"a.yaml": PLATFORM, "b.yaml": other})
    assert errors == [
        "platforms/b.yaml:4: domains.1: 'partner.test' is also claimed by "
        + "platforms/a.yaml:4 (one platform policy per domain)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: [unclosed\n", "platforms/p.yaml:2:1: YAML syntax error:"),
        ("id: a\n  bad: indent\n", "platforms/p.yaml:2:6: YAML syntax error:"),
        ("- a list\n", "platforms/p.yaml:1: (file): expected a mapping of fields, got list"),
        ("!!python/object/apply:os.system ['true']\n", "platforms/p.yaml:1:1: YAML syntax error:"),
        # "Billion laughs": nine levels of nine aliases. Refused at the first alias, not expanded.
        ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n", "platforms/p.yaml:2:8: YAML syntax error: aliases (*a) are not allowed here"),
        ("id: p\ndomains: [a.test]\ndomains: [b.test]\n", "platforms/p.yaml:3:1: YAML syntax error: duplicate key 'domains' (first at line 2)"),
        ("id: p\nrate: {min_delay: 1, min_delay: 2}\n", "platforms/p.yaml:2:22: YAML syntax error: duplicate key 'min_delay' (first at line 2)"),
    ],
)
def test_yaml_problems_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    """YAML syntax errors give file, line and column; unsafe tags are refused, never constructed."""
    (error,) = errors_for(tmp_path, {"p.yaml": text})
    assert error.startswith(expected), error


def test_subdomain_in_domains_is_rejected(tmp_path: Path) -> None:
    """Policies list registered domains; a subdomain is refused with the domain to write instead."""
    errors = errors_for(tmp_path, {"p.yaml": PLATFORM.replace("[partner.test]", "[www.partner.test]")})
    assert errors == ["platforms/p.yaml:1: (file): domains: 'www.partner.test' is not a registered domain; write 'partner.test' (subdomains are covered)"]


def test_missing_default_and_directory(tmp_path: Path) -> None:
    """Without default.yaml the shipped default applies; a named directory that is missing is an error, never an open policy."""
    root = make_dir(tmp_path, {}, default="collection: allowed-per-robots\nrate:\n  min_delay: 7\n  max_concurrency: 1\n")
    own, errors = load_policies(root)
    assert errors == [] and own is not None and own.default.rate.min_delay == 7
    (root / "default.yaml").unlink()
    shipped, errors = load_policies(root)
    assert errors == [] and shipped is not None and shipped.default.rate.min_delay == 0.5
    assert shipped.default_path == "shipped/default.yaml" and len(shipped.platforms) == 5
    assert load_policies(tmp_path / "nowhere")[1] == [f"{tmp_path}/nowhere: policy directory not found (COMPLIANCE_POLICY_DIR)"]
    # The project's default folder may be missing (the shipped policies apply); a named one may not.
    alone, errors = load_policies(tmp_path / "nowhere", required=False)
    assert errors == [] and alone is not None and len(alone.platforms) == 5


META_REPLACEMENT = """id: meta
name: Facebook (with our agreement)
owner: Meta Platforms, Inc.
domains: [facebook.com]
terms:
  url: https://www.facebook.com/terms
  clause: Automated collection only with written permission.
  reviewed: 2026-11-01
collection: allowed
"""


def test_shipped_platforms_are_a_floor(tmp_path: Path) -> None:
    """A valid project file replaces a shipped platform for the domains it claims; the others stay refused."""
    policies, errors = load_policies(make_dir(tmp_path, {"meta.yaml": META_REPLACEMENT, "partner.yaml": PLATFORM}))
    assert errors == [] and policies is not None
    own = policies.decide("https://www.facebook.com/page", TODAY)
    assert own.allowed and own.source.endswith("pol/platforms/meta.yaml:9")
    # The replacement left instagram.com out: the shipped policy still covers it.
    kept = policies.decide("https://www.instagram.com/someone", TODAY)
    assert kept.reason == "terms.consent-required" and kept.source == "shipped/platforms/meta.yaml:18"
    assert policies.decide("https://x.com/someone", TODAY).reason == "terms.consent-required"
    assert policies.decide("https://partner.test/public/page", TODAY).reason == "terms.consent"
    # A replacement that does not validate replaces nothing: at start-up it is an error...
    broken = META_REPLACEMENT.replace("collection: allowed", "collection: sure")
    assert errors_for(tmp_path / "b", {"meta.yaml": broken}) == [
        "platforms/meta.yaml:9: collection: must be 'forbidden', 'consent-required', 'allowed-per-robots' or 'allowed' (got 'sure')"
    ]
    # ...and on a reload the shipped policy stays in force for every Meta domain.
    root = make_dir(tmp_path / "c", {})
    before, _ = load_policies(root)
    (root / "platforms" / "meta.yaml").write_text(broken)
    after, errors = load_policies(root, fallback=before)
    assert after is not None and len(errors) == 1
    assert after.decide("https://www.facebook.com/page", TODAY).source == "shipped/platforms/meta.yaml:18"


def test_policy_commands(tmp_path: Path) -> None:
    """validate exits 0/1 with the full report; check explains; list shows consent state; schema is JSON."""
    good = make_dir(tmp_path, {"partner.yaml": PLATFORM})
    done = scrapy_command(["policy", "validate", str(good)])
    assert done.returncode == 0 and "valid (6 platform policies" in done.stdout
    (good / "platforms" / "broken.yaml").write_text("id: Bad Id\n")
    done = scrapy_command(["policy", "validate", str(good)])
    assert done.returncode == 1 and "broken.yaml:1: id: String should match pattern" in done.stdout
    assert "Traceback" not in done.stderr
    done = scrapy_command(["policy", "check", "https://www.venmo.com/u/someone", "--json"])
    report = json.loads(done.stdout)
    assert report["allowed"] is False and report["platform"] == "venmo"
    assert report["decision"]["reason"] == "terms.consent-required" and report["decision"]["source"] == "shipped/platforms/venmo.yaml:17"
    done = scrapy_command(["policy", "check", "https://www.linkedin.com/in/x"])
    assert "REFUSED: terms.consent-required" in done.stdout and "shipped/platforms/linkedin.yaml" in done.stdout
    done = scrapy_command(["policy", "list"])
    assert "venmo        consent-required    none            venmo.com" in done.stdout
    done = scrapy_command(["policy", "schema"])
    assert json.loads(done.stdout)["anyOf"]


def test_a_platforms_path_that_cannot_be_listed_is_an_error(tmp_path: Path) -> None:
    """`platforms` as a file (or a folder that cannot be listed) is an error, never "no platform policies"."""
    policies = policy_dir_with_pace(tmp_path / "policies")
    shutil.rmtree(policies / "platforms")
    (policies / "platforms").write_text("not a folder")
    loaded, errors = load_policies(policies)
    assert loaded is None and len(errors) == 1 and "platforms:1: (folder): cannot be read" in errors[0]
