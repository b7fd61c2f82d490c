"""Notices: the model, files with FILE:LINE errors, scope matching and the registry's decisions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawler.compliance.notices import (
    CompiledScope, Notice, NoticeSet, Scope, load_notice_files, merge_notices, notice_type,
)  # fmt: skip
from crawler.compliance.policy import json_schema, load_policies
from crawler.testing.runner import policy_dir_with_pace, scrapy_command

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def notice(**changes: object) -> Notice:
    fields: dict[str, object] = {
        "id": "n1", "sender_name": "Legal Dept", "date_received": "2026-11-20", "type": "Other",
        "tags": ["cease-and-desist"], "scope": {"domains": ["news.test"]}, "effective_at": "2026-11-20T00:00:00Z",
    }  # fmt: skip
    fields.update(changes)
    return Notice.model_validate(fields)


def registry(*notices: Notice) -> NoticeSet:
    return NoticeSet.build(merge_notices([], [(n, []) for n in notices], None), "test")


def test_cease_and_desist_alias_is_lumen_other_with_tag() -> None:
    """`cease-and-desist` is stored as Lumen's type Other with the tag; Lumen's own types pass through."""
    assert notice_type("cease-and-desist") == ("Other", ["cease-and-desist"])
    assert notice_type("dmca") == ("DMCA", [])
    with pytest.raises(ValueError, match="unknown notice type 'letter'"):
        notice_type("letter")
    assert notice().is_cease_and_desist
    assert not notice(type="DMCA", tags=[]).is_cease_and_desist


def test_scope_covers_domain_and_subdomains_only() -> None:
    """A domain scope covers the registered domain and its subdomains, nothing that merely ends alike."""
    decide = registry(notice()).decide
    assert decide("http://news.test/a", NOW).reason == "notice.n1"
    assert decide("https://blog.news.test/x?y=1", NOW).reason == "notice.n1"
    assert decide("http://othernews.test/", NOW).allowed
    assert decide("http://news.test.evil.test/", NOW).allowed


def test_url_patterns_match_path_and_ignore_scheme() -> None:
    """URL patterns use robots syntax in the path; an objection to https also covers http."""
    decide = registry(notice(scope={"url_patterns": ["https://shop.test/people/*/photos", "https://shop.test/exact$"]})).decide
    assert not decide("http://shop.test/people/ann/photos/1", NOW).allowed
    assert not decide("https://shop.test/exact", NOW).allowed
    assert decide("https://shop.test/exact/more", NOW).allowed
    assert decide("https://shop.test/people/", NOW).allowed
    assert decide("https://www.shop.test/people/ann/photos", NOW).allowed


def test_decision_names_the_notice_rule_and_source() -> None:
    """The refusal carries notice.<id>, the sender and the rule, like every gate's decision."""
    decision = registry(notice()).decide("http://news.test/", NOW)
    assert decision.reason == "notice.n1"
    assert "cease-and-desist from Legal Dept" in decision.rule and "domain news.test" in decision.rule
    assert decision.source == "store: notice n1"


def test_future_withdrawn_and_non_blocking_notices_do_not_refuse() -> None:
    """Blocking starts at effective_at, ends with withdrawal, and needs the stop_collection demand."""
    later = notice(effective_at=(NOW + timedelta(hours=1)).isoformat())
    assert registry(later).decide("http://news.test/", NOW).allowed
    assert not registry(later).decide("http://news.test/", NOW + timedelta(hours=2)).allowed
    withdrawn = notice(status="withdrawn", withdrawn_at="2026-11-25T00:00:00Z")
    assert registry(withdrawn).decide("http://news.test/", NOW).allowed
    keep_crawling = notice(demands={"stop_collection": False, "delete_existing": True})
    assert registry(keep_crawling).decide("http://news.test/", NOW).allowed


