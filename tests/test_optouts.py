"""Opt-out signals: parsing, scoping, precedence, purposes, and a real crawl."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.compliance.optouts import (
    PURPOSES,
    collect_signals,
    parse_content_signal,
    parse_content_usage,
    parse_purposes,
    robots_directives,
    storage_decision,
)
from crawler.testing.runner import run_site_crawl
from crawler.testing.sites import optout_sites
from crawler.testing.web import TestWeb

ALL = frozenset(PURPOSES)
TOKEN = "EthicalCrawler"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["noindex, NOFOLLOW"], ["noindex", "nofollow"]),
        (["otherbot: noindex"], []),
        (["ethicalcrawler: noai", "otherbot: none"], ["noai"]),
        (["googlebot: nofollow, noai", "noarchive"], ["noarchive"]),
        (["unavailable_after: 2030-01-01, noindex"], ["unavailable_after: 2030-01-01", "noindex"]),
        ([" , ,"], []),
        # Directives with values are not bot scopes: what follows them still counts.
        (["max-snippet: 20, noindex"], ["max-snippet: 20", "noindex"]),
        (["max-image-preview:large, noindex, nofollow"], ["max-image-preview:large", "noindex", "nofollow"]),
        (["nosnippet, max-video-preview:-1, noai"], ["nosnippet", "max-video-preview:-1", "noai"]),
        # A date with commas and colons: its pieces are neither bots nor directives.
        (["unavailable_after: Wed, 03-Dec-2030T15:00:00, noindex"], ["unavailable_after: wed", "noindex"]),
        (["unavailable_after: Wednesday, 03 Dec 2030 15:00:00 PST, NOIMAGEAI"], ["unavailable_after: wednesday", "noimageai"]),
        (["otherbot: max-snippet: 10, noindex", "EthicalCrawler:noarchive"], ["noarchive"]),
        (["someday-directive, noindex"], ["noindex"]),  # unknown directives are dropped
        (["noindex, " * 500], ["noindex"] * 64),  # bounded

    ],
)
def test_robots_directive_scoping(values: list[str], expected: list[str]) -> None:
    """Directives are case-insensitive comma lists; `bot:` scopes them to that bot only."""
    assert robots_directives(values, TOKEN) == expected


# The examples draft-ietf-aipref-vocab gives in its own text (section numbers
# of the -07/-08 layout), each with the outcome the draft states.
VOCAB_EXAMPLES = [
    # 6: "allow model training, disallow search, other categories unknown"
    ("train-ai=y, search=n", {"train-ai": "y", "search": "n"}),
    # 6.5.1: the last value of a repeated key applies; a boolean and a string
    # are not tokens, so every preference is unknown
    ('train-ai=y, train-ai, search=n, search="n"', {"train-ai": None, "search": None}),
    # 6.5.1: keys with uppercase characters fail to parse: all unknown
    ("Train-AI=n, SEARCH=n", {}),
    # 6.5.2: only the selected value's parameters count: no parameters, allowed
    ("train-ai;allow=n, train-ai=y", {"train-ai": "y"}),
    # 6.5.2: parameters on a value that is not a token: unknown. The draft
    # prints it with a trailing ";", which RFC 9651 rejects: unknown too.
    ('train-ai;has;parameters="?"', {"train-ai": None}),
    ('train-ai;has;parameters="?";', {}),
    # attach-05 section 1.1: the header example
    ("train-ai=n", {"train-ai": "n"}),
]


@pytest.mark.parametrize(("statement", "expected"), VOCAB_EXAMPLES)
def test_content_usage_draft_examples(statement: str, expected: dict) -> None:
    """Every example in the aipref vocabulary draft gives the preference the draft says it does."""
    assert parse_content_usage(statement) == expected


@pytest.mark.parametrize(
    ("header", "expected", "note"),
    [
        ("train-ai=maybe", {"train-ai": None}, "train-ai: maybe is not y or n, so unknown"),
        ('train-ai="n"', {"train-ai": None}, 'train-ai: "n" is not y or n, so unknown'),
        ("train-ai=(n)", {"train-ai": None}, "train-ai: an inner list is not y or n, so unknown"),
        ('train-ai=n, search="', {}, "not an RFC 9651 dictionary"),  # one bad member: the whole statement
        ("train-ai=n, train-ai=y", {"train-ai": "y"}, "train-ai appears more than once: its last value applies"),
        ("train-ai=n;q=1, other=y", {"train-ai": "n"}, "not in the vocabulary, ignored: other"),
        # Labels of other or earlier revisions are not in the vocabulary: ignored.
        ("ai-use=n, all=n, bots=n", {}, "not in the vocabulary, ignored: ai-use, all, bots"),
        ("train-ai=n\u00e9", {}, "not an RFC 9651 dictionary"),  # bytes, not text
        ("", {}, None),
    ],
)
def test_content_usage_odd_values(header: str, expected: dict, note: str | None) -> None:
    """Anything but the tokens y/n is unknown, each with a reason; no value raises."""
    notes: list[str] = []
    assert parse_content_usage(header, notes) == expected
    if note is None:
        assert notes == []
    else:
        assert any(n.startswith(note) for n in notes), notes


def test_content_usage_statements_combine_n_wins() -> None:
    """Header field lines form one dictionary; separate statements (header, robots.txt) combine: any n wins."""
    lines = collect_signals({"content-usage": ["train-ai=n", "train-ai=y"]}, [], TOKEN)
    assert lines.content_usage == {"train-ai": "y"}  # one field, last value
    both = collect_signals(
        {"content-usage": ["train-ai=y, search=y"]}, [], TOKEN,
        robots_usage={"content-usage": [("train-ai=n", "r:4"), ("search=y", "r:5")]},
    )  # fmt: skip
    assert both.content_usage == {"train-ai": "n", "search": "y"}
    # n wins wherever it stands: first, last, or between two y.
    for order in (["train-ai=n", "train-ai=y"], ["train-ai=y", "train-ai=n"], ["train-ai=y", "train-ai=n", "train-ai=y"]):
        rules = [(statement, f"r:{n}") for n, statement in enumerate(order)]
        combined = collect_signals({}, [], TOKEN, robots_usage={"content-usage": rules})
        assert combined.content_usage == {"train-ai": "n"}, order
        assert combined.content_usage_denied_by == {"train-ai": f"Content-Usage in r:{order.index('train-ai=n')}"}
    unknown = collect_signals({"content-usage": ["train-ai=maybe"]}, [], TOKEN, robots_usage={"content-usage": [("train-ai=y", "r:2")]})
    assert unknown.content_usage == {"train-ai": "y"}  # unknown does not reset y
    assert "Content-Usage header 'train-ai=maybe': train-ai: maybe is not y or n, so unknown" in unknown.problems


def test_content_signal() -> None:
    """Cloudflare's Content-Signal maps onto our purposes; ai-input counts as train-ai; junk is ignored with a reason."""
    assert parse_content_signal("search=yes, ai-train=no, ai-input=no") == {"search": "y", "train-ai": "n"}
    assert parse_content_signal("ai-train=yes, ai-input=no") == {"train-ai": "n"}
    assert parse_content_signal("ai-input=no, ai-train=yes") == {"train-ai": "n"}
    notes: list[str] = []
    assert parse_content_signal("search=perhaps, =, nonsense, ai-train=nope", notes) == {}
    assert notes == [
        "search=perhaps: not yes or no, ignored",
        ": not a Content-Signal we know (search, ai-train, ai-input), ignored",
        "nonsense: not a Content-Signal we know (search, ai-train, ai-input), ignored",
        "ai-train=nope: not yes or no, ignored",
    ]
    logged = collect_signals({"content-signal": ["ai-train=nope"]}, [], TOKEN)
    assert logged.problems == ("Content-Signal header 'ai-train=nope': ai-train=nope: not yes or no, ignored",)


