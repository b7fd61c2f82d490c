"""Registered domains offline, and honest identification."""

from __future__ import annotations

import socket

import pytest

from crawler.compliance import domains
from crawler.compliance.decision import Decision
from crawler.compliance.identity import IdentityError, user_agent, validate_contact, validate_product_token


@pytest.mark.parametrize(
    ("host", "domain"),
    [("a.news.test", "news.test"), ("news.test", "news.test"), ("www.facebook.com", "facebook.com"),
     ("m.example.co.uk", "example.co.uk"), ("127.0.0.1", "127.0.0.1"), ("localhost", "localhost"),
     ("WWW.Shop.Test.", "shop.test")],
)  # fmt: skip
def test_registered_domain(host: str, domain: str) -> None:
    """Special-use names, IPs and real suffixes each get a sensible registered domain."""
    assert domains.registered_domain(host) == domain


def test_extractor_never_fetches_the_suffix_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extractor is set up with no list URLs and no cache, and works with all sockets refused."""
    assert domains.extractor_is_offline()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tldextract tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    domains.registered_domain.cache_clear()
    assert domains.registered_domain("x.y.some-new-name.co.uk") == "some-new-name.co.uk"


def test_host_in_domain() -> None:
    """Subdomains belong to a domain; look-alike suffixes do not."""
    assert domains.host_in_domain("a.b.news.test", "news.test")
    assert domains.host_in_domain("news.test", "news.test")
    assert not domains.host_in_domain("badnews.test", "news.test")


@pytest.mark.parametrize("token", ["", "Ethical Crawler", "bot/1.0", "bot1", "bøt"])
def test_bad_product_tokens(token: str) -> None:
    """A bot name that is not a valid product token is refused with the setting's name."""
    with pytest.raises(IdentityError, match="COMPLIANCE_BOT_NAME"):
        validate_product_token(token)


def test_contact_required_and_clean() -> None:
    """A missing or header-breaking contact is refused with what to set."""
    with pytest.raises(IdentityError, match="COMPLIANCE_CONTACT is not set"):
        validate_contact("  ")
    with pytest.raises(IdentityError, match="parentheses"):
        validate_contact("https://x.example/(a)")
    assert validate_contact(" https://x.example/bot ") == "https://x.example/bot"


def test_user_agent_format() -> None:
    """The User-Agent is <token>/<version> (+<contact>)."""
    assert user_agent("EthicalCrawler", "0.1.0", "https://x.example") == "EthicalCrawler/0.1.0 (+https://x.example)"


def test_decision_is_immutable_and_printable() -> None:
    """A Decision is frozen, stamps its gate and URL, and prints its reason, rule and source."""
    d = Decision.refuse("robots.disallow", rule="Disallow: /a", source="http://h.test/robots.txt:2").at("download", "http://h.test/a")
    with pytest.raises(AttributeError):
        d.reason = "x"  # type: ignore[misc]
    assert d.stats_key == "compliance/refused/robots.disallow"
    assert str(d) == "refused (robots.disallow) http://h.test/a at download rule 'Disallow: /a' from http://h.test/robots.txt:2"
