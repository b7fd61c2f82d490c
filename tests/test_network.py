"""Private networks and bounded resources (issue #15): the address checks, and hostile sizes cut with a reason."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from crawler.compliance.network import NetworkPolicy, NetworkSettingError, address_kind, literal_address
from crawler.testing.plugin import run_crawl, serving
from crawler.testing.runner import run_site_crawl
from crawler.testing.sites import METADATA_URL, hostile_size_sites, ssrf_sites
from crawler.testing.web import redirect

REASON = "network.private-address"


# -- the pure core ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"), ("017700000001", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("127.0.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"), ("%31%32%37.0.0.1", "127.0.0.1"), ("１２７.0.0.1", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"), ("0xa9fea9fe", "169.254.169.254"), ("10.1", "10.0.0.1"),
        ("[::1]", "::1"), ("[::ffff:127.0.0.1]", "::ffff:7f00:1"), ("[::ffff:a9fe:a9fe]", "::ffff:a9fe:a9fe"),
        ("[fe80::1]", "fe80::1"), ("[fd12::1]", "fd12::1"), ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),
    ],
)  # fmt: skip
def test_every_literal_form_of_a_private_address_is_refused(host: str, address: str) -> None:
    """Decimal, octal, hex, short, percent-encoded, full-width and IPv6 forms all name the private address they mean."""
    assert literal_address(host) == ipaddress.ip_address(address)
    decision = NetworkPolicy().host_decision(host)
    assert not decision.allowed and decision.reason == REASON and address in decision.rule


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"), ("100.64.0.1", "shared address space (CGNAT)"), ("224.0.0.1", "multicast"),
        ("192.0.2.1", "documentation"), ("198.51.100.1", "documentation"), ("203.0.113.1", "documentation"),
        ("0.0.0.0", "unspecified"), ("240.0.0.1", "private"), ("198.18.0.1", "private"), ("::", "unspecified"),
        ("::1", "loopback"), ("fe80::1", "link-local"), ("fc00::1", "unique-local"), ("fec0::1", "site-local"),
        ("ff02::1", "multicast"), ("2001:db8::1", "documentation"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 inside IPv6)"), ("2002:a00:1::", "private (IPv4 10.0.0.1 inside IPv6)"),
    ],
)  # fmt: skip
def test_address_ranges(address: str, kind: str) -> None:
    """Each special-purpose range is named; public addresses are not."""
    assert address_kind(ipaddress.ip_address(address)) == kind
    assert address_kind(ipaddress.ip_address("93.184.216.34")) is None
    assert address_kind(ipaddress.ip_address("2606:2800:220:1::1")) is None


def test_names_localhost_and_the_allow_list() -> None:
    """Names pass (checked once resolved) except localhost; COMPLIANCE_ALLOW_NETWORKS opens networks and names."""
    strict = NetworkPolicy()
    assert strict.host_decision("shop.test").allowed and strict.host_decision("1.256").allowed  # 1.0.1.0: public
    for host in ("localhost", "LOCALHOST.", "admin.localhost", "1.2.3.4.5", "256.1"):
        assert not strict.host_decision(host).allowed, host
    assert not strict.resolved_decision("intranet.test", ["93.184.216.34", "10.0.0.5"]).allowed  # any private: refused
    opened = NetworkPolicy.parse("10.0.0.0/8, fd00::/8,intranet.test,*.corp.example, localhost")
    assert opened.host_decision("10.9.9.9").allowed and opened.host_decision("[fd00::5]").allowed
    assert not opened.host_decision("192.168.0.1").allowed
    assert opened.resolved_decision("intranet.test", ["127.0.0.1"]).allowed
    assert opened.resolved_decision("a.b.corp.example", ["192.168.0.1"]).allowed
    assert not opened.resolved_decision("corp-example.test", ["192.168.0.1"]).allowed
    assert opened.host_decision("localhost").allowed
    with pytest.raises(NetworkSettingError, match="'exa mple' is neither a network"):
        NetworkPolicy.parse("10.0.0.0/8,exa mple")


# -- crawls -----------------------------------------------------------------------------------


def _refusals(result) -> dict[str, dict]:  # noqa: ANN001
    return {r["url"]: r for r in result.refusals}


def test_hostile_redirects_to_private_addresses_are_never_fetched(tmp_path: Path) -> None:
    """robots.txt to the metadata address and to 127.0.0.1:PORT, tdmrep.json to the metadata address, page redirects to 10/8, decimal and IPv4-mapped forms: none is sent."""
    sites = ssrf_sites(loopback_port=1)
    with serving(sites) as web:
        # The loopback target is the test web itself: the address that would answer if anything leaked.
        sites["loopback.test"].pages["/robots.txt"] = redirect(f"http://127.0.0.1:{web.port}/")
        result = run_crawl(web, "site", ["http://ssrf.test/", "http://loopback.test/", "http://tdm.test/"], tmp_path)
        assert result.returncode == 0, result.log[-3000:]
        hosts = {entry.host for entry in web.log}
        port = web.port
    assert hosts <= {"ssrf.test", "loopback.test", "tdm.test"}, hosts  # no 169.254.169.254, 127.0.0.1, 10.0.0.1 ...
    assert not any(entry.path.startswith("/latest") for entry in web.log)
    refused = _refusals(result)
    for url, address in (
        (METADATA_URL, "169.254.169.254"), (f"http://127.0.0.1:{port}/", "127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ):  # fmt: skip
        assert refused[url]["reason"] == REASON, (url, refused.get(url))
        assert address in refused[url]["rule"], refused[url]
    # Fail closed: a robots.txt that cannot be read means the site is not crawled.
    assert refused["http://ssrf.test/"]["reason"] == "robots.unreachable"
    assert refused["http://loopback.test/"]["reason"] == "robots.unreachable"
    assert [i["url"] for i in result.items] == ["http://tdm.test/"]  # tdmrep.json unset: the page itself is fine
    assert int(result.stats["compliance/refused/network.private-address"]) == 3
    # The page redirects to 10.0.0.1, 2130706433 and [::ffff:169.254.169.254]
    # leave the crawl's domains: the offsite filter drops them (the host
    # check above shows none was sent; literal start URLs are refused below).
    assert int(result.stats["offsite/filtered"]) == 3


def test_literal_start_urls_and_localhost_are_refused_through_a_proxy(tmp_path: Path) -> None:
    """With a proxy, literal addresses in every form and localhost names are refused before they reach it."""
    urls = ["http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://[::1]/", "http://localhost/", "http://admin.localhost/"]
    with serving({}) as web:
        result = run_crawl(web, "site", urls, tmp_path)
        assert result.returncode == 0, result.log[-3000:]
        assert web.log == []
    assert {url: r["reason"] for url, r in _refusals(result).items()} == {url: REASON for url in urls}


def test_redirect_of_a_well_known_file_obeys_the_offsite_filter(tmp_path: Path) -> None:
    """A robots.txt redirected outside the crawl's domains is not followed (unreachable: the site is not crawled)."""
    with serving(ssrf_sites()) as web:
        result = run_crawl(web, "site", ["http://offsite.test/"], tmp_path)
        assert result.returncode == 0, result.log[-3000:]
        assert web.paths("elsewhere.test") == []
        assert web.paths("offsite.test") == ["/robots.txt"]
    assert _refusals(result)["http://offsite.test/"]["reason"] == "robots.unreachable"