def test_hostile_values_are_bounded_and_non_ascii_bytes_fail_the_parse() -> None:
    """A huge header is clipped in provenance; a non-ASCII byte makes a Content-Usage statement unknown."""
    huge = "train-ai=maybe, " + "x" * 400_000
    signals = collect_signals({"content-usage": [huge] * 50, "content-signal": ["junk"] * 200}, [], TOKEN)
    assert len(repr(signals.as_dict())) < 10_000
    assert parse_content_usage('train-ai=y, x="\u4e2d"') == {}
    assert parse_content_usage('search=n, x="\ufffd"') == {}


def test_tdmrep_layers() -> None:
    """Well-known < header < meta; a layer without a valid value does not reset the one before."""
    assert collect_signals({}, [], TOKEN, tdm_well_known=1, tdm_well_known_source="tdmrep.json").tdm_reservation == 1
    assert collect_signals({"tdm-reservation": ["0"]}, [], TOKEN, tdm_well_known=1).tdm_reservation == 0
    over = collect_signals({"tdm-reservation": ["1"]}, [("tdm-reservation", "0")], TOKEN)
    assert (over.tdm_reservation, over.tdm_source) == (0, '<meta name="tdm-reservation">')
    bad = collect_signals({"tdm-reservation": ["1"]}, [("tdm-reservation", "2")], TOKEN)
    assert (bad.tdm_reservation, bad.tdm_source) == (1, "tdm-reservation header")
    # An invalid header does not reset the well-known layer either.
    kept = collect_signals({"tdm-reservation": ["yes"]}, [], TOKEN, tdm_well_known=1, tdm_well_known_source="f entry 0",
                           tdm_well_known_policy="https://p.test/wk")  # fmt: skip
    assert (kept.tdm_reservation, kept.tdm_source, kept.tdm_policy) == (1, "f entry 0", "https://p.test/wk")
    # tdm-policy comes from the layer that decided, not from one it overrode.
    header = collect_signals({"tdm-reservation": ["0"]}, [], TOKEN, tdm_well_known=1, tdm_well_known_policy="https://p.test/wk")
    assert (header.tdm_reservation, header.tdm_policy) == (0, "")
    meta = collect_signals({"tdm-reservation": ["0"], "tdm-policy": ["https://p.test/h"]},
                           [("tdm-reservation", "1"), ("tdm-policy", "https://p.test/m")], TOKEN)  # fmt: skip
    assert (meta.tdm_reservation, meta.tdm_policy) == (1, "https://p.test/m")