def test_platform_scope_uses_the_platform_policy_domains(tmp_path: Path) -> None:
    """A platform notice covers every domain of that platform's policy, plus those recorded at filing."""
    policies, errors = load_policies(policy_dir_with_pace(tmp_path / "p"))
    assert policies is not None, errors
    scope = CompiledScope.build(Scope(platform="meta"), policies, ["old-meta.test"])
    assert scope.match("https://www.instagram.com/x") == "domain instagram.com"
    assert scope.match("https://old-meta.test/") == "domain old-meta.test"
    assert scope.match("https://x.com/") is None


def test_store_version_wins_over_a_stale_file(tmp_path: Path) -> None:
    """A notice withdrawn in the store stops blocking even if a stale copy of its file says active."""
    directory = tmp_path / "policies"
    (directory / "notices").mkdir(parents=True)
    (directory / "notices" / "n1.yaml").write_text(json.dumps(notice().as_record()), encoding="utf-8")
    files, errors = load_notice_files(directory)
    assert not errors and len(files) == 1
    assert not NoticeSet.build(merge_notices(files, [], None), "v").decide("http://news.test/", NOW).allowed
    withdrawn = notice(status="withdrawn", withdrawn_at="2026-11-25T00:00:00Z")
    assert NoticeSet.build(merge_notices(files, [(withdrawn, [])], None), "v").decide("http://news.test/", NOW).allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: n1\nsender_name: X\ndate_received: 2026-11-20\nscope: {}\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:4: scope: give at least one of platform, domains or url_patterns"),
        ("id: n1\nsender_name: X\ndate_received: 2026-11-20\nscope:\n  domains: [www.news.test]\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:4: scope: domains: 'www.news.test' is not a registered domain; write 'news.test'"),
        ("id: n1\nsender_name: X\ndate_received: 2026-11-20\nscope: {domains: [news.test]}\neffective_at: 2026-11-20T00:00:00\n",
         "n1.yaml:5: effective_at: Input should have timezone info"),
        ("id: n1\ntype: Letter\nsender_name: X\ndate_received: 2026-11-20\nscope: {domains: [news.test]}\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:2: type: must be 'DMCA', 'CourtOrder'"),
        ("id: n1\nsender: X\nsender_name: X\ndate_received: 2026-11-20\nscope: {domains: [news.test]}\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:2: sender: unknown field; accepted here: id, type, title, sender_name"),
        ("id: n1\nsender_name: X\ndate_received: 2026-11-20\nscope: {platform: nosuch}\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:4: scope.platform: unknown platform 'nosuch'; known: meta"),
        ("id: other\nsender_name: X\ndate_received: 2026-11-20\nscope: {domains: [news.test]}\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:1: id: 'other' must match the file name (n1.yaml)"),
        ("id: n1\n  bad: [\n", "n1.yaml:2:"),
        ("id: n1\nsender_name: X\ndate_received: 2024-02-30\nscope: {domains: [news.test]}\neffective_at: 2026-11-20T00:00:00Z\n",
         "n1.yaml:3: date_received: Input should be a valid date"),
    ],
)  # fmt: skip
def test_notice_file_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    """Every problem in a notice file is reported as FILE:LINE: field: message."""
    (tmp_path / "notices").mkdir()
    (tmp_path / "notices" / "n1.yaml").write_text(text, encoding="utf-8")
    loaded, errors = load_notice_files(tmp_path, ["meta"])
    assert not loaded
    assert any(expected in e for e in errors), errors


def test_schema_covers_notices() -> None:
    """The one JSON Schema describes notice files too, generated from the model."""
    schema = json_schema()
    assert {"$ref": "#/$defs/Notice"} in schema["anyOf"]
    assert "scope" in schema["$defs"]["Notice"]["required"]


def test_policy_validate_checks_notice_files(tmp_path: Path) -> None:
    """`scrapy policy validate` fails on a broken notice file and names its line."""
    directory = policy_dir_with_pace(tmp_path / "policies")
    (directory / "notices").mkdir()
    (directory / "notices" / "bad.yaml").write_text("id: bad\nsender_name: X\ndate_received: soon\n", encoding="utf-8")
    done = scrapy_command(["policy", "validate", str(directory)])
    assert done.returncode == 1
    assert "bad.yaml:3: date_received:" in done.stdout
    (directory / "notices" / "bad.yaml").unlink()
    done = scrapy_command(["policy", "validate", str(directory)])
    assert done.returncode == 0 and "0 notices" in done.stdout


