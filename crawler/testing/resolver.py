"""A DNS resolver for tests: made-up names map to local addresses, nothing is ever looked up.

For crawls without the test web's proxy (the address checks of names happen
only when this process resolves them)::

    -s TWISTED_DNS_RESOLVER=crawler.testing.resolver.MappedResolver
    -s COMPLIANCE_TEST_HOSTS=intranet.test=127.0.0.1,other.test=127.0.0.1

A name that is not in the map fails as a DNS error; an address outside
127.0.0.0/8 in the map is refused when the resolver is built, so a test can
never send a packet anywhere else.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IResolverSimple
from zope.interface import implementer


def parse_hosts(value: object) -> dict[str, str]:
    hosts: dict[str, str] = {}
    for entry in str(value or "").split(","):
        if not entry.strip():
            continue
        name, _, address = entry.partition("=")
        if not ipaddress.ip_address(address.strip()).is_loopback:
            raise ValueError(f"COMPLIANCE_TEST_HOSTS: {entry!r}: tests may only map names to loopback addresses")
        hosts[name.strip().lower()] = address.strip()
    return hosts


@implementer(IResolverSimple)
class MappedResolver:
    def __init__(self, reactor: Any, hosts: dict[str, str]) -> None:
        self.reactor = reactor
        self.hosts = hosts

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> MappedResolver:
        return cls(reactor, parse_hosts(crawler.settings.get("COMPLIANCE_TEST_HOSTS")))

    def install_on_reactor(self) -> None:
        self.reactor.installResolver(self)

    def getHostByName(self, name: str, timeout: Any = ()) -> defer.Deferred[str]:  # noqa: N802 - Twisted's interface
        address = self.hosts.get(name.lower().rstrip("."))
        if address is None:
            try:
                if ipaddress.ip_address(name).is_loopback:
                    return defer.succeed(name)
            except ValueError:
                pass
            return defer.fail(DNSLookupError(f"{name} is not in COMPLIANCE_TEST_HOSTS"))
        return defer.succeed(address)