NO_PROXY = {"http_proxy": "", "https_proxy": "", "HTTP_PROXY": "", "HTTPS_PROXY": "", "all_proxy": "", "ALL_PROXY": ""}


def _direct_crawl(web, tmp_path: Path, guard_env: dict[str, str], allow: str = ""):  # noqa: ANN001, ANN202
    """``scrapy crawl site`` without a proxy: intranet.test resolves to 127.0.0.1 through crawler.testing.resolver."""
    from crawler.testing.runner import FAST_SETTINGS, policy_dir_with_pace

    store_url = f"sqlite:///{tmp_path / 'direct.sqlite3'}"
    settings = {
        **FAST_SETTINGS,
        "TWISTED_DNS_RESOLVER": "crawler.testing.resolver.MappedResolver",
        "COMPLIANCE_TEST_HOSTS": "intranet.test=127.0.0.1",
        "COMPLIANCE_POLICY_DIR": str(policy_dir_with_pace(tmp_path / "policies")),
        "COMPLIANCE_ALLOW_NETWORKS": allow,
    }
    return run_site_crawl(web, [f"http://intranet.test:{web.port}/"], store_url, settings=settings, env={**NO_PROXY, **guard_env})


def test_a_name_resolving_to_loopback_is_refused_at_connect_time(tmp_path: Path, guard_env: dict[str, str]) -> None:
    """Without a proxy, a public-looking name that resolves to 127.0.0.1 is refused by the resolver the connection uses."""
    with serving(ssrf_sites()) as web:
        run = _direct_crawl(web, tmp_path, guard_env)
        assert run.returncode == 0, run.stderr[-3000:]
        assert web.log == []  # not even robots.txt was sent
    refusals = _all_refusals(run.store_url)
    network = [r for r in refusals if r["reason"] == REASON]
    assert network and all("127.0.0.1" in r["rule"] and r["gate"] == "connect" for r in network), refusals
    assert run.store.count_items() == 0