def test_clock_skew_enforces_early_not_late() -> None:
    """A notice stamped by a machine whose clock runs ahead is enforced at once (up to a minute early)."""
    ahead = notice(effective_at=(NOW + timedelta(seconds=30)).isoformat())
    assert not registry(ahead).decide("http://news.test/", NOW).allowed
    far = notice(effective_at=(NOW + timedelta(days=1)).isoformat())
    assert registry(far).decide("http://news.test/", NOW).allowed


def test_idn_and_trailing_dot_hosts_are_covered() -> None:
    """A Unicode domain is stored in IDNA form and covers the punycode URLs Scrapy requests; a trailing dot changes nothing."""
    idn = notice(scope={"domains": ["bücher.test"]})
    assert idn.scope.domains == ["xn--bcher-kva.test"]
    assert not registry(idn).decide("https://xn--bcher-kva.test/x", NOW).allowed
    pattern = notice(scope={"url_patterns": ["https://news.test/private/*"]})
    assert not registry(pattern).decide("https://news.test./private/a", NOW).allowed
    assert not registry(notice()).decide("https://news.test./a", NOW).allowed


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("co.uk", "'co.uk' is a public suffix"), ("uk", "'uk' is a public suffix"), ("test", "'test' is a public suffix"),
        ("", "an empty domain covers nothing"), (".", "an empty domain covers nothing"),
    ],
)  # fmt: skip
def test_scope_refuses_domains_that_would_match_nothing(domain: str, message: str) -> None:
    """A public suffix or an empty name is refused, not accepted as a notice that silently blocks nothing."""
    with pytest.raises(ValueError, match=message):
        Scope(domains=[domain])


def test_scope_ipv6_literal_matches_its_urls() -> None:
    scope = CompiledScope.build(Scope(domains=["[::1]"]), None)
    assert scope.match("http://[::1]:8080/x") is not None and scope.match("http://[::2]/x") is None