def test_most_restrictive_wins_and_purposes() -> None:
    """noindex beats purpose-specific signals; purpose-specific ones apply only to their purposes."""
    signals = collect_signals({"x-robots-tag": ["noai"]}, [("robots", "noindex")], TOKEN)
    assert storage_decision(signals, ALL).reason == "optout.noindex"
    noai = collect_signals({}, [(TOKEN, "noai")], TOKEN)
    assert storage_decision(noai, ALL).reason == "optout.noai"
    noimageai = collect_signals({"x-robots-tag": ["noimageai"]}, [], TOKEN)
    assert storage_decision(noimageai, ALL).reason == "optout.noimageai"
    assert storage_decision(noimageai, frozenset({"search"})).allowed
    assert storage_decision(noai, frozenset({"search", "archive"})).allowed
    archive = collect_signals({}, [("robots", "noarchive")], TOKEN)
    assert storage_decision(archive, frozenset({"search"})).allowed
    assert storage_decision(archive, frozenset({"archive"})).reason == "optout.noarchive"
    tdm = collect_signals({"tdm-reservation": ["1"]}, [], TOKEN)
    assert storage_decision(tdm, frozenset({"train-ai"})).reason == "optout.tdmrep"
    assert storage_decision(tdm, frozenset({"search"})).allowed


def test_purposes_setting() -> None:
    """COMPLIANCE_PURPOSES defaults to every purpose and rejects unknown ones by name."""
    assert parse_purposes(None) == ALL and parse_purposes("search, archive") == {"search", "archive"}
    with pytest.raises(ValueError, match="unknown purpose.*ai-everything.*choose from search, train-ai, archive"):
        parse_purposes("search,ai-everything")


@pytest.fixture
def oweb() -> Iterator[TestWeb]:
    with TestWeb(optout_sites()) as server:
        yield server
        assert not server.unknown_hosts()