def test_an_allowed_network_or_name_is_crawled_without_a_proxy(tmp_path: Path, guard_env: dict[str, str]) -> None:
    """COMPLIANCE_ALLOW_NETWORKS opens the intranet: by network, or by name."""
    for allow in ("127.0.0.0/8", "intranet.test"):
        with serving(ssrf_sites()) as web:
            run = _direct_crawl(web, tmp_path / allow.replace("/", "_"), guard_env, allow)
            assert run.returncode == 0, run.stderr[-3000:]
            assert "/" in web.paths("intranet.test"), allow
        assert run.store.count_items() == 1, allow


def _all_refusals(store_url: str) -> list[dict]:
    from crawler.compliance.store import Store

    store = Store(store_url)
    try:
        return store.refusals()
    finally:
        store.dispose()


# -- bounded resources -----------------------------------------------------------------------


def test_hostile_sizes_are_cut_with_a_reason(tmp_path: Path) -> None:
    """A gzip bomb (10 MB and 1 MB), an endless body, 200,000 links and a 50 MB robots.txt are each bounded."""
    with serving(hostile_size_sites()) as web:
        result = run_crawl(
            web, "site", ["http://bomb.test/", "http://endless.test/", "http://links.test/", "http://bigrobots.test/"],
            # A long timeout: the endless body must end at the size limit, however slow the machine.
            tmp_path, {"COMPLIANCE_MAX_LINKS_PER_PAGE": 10, "DOWNLOAD_TIMEOUT": 180},
        )  # fmt: skip
        assert result.returncode == 0, result.log[-3000:]
        links = [p for p in web.paths("links.test") if p.startswith("/l/")]
        bigrobots = web.paths("bigrobots.test")
    refused = _refusals(result)
    for url in ("http://bomb.test/big", "http://bomb.test/small", "http://endless.test/"):
        assert refused[url]["reason"] == "content.too-large", (url, refused.get(url))
    assert "decompress" in refused["http://bomb.test/small"]["rule"]
    # Ten links followed, the rest counted and dropped.
    assert len(links) == 10
    assert int(result.stats["compliance/links/dropped"]) == 200_000 - 10
    # The 50 MB robots.txt is read up to its parse limit and obeyed.
    assert "/open" in bigrobots and "/secret/x" not in bigrobots
    assert refused["http://bigrobots.test/secret/x"]["reason"] == "robots.disallow"