def filed_notice(tmp_path: Path, domain: str) -> tuple[str, Path, list[str]]:
    """A SQLite store and policy folder with notice ``n1`` on ``domain`` filed by `scrapy notice add`: (url, policies, -s args)."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    policies = policy_dir_with_pace(tmp_path / "policies")
    settings = ["-s", f"COMPLIANCE_STORE={url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"]
    added = scrapy_command(["notice", "add", "--domain", domain, "--sender", "S", "--received", "2026-11-26",
                            "--id", "n1", "--keep-existing", *settings])  # fmt: skip
    assert added.returncode == 0, added.stderr
    return url, policies, settings


def test_a_damaged_notice_row_is_one_error_line_not_a_traceback(tmp_path: Path) -> None:
    """A damaged notice row is read as the ledger recorded it (with a warning); with no ledger entry either, one line and exit 1."""
    from crawler.compliance.store import Store

    url, policies, settings = filed_notice(tmp_path, "bigsocial.test")
    store = Store(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("""UPDATE notices SET data = '{"id": "n1", "unexpected": 1}'""")
    for command in (["notice", "list"], ["notice", "show", "n1"]):
        done = scrapy_command([*command, *settings])
        assert done.returncode == 0 and "Traceback" not in done.stderr, (command, done.stderr)
        assert "warning: notice n1: the registry disagrees with the ledger (" in done.stdout
        assert "unexpected is 1 in the registry, null in the ledger" in done.stdout
    done = scrapy_command(["policy", "check", "http://bigsocial.test/", *settings])
    assert "REFUSED: notice.n1" in done.stdout, done.stdout
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM ledger")
    store.dispose()
    for command in (["notice", "list"], ["notice", "show", "n1"], ["policy", "check", "http://bigsocial.test/"]):
        done = scrapy_command([*command, *settings])
        assert done.returncode == 1 and "Traceback" not in done.stderr, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, lines)


def test_listing_trusts_only_filed_domains_and_skips_the_suffix_list_for_them(tmp_path: Path) -> None:
    """`notice list` checks a filed notice's domains without loading the suffix list; any other file is checked in full."""
    from crawler.compliance.notices import FILED_DOMAINS, load_notice_files

    _, policies, settings = filed_notice(tmp_path, "news.test")
    # A filed notice only: its domain is the ledger's, and the list never imports tldextract (issue #13's startup target).
    listed = scrapy_command(["notice", "list", *settings], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert listed.returncode == 0 and "n1" in listed.stdout and "domain news.test" in listed.stdout, listed.stderr
    assert "| tldextract" not in listed.stderr and "| crawler.compliance.notices" in listed.stderr
    # A file the store does not hold, naming a public suffix: checked in full, so reported, never listed as valid.
    (policies / "notices" / "n2.yaml").write_text((policies / "notices" / "n1.yaml").read_text()
                                                 .replace("n1", "n2").replace("news.test", "co.uk"))  # fmt: skip
    listed = scrapy_command(["notice", "list", *settings])
    assert listed.returncode == 0 and "n1" in listed.stdout, listed.stderr
    assert re.search(r"warning: .*n2\.yaml:\d+: scope: .*'co\.uk' is a public suffix", listed.stdout), listed.stdout
    assert "n2 " not in listed.stdout
    # Trust covers exactly the domains given: the same file passes only when its own domain is vouched for.
    assert [n.notice.id for n in load_notice_files(policies, filed_domains={"n1": {"news.test"}})[0]] == ["n1"]
    assert [n.notice.id for n in load_notice_files(policies, filed_domains={"n1": {"news.test", "co.uk"}})[0]] == ["n1"]
    assert sorted(n.notice.id for n in load_notice_files(policies, filed_domains={"n2": {"co.uk"}})[0]) == ["n1", "n2"]
    with pytest.raises(ValueError, match="public suffix"):
        Notice.model_validate({**notice().as_record(), "scope": {"domains": ["co.uk"]}}, context={FILED_DOMAINS: {"news.test"}})


@pytest.mark.parametrize(
    "url",
    ["http://x.test/%7Eann/1", "http://x.test/%7eann/1", "http://x.test/~ann/1", "https://x.test:8443/%7Eann/2"],
)
def test_url_patterns_cannot_be_evaded_by_percent_encoding(url: str) -> None:
    """A pattern and a URL are normalised alike (%7E and ~, upper and lower hex), as robots.txt paths are."""
    scope = CompiledScope.build(Scope(url_patterns=["https://x.test/~ann/*"]), None)
    assert scope.match(url) == "URLs https://x.test/~ann/*"
    cafe = CompiledScope.build(Scope(url_patterns=["https://x.test/café/*"]), None)
    assert cafe.match("http://x.test/caf%c3%a9/menu") and cafe.match("http://x.test/caf%C3%A9/menu")


def test_url_pattern_with_a_fragment_is_refused() -> None:
    """URLs never carry '#...' to a server, so a pattern with one could never match: refused, not silently inert."""
    with pytest.raises(ValueError, match="url_patterns"):
        Scope(url_patterns=["https://x.test/page#section"])


def test_a_notices_path_that_is_not_a_readable_folder_fails_closed(tmp_path: Path) -> None:
    """`notices` as a file (or a folder that cannot be listed) is an error, never "no notices"."""
    from crawler.compliance.notices import load_notice_files

    (tmp_path / "notices").write_text("not a folder")
    loaded, errors = load_notice_files(tmp_path)
    assert loaded == [] and len(errors) == 1 and "notices:1: (folder): cannot be read" in errors[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--received", "2999-01-01"], "error: notice: date_received (2999-01-01) is in the future"),
        (["--received", "2026-11-20", "--sent", "2026-11-21"], "error: notice: date_sent (2026-11-21) is after date_received (2026-11-20)"),
    ],
)
def test_notice_dates_that_cannot_be_are_one_clear_line(tmp_path: Path, options: list[str], message: str) -> None:
    policies = policy_dir_with_pace(tmp_path / "policies")
    done = scrapy_command(["notice", "add", "--domain", "bigsocial.test", "--sender", "S", *options,
                           "-s", f"COMPLIANCE_STORE=sqlite:///{tmp_path / 's.sqlite3'}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"])  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip() == message, done.stderr


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("*", "'*' is not a domain name: wildcards are not accepted"),
        ("*.bigsocial.test", "wildcards are not accepted"),
        ("exa mple.com", "'exa mple.com' is not a domain name: a domain name has no spaces"),
        ("a_b.com", "'a_b' is not a DNS label"),
        ("-shop.com", "'-shop' is not a DNS label"),
        ("a..com", "has an empty label"),
        ("x" * 64 + ".com", "is not a DNS label"),
        ("xn--zz.com", "'xn--zz' is not valid IDNA"),
        ("example.zzzz", "is not under a public suffix the bundled Public Suffix List knows"),
        ("intranet", "is not under a public suffix"),
    ],
)  # fmt: skip
def test_scope_accepts_only_syntactically_valid_registered_domains(domain: str, message: str) -> None:
    """Wildcards, spaces, bad labels, bad punycode and names outside the suffix list are refused, each saying why."""
    with pytest.raises(ValueError, match=re.escape(message)):
        Scope(domains=[domain])