def _crawl(web: TestWeb, store_url: str, policy_dir: Path, env: dict, *urls: str, **settings: object):  # type: ignore[no-untyped-def]
    """A checked crawl of ``urls`` (default: optout.test's home) with the test policies."""
    return run_site_crawl(
        web, list(urls or ["http://optout.test/"]), store_url, env=env,
        settings={"COMPLIANCE_POLICY_DIR": str(policy_dir), **settings},
    ).check()  # fmt: skip


def test_every_signal_end_to_end(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """With every purpose, each opted-out page is not stored, nofollow links are not followed, the rest is."""
    run = _crawl(oweb, store_url, policy_dir, guard_env)
    stored = {i["url"].removeprefix("http://optout.test") for i in run.store.iter_items()}
    assert stored == {"/", "/other-bot", "/nofollow", "/cu-unknown", "/cu-broken", "/cu-last-wins", "/cu-other-labels",
                      "/tdm-meta-override", "/from-noindex", "/from-other-bot", "/plain"}  # fmt: skip
    requested = set(oweb.paths("optout.test"))
    assert "/from-noindex" in requested  # not stored, but its links are followed
    assert not {"/from-nofollow", "/from-none", "/from-snippet"} & requested
    reasons = {r["url"].removeprefix("http://optout.test"): r["reason"] for r in run.store.refusals()}
    assert reasons == {
        "/noindex": "optout.noindex", "/xrt-noindex": "optout.noindex", "/our-bot": "optout.noindex",
        "/none": "optout.noindex", "/noarchive": "optout.noarchive", "/noai": "optout.noai",
        "/snippet-meta": "optout.noindex", "/snippet-header": "optout.noindex", "/meta-quoted-gt": "optout.noindex",
        "/meta-entity": "optout.noindex", "/meta-utf16": "optout.noindex",
        "/cu-train-n": "optout.content-usage", "/cu-two-lines": "optout.content-usage", "/cs": "optout.content-signal", "/tdm-header": "optout.tdmrep",
        "/tdm-bad-meta": "optout.tdmrep",
    }  # fmt: skip
    assert "compliance/refused/optout.tdmrep': 2" in run.stderr
    # Malformed values are ignored with a logged reason, never a crash.
    assert "Opt-out signal ignored on http://optout.test/cu-broken: Content-Usage header 'train-ai=\"n'" in run.stderr
    assert """Opt-out signal ignored on http://optout.test/tdm-bad-meta: <meta name="tdm-reservation" content='2'>""" in run.stderr
    home = next(i for i in run.store.iter_items() if i["url"] == "http://optout.test/")
    assert home["provenance"]["optouts"]["purposes"] == ["archive", "search", "train-ai"]
    nofollow = next(i for i in run.store.iter_items() if i["url"] == "http://optout.test/nofollow")
    assert nofollow["provenance"]["optouts"]["signals"]["robots"] == [["nofollow", '<meta name="robots">']]
    # Provenance records each family as seen at fetch time, with the policy version.
    by_url = {i["url"].removeprefix("http://optout.test"): i["provenance"] for i in run.store.iter_items()}
    last_wins = by_url["/cu-last-wins"]["optouts"]["signals"]
    assert (last_wins["content_usage"], last_wins["content_usage_source"]) == ({"train-ai": "y"}, "Content-Usage header")
    tdm_override = by_url["/tdm-meta-override"]["optouts"]["signals"]
    assert (tdm_override["tdm_reservation"], tdm_override["tdm_source"]) == (0, '<meta name="tdm-reservation">')
    assert "tdm_policy" not in tdm_override  # the header's layer was overridden, its policy with it
    assert all((p.get("terms") or {}).get("policies") for p in by_url.values()), by_url["/"]
    # `scrapy policy check` shows the response layer as the crawl saw it.
    from crawler.testing.runner import scrapy_command

    done = scrapy_command(["policy", "check", "http://optout.test/cs", "--json"],
                          settings={"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policy_dir)})  # fmt: skip
    import json

    seen = json.loads(done.stdout)["seen_by_crawls"]
    assert seen["stored"] is False and "optout.content-signal" in seen["lines"][0]


def test_search_only_crawl_keeps_ai_opted_out_pages(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """A crawl for search only stores pages that opted out of AI training or archiving, not noindex ones."""
    run = _crawl(oweb, store_url, policy_dir, guard_env, COMPLIANCE_PURPOSES="search")
    stored = {i["url"].removeprefix("http://optout.test") for i in run.store.iter_items()}
    assert {"/noai", "/cu-train-n", "/tdm-header", "/noarchive", "/cs"} <= stored  # cs: search=yes, ai-train=no
    assert not {"/noindex", "/xrt-noindex", "/none", "/our-bot"} & stored


ATTACH_EXAMPLE = (
    b"User-Agent: *\nAllow: /\nDisallow: /never/\nContent-Usage: train-ai=n\nContent-Usage: /ai-ok/ train-ai=y\n\n"
    b"User-Agent: ExampleBot\nAllow: /\nContent-Usage: train-ai=y\n"
)


@pytest.mark.parametrize(
    ("agent", "path", "crawl", "preference"),
    [
        # draft-ietf-aipref-attach-05 section 3.4, its table of paths
        ("EthicalCrawler", "/test", True, ["train-ai=n"]),
        ("EthicalCrawler", "/never/test", False, None),
        ("EthicalCrawler", "/ai-ok/test", True, ["train-ai=y"]),
        # and its ExampleBot group
        ("ExampleBot", "/never/test", True, ["train-ai=y"]),
    ],
)
def test_robots_txt_usage_attach_example(agent: str, path: str, crawl: bool, preference: list[str] | None) -> None:
    """The attach draft's robots.txt example gives the table of crawl and usage it prints."""
    from crawler.compliance.robots import RobotsRules

    rules = RobotsRules(ATTACH_EXAMPLE, "http://h.test/robots.txt")
    assert rules.decide(f"http://h.test{path}", agent).allowed is crawl
    if preference is not None:
        assert [v for v, _ in rules.usage_rules(f"http://h.test{path}", agent)["content-usage"]] == preference


def test_robots_txt_usage_rules() -> None:
    """Our group's rules: longest pattern wins (with * and $); identical paths all apply; SP or HTAB ends the path."""
    from crawler.compliance.robots import RobotsRules

    rules = RobotsRules(
        b"User-agent: *\nContent-Usage: train-ai=n\nContent-Usage: /ai-ok/ train-ai=y\n"
        b"Content-Usage: /ai-ok/split/ train-ai=y\ncontent-usage :\t/ai-ok/split/\tsearch=n, train-ai=n # why\n"
        b"Content-Usage: /*.pdf$ train-ai=y\nContent-Usage: /caf%C3%A9/ search=n\n\n"
        b"User-agent: otherbot\nContent-Usage: search=n\n",
        "http://h.test/robots.txt",
    )
    usage = lambda url, agent=TOKEN: rules.usage_rules(url, agent).get("content-usage")  # noqa: E731
    assert usage("http://h.test/a") == [("train-ai=n", "http://h.test/robots.txt:2")]
    assert usage("http://h.test/ai-ok/x") == [("train-ai=y", "http://h.test/robots.txt:3")]
    assert usage("http://h.test/ai-ok/split/x") == [
        ("train-ai=y", "http://h.test/robots.txt:4"), ("search=n, train-ai=n", "http://h.test/robots.txt:5"),
    ]  # fmt: skip
    assert usage("http://h.test/docs/a.pdf") == [("train-ai=y", "http://h.test/robots.txt:6")]
    assert usage("http://h.test/docs/a.pdf?x=1") == [("train-ai=n", "http://h.test/robots.txt:2")]  # $ anchors
    assert usage("http://h.test/caf\u00e9/menu") == [("search=n", "http://h.test/robots.txt:7")]  # percent-encoded alike
    assert usage("http://h.test/a", "otherbot") == [("search=n", "http://h.test/robots.txt:10")]
    # A robots.txt statement combines with the header: any n wins.
    signals = collect_signals(
        {"content-usage": ["train-ai=y"]}, [], TOKEN,
        robots_usage=rules.usage_rules("http://h.test/ai-ok/split/x", TOKEN),
    )  # fmt: skip
    decision = storage_decision(signals, ALL)
    assert (decision.reason, decision.rule, decision.source) == ("optout.content-usage", "search=n", "Content-Usage in http://h.test/robots.txt:5")
    assert signals.content_usage_source == "Content-Usage header; Content-Usage in http://h.test/robots.txt:4; Content-Usage in http://h.test/robots.txt:5"


def test_robots_txt_signals_end_to_end(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """Content-Usage and Content-Signal in robots.txt keep pages out of the store; path exceptions let them in."""
    run = _crawl(oweb, store_url, policy_dir, guard_env, "http://aipref.test/", "http://signal.test/")
    stored = {i["url"] for i in run.store.iter_items()}
    assert stored == {"http://aipref.test/ai-ok/page", "http://aipref.test/ai-ok/moved"}
    reasons = {r["url"]: (r["reason"], r["source"]) for r in run.store.refusals()}
    assert reasons["http://aipref.test/article"] == ("optout.content-usage", "Content-Usage in http://aipref.test/robots.txt:4")
    # Identical paths: both rules apply, and n wins even though y comes last; the refusal names the n.
    assert reasons["http://aipref.test/ai-ok/split/page"] == ("optout.content-usage", "Content-Usage in http://aipref.test/robots.txt:6")
    assert reasons["http://aipref.test/never/page"][0] == "robots.disallow"
    # Redirected from a train-ai=n path: the new URL's own rule (y) applies, not the old one's.
    assert "http://aipref.test/ai-ok/moved" not in reasons
    assert "/never/page" not in oweb.paths("aipref.test")
    assert reasons["http://signal.test/article"] == ("optout.content-signal", "Content-Signal in http://signal.test/robots.txt:2")
    assert sorted(oweb.paths("signal.test")) == sorted(["/robots.txt", "/.well-known/tdmrep.json", "/", "/article"])


def test_tdmrep_file_parsing() -> None:
    """tdmrep.json: the first matching location wins; an entry with a bad value matches and says "unset"; reasons logged."""
    from crawler.compliance.optouts import parse_tdmrep, tdmrep_lookup

    notes: list[str] = []
    rules = parse_tdmrep(
        b'[{"location": "/free/*", "tdm-reservation": 0}, {"location": "/x", "tdm-reservation": 2},'
        b' {"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://t.test/p"}, "junk", {"tdm-reservation": 1}]',
        notes,
    )
    assert [(r.location, r.reservation, r.index) for r in rules] == [("/free/*", 0, 0), ("/x", None, 1), ("/*", 1, 2)]
    assert notes == ["entry 1 (/x): tdm-reservation 2 is not 0 or 1, so unset", "entry 3: no location, skipped",
                     "entry 4: no location, skipped"]  # fmt: skip
    assert tdmrep_lookup(rules, "/free/a").reservation == 0  # type: ignore[union-attr]
    assert tdmrep_lookup(rules, "/other").policy == "https://t.test/p"  # type: ignore[union-attr]
    assert tdmrep_lookup(rules, "/x").reservation is None  # type: ignore[union-attr]  # first match: unset
    assert tdmrep_lookup(parse_tdmrep(b'[{"location": "/a$", "tdm-reservation": 1}]'), "/ab") is None
    # First match, not longest: a general entry before a specific one decides.
    ordered = parse_tdmrep(b'[{"location": "/", "tdm-reservation": 1}, {"location": "/open/", "tdm-reservation": 0}]')
    assert tdmrep_lookup(ordered, "/open/page").reservation == 1  # type: ignore[union-attr]
    for bad, why in ((b"{}", "expected a JSON array"), (b"not json", "not JSON"), (b"\xff", "not JSON"),
                     (b"[" * 200_000, "nested too deeply"), (b" " * (600 * 1024) + b"[]", "larger than")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_tdmrep(bad)


def test_tdmrep_well_known_end_to_end(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """The well-known file is fetched once per host; header and meta override it; invalid files leave it unset."""
    run = _crawl(oweb, store_url, policy_dir, guard_env, "http://tdm.test/", "http://tdmbad.test/")
    assert oweb.paths("tdm.test").count("/.well-known/tdmrep.json") == 1
    stored = {i["url"] for i in run.store.iter_items()}
    assert stored == {"http://tdm.test/free/page", "http://tdm.test/override", "http://tdmbad.test/", "http://tdmbad.test/article"}
    reasons = {r["url"]: (r["reason"], r["source"]) for r in run.store.refusals()}
    assert reasons["http://tdm.test/article"] == ("optout.tdmrep", "http://tdm.test/.well-known/tdmrep.json entry 1")
    assert "TDMRep http://tdmbad.test/.well-known/tdmrep.json: invalid: expected a JSON array" in run.stderr
    # A crawl that is not for train-ai never asks for the file.
    oweb.clear_log()
    _crawl(oweb, store_url, policy_dir, guard_env, "http://tdm.test/", COMPLIANCE_PURPOSES="search")
    assert "/.well-known/tdmrep.json" not in oweb.paths("tdm.test")


def test_describe_signals_for_people() -> None:
    """The one-line summary used by `policy check` and the demo names each signal with its source."""
    from crawler.compliance.optouts import describe_signals

    signals = collect_signals(
        {"content-usage": ["train-ai;allow=n, train-ai=y"], "x-robots-tag": ["nofollow", "noarchive"]},
        [("tdm-reservation", "0")], TOKEN,
    )  # fmt: skip
    assert describe_signals(signals.as_dict()) == (
        "X-Robots-Tag header: nofollow, noarchive; Content-Usage train-ai=y (Content-Usage header); "
        '''tdm-reservation 0 (<meta name="tdm-reservation">); notes: Content-Usage header '''
        "'train-ai;allow=n, train-ai=y': train-ai appears more than once: its last value applies"
    )
    unknown = collect_signals({"content-usage": ["train-ai=maybe"]}, [], TOKEN).as_dict()
    assert describe_signals(unknown).startswith("Content-Usage train-ai=unknown (not understood); notes: ")
    ignored = collect_signals({"content-usage": ["ai-use=n"]}, [], TOKEN).as_dict()
    assert describe_signals(ignored) == (
        "none understood; notes: Content-Usage header 'ai-use=n': not in the vocabulary, ignored: ai-use"
    )
    assert describe_signals({}) == "none"


def test_tdmrep_failing_well_known_is_unset(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """A tdmrep.json that answers 5xx or drops the connection leaves the layer unset, logged; headers still count."""
    run = _crawl(oweb, store_url, policy_dir, guard_env, "http://tdmdown.test/", "http://tdmdrop.test/", RETRY_TIMES=0)
    stored = {i["url"] for i in run.store.iter_items()}
    assert stored == {"http://tdmdown.test/", "http://tdmdown.test/article", "http://tdmdrop.test/", "http://tdmdrop.test/article"}
    reasons = {r["url"]: (r["reason"], r["source"]) for r in run.store.refusals()}
    for host in ("tdmdown.test", "tdmdrop.test"):
        assert reasons[f"http://{host}/reserved"] == ("optout.tdmrep", "tdm-reservation header")
    # The failure is cached like a success: one fetch for three pages. (A dropped
    # connection on a reused keep-alive connection is retried once by Twisted's
    # connection pool itself, hence up to two transfers for that one fetch.)
    assert oweb.paths("tdmdown.test").count("/.well-known/tdmrep.json") == 1
    assert 1 <= oweb.paths("tdmdrop.test").count("/.well-known/tdmrep.json") <= 2
    assert "TDMRep http://tdmdown.test/.well-known/tdmrep.json: HTTP 503; the well-known layer is unset" in run.stderr
    assert "TDMRep http://tdmdrop.test/.well-known/tdmrep.json: unreachable: " in run.stderr


def test_robots_txt_usage_rules_group_like_protego_and_keep_the_statement_bytes() -> None:
    """Lenient group lines group as Protego groups them; a statement ends only at CR, LF or '#'."""
    from crawler.compliance.robots import RobotsRules

    def usage(body: bytes, path: str = "/a") -> list[str] | None:
        rules = RobotsRules(body, "http://h.test/robots.txt")
        found = rules.usage_rules(f"http://h.test{path}", TOKEN).get("content-usage")
        return [value for value, _ in found] if found else None

    # "User agent" / no colon: Protego reads them as a user-agent line, and so do we.
    assert usage(b"User agent: EthicalCrawler\nDisallow: /q/\nContent-Usage: train-ai=n\n") == ["train-ai=n"]
    assert usage(b"User-agent EthicalCrawler\nContent-Usage: train-ai=n\n") == ["train-ai=n"]
    # "Disallow /x" ends our group for Protego, so the next group's rule is not ours.
    assert usage(b"User-agent: EthicalCrawler\nDisallow /x\nUser-agent: otherbot\nContent-Usage: train-ai=n\n") is None
    # Vertical tab, form feed, NBSP: not line breaks and not white space here; the statement keeps them.
    assert usage(b"User-agent: *\nContent-Usage: train-ai=y\x0bsearch=n\n") == ["train-ai=y\x0bsearch=n"]
    assert usage("User-agent: *\nContent-Usage: \u00a0train-ai=y\n".encode()) == ["\u00a0train-ai=y"]
    assert usage(b"User-agent: *\nContent-Usage: search=y\x0cContent-Usage: train-ai=n\n") == ["search=y\x0cContent-Usage: train-ai=n"]
    assert usage(b'User-agent: *\nContent-Usage: /a search=n, x="a\tb"\n') == ['search=n, x="a\tb"']  # tab inside: kept
    for statement in ("train-ai=y\x0bsearch=n", "\u00a0train-ai=y", 'search=n, x="a\tb"'):
        assert parse_content_usage(statement) == {}, statement  # not a dictionary: unknown
    # The Allow/Disallow verdicts still agree with Protego's for such a line.
    rules = RobotsRules(b"User-agent: *\nDisallow: /a\x0bb\nDisallow: /c\n", "http://h.test/robots.txt")
    assert not rules.decide("http://h.test/c", TOKEN).allowed and rules.decide("http://h.test/a", TOKEN).allowed


def test_tdmrep_redirects_followed_and_hostile_file_is_unset(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """The well-known file is read behind a redirect; a page's redirect drops its old entry; a nested-bomb file is just invalid."""
    run = _crawl(oweb, store_url, policy_dir, guard_env, "http://tdmredir.test/", "http://tdmdeep.test/")
    stored = {i["url"] for i in run.store.iter_items()}
    assert stored == {"http://tdmredir.test/", "http://tdmredir.test/free/b", "http://tdmdeep.test/", "http://tdmdeep.test/article"}
    reasons = {r["url"]: (r["reason"], r["source"]) for r in run.store.refusals()}
    assert reasons == {"http://tdmredir.test/reserved/a": ("optout.tdmrep", "http://tdmredir.test/.well-known/tdmrep.json entry 0")}
    assert oweb.paths("tdmredir.test").count("/tdm/policy-file.json") == 1
    assert "TDMRep http://tdmdeep.test/.well-known/tdmrep.json: invalid: not JSON we can read (nested too deeply)" in run.stderr
    assert oweb.paths("tdmdeep.test").count("/.well-known/tdmrep.json") == 1


def test_policy_check_shows_what_the_last_crawl_saw(oweb: TestWeb, store_url: str, policy_dir: Path, guard_env: dict) -> None:
    """Stored by a search-only crawl, refused by a later train-ai crawl, stored again: `policy check` follows the newest."""
    from crawler.testing.runner import scrapy_command

    def crawl(purposes: str) -> None:
        _crawl(oweb, store_url, policy_dir, guard_env, "http://optout.test/noai", COMPLIANCE_PURPOSES=purposes)

    def seen() -> dict:
        done = scrapy_command(["policy", "check", "http://optout.test/noai", "--json"],
                              settings={"COMPLIANCE_STORE": store_url, "COMPLIANCE_POLICY_DIR": str(policy_dir)})  # fmt: skip
        return json.loads(done.stdout)["seen_by_crawls"]

    crawl("search")
    first = seen()
    assert first["stored"] is True and first["lines"][1].startswith('opt-out signals: <meta name="ethicalcrawler">: noai, noimageai;')
    crawl("search,train-ai")
    second = seen()
    assert second["stored"] is False and "optout.noai" in second["lines"][0] and second["crawl_id"] != first["crawl_id"]
    crawl("search")
    assert seen()["stored"] is True