@pytest.mark.parametrize("domain", ["bigsocial.test", "bücher.de", "x.co.uk", "foo.localhost", "127.0.0.1", "[::1]"])
def test_scope_keeps_accepting_real_registered_domains_and_addresses(domain: str) -> None:
    assert Scope(domains=[domain]).domains


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("https://u@x.test/p/*", "not user information"),
        ("https://x.test:99999/p", "the port is not a number"),
        ("https://x..test/p", "host 'x..test': has an empty label"),
        ("https://exa%20mple.test/p", "is not a DNS label"),
        ("https://[::1/p", "Invalid IPv6 URL"),
        ("https://x.test/p\x01", "control characters"),
        ("https://*.x.test/p", "url_patterns.0"),
    ],
)  # fmt: skip
def test_url_patterns_must_name_a_valid_host(pattern: str, message: str) -> None:
    """A pattern whose host could never appear in a URL is refused, not recorded as a notice that blocks nothing."""
    with pytest.raises(ValueError, match=re.escape(message)):
        Scope(url_patterns=[pattern])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--domain", "*"], "error: scope: domains: '*' is not a domain name: wildcards are not accepted (a domain covers its subdomains already)"),
        (["--domain", "exa mple.com"], "error: scope: domains: 'exa mple.com' is not a domain name: a domain name has no spaces"),
        (["--url-pattern", "https://exa mple.com/*"], "error: scope: url_patterns.0: String should match pattern"),
    ],
)  # fmt: skip
def test_notice_add_refuses_names_that_match_nothing_in_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    """`notice add --domain '*'` and `--domain 'exa mple.com'`: one line, exit 1, nothing recorded, no file written."""
    from crawler.compliance.store import Store

    policies = policy_dir_with_pace(tmp_path / "policies")
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    done = scrapy_command(["notice", "add", *options, "--sender", "S", "--received", "2026-11-26",
                           "-s", f"COMPLIANCE_STORE={url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"])  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert Store(url).notice_rows() == [] and not (policies / "notices").exists()


def test_a_notice_file_with_a_wildcard_domain_is_a_file_line_error(tmp_path: Path) -> None:
    from crawler.compliance.notices import load_notice_files

    (tmp_path / "notices").mkdir()
    (tmp_path / "notices" / "w.yaml").write_text(
        "id: w\nsender_name: S\ndate_received: 2026-11-26\neffective_at: 2026-11-26T00:00:00Z\nscope:\n  domains: ['*']\n"
    )
    loaded, errors = load_notice_files(tmp_path)
    assert loaded == [] and errors == [f"{tmp_path}/notices/w.yaml:5: scope: domains: '*' is not a domain name: "
                                       "wildcards are not accepted (a domain covers its subdomains already)"]  # fmt: skip
