"""No request reaches a private, loopback, link-local or reserved address unless the operator allowed it.

Two downloader middlewares and a resolver guard (the rules are in
crawler/compliance/network.py):

* :class:`NetworkGate` (early, before robots.txt): a literal address in any
  form (``http://2130706433/``, ``http://[::1]/``) or a ``localhost`` name is
  refused before anything is sent, with or without a proxy. Every request
  passes here: pages, redirects, retries, robots.txt and the other well-known
  files (crawler/wellknown.py downloads them through the same middlewares).
* :class:`ResolverGuard` (after HttpProxyMiddleware, before RetryMiddleware):
  wraps the reactor's name resolver, so the addresses a name resolves to are
  checked by the very resolution the connection uses. A DNS answer that
  changes between a check and the connection (rebinding) cannot slip through:
  there is no separate check. A refused resolution fails the download; this
  middleware turns that failure into a ``network.private-address`` refusal
  before RetryMiddleware would retry it.

With a proxy, names are resolved by the proxy, not here: the proxy must
enforce its own egress rules (docs/network.md). The proxy's own address is
always reachable.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from scrapy.utils.httpobj import urlparse_cached
from zope.interface import implementer
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver

from crawler.compliance.network import NetworkPolicy, normalize_host
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from crawler.compliance.decision import Decision

logger = logging.getLogger(__name__)


class NetworkGate:
    """Literal addresses and ``localhost`` names, refused before the request leaves."""

    def __init__(self, crawler: Crawler) -> None:
        self.runtime = ComplianceRuntime.of(crawler)
        self.policy: NetworkPolicy = self.runtime.config.allow_networks

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NetworkGate:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        host = urlparse_cached(request).hostname or ""
        decision = self.policy.host_decision(host)
        if not decision.allowed:
            self.runtime.refuse_request(decision, "download", request)


@implementer(IResolutionReceiver)
class _CheckingReceiver:
    """Holds a resolution's addresses until it completes, then passes them on only if all may be reached."""

    def __init__(self, guard: _GuardedNameResolver, receiver: Any, host: str) -> None:
        self.guard, self.receiver, self.host = guard, receiver, host
        self.addresses: list[Any] = []

    def resolutionBegan(self, resolution: Any) -> None:  # noqa: N802 - Twisted's interface
        self.receiver.resolutionBegan(resolution)

    def addressResolved(self, address: Any) -> None:  # noqa: N802
        self.addresses.append(address)

    def resolutionComplete(self) -> None:  # noqa: N802
        decision = self.guard.check(self.host, [getattr(a, "host", "") for a in self.addresses])
        if decision.allowed:
            for address in self.addresses:
                self.receiver.addressResolved(address)
        # Refused: no address at all, so the endpoint fails with "no results"
        # and nothing is connected.
        self.receiver.resolutionComplete()


@implementer(IHostnameResolver)
class _GuardedNameResolver:
    """The reactor's resolver, wrapped: every resolution any connection uses is checked.

    One per process (the reactor is shared). Every compliance crawl in the
    process registers its policy, and an address is reached only when every
    registered policy allows it (the strictest wins).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.policies: list[NetworkPolicy] = []
        #: Host names of the configured proxies: they are always reachable.
        self.proxies: set[str] = set()
        #: host -> the refusal of its last resolution (read back by ResolverGuard.process_exception).
        self.refused: OrderedDict[str, Decision] = OrderedDict()

    def check(self, host: str, addresses: list[str]) -> Decision:
        from crawler.compliance.decision import ALLOW

        name = normalize_host(host)
        if name in self.proxies:
            return ALLOW
        for policy in self.policies or [NetworkPolicy()]:
            decision = policy.resolved_decision(name, addresses)
            if not decision.allowed:
                self.refused[name] = decision
                self.refused.move_to_end(name)
                while len(self.refused) > 10_000:
                    self.refused.popitem(last=False)
                return decision
        self.refused.pop(name, None)
        return ALLOW

    def resolveHostName(self, resolutionReceiver: Any, hostName: str, *args: Any, **kwargs: Any) -> Any:  # noqa: N802,N803
        return self.inner.resolveHostName(_CheckingReceiver(self, resolutionReceiver, hostName), hostName, *args, **kwargs)


def guarded_resolver() -> _GuardedNameResolver:
    """The process's guard, installed on the reactor (again, if something replaced it since)."""
    from twisted.internet import reactor

    current = reactor.nameResolver  # type: ignore[attr-defined]
    if isinstance(current, _GuardedNameResolver):
        return current
    guard = _GuardedNameResolver(current)
    previous = _GUARDS[-1] if _GUARDS else None
    if previous is not None:  # Scrapy installed its resolver after ours: keep what crawls registered
        guard.policies, guard.proxies, guard.refused = previous.policies, previous.proxies, previous.refused
    # Also replaces reactor.resolver (used by connectTCP, hence by proxy
    # connections) with a simplifier over the guard.
    reactor.installNameResolver(guard)  # type: ignore[attr-defined]
    _GUARDS.append(guard)
    return guard


_GUARDS: list[_GuardedNameResolver] = []


class ResolverGuard:
    """Keeps the resolver guard installed, lets proxies through, and reports what it refused."""

    def __init__(self, crawler: Crawler) -> None:
        self.runtime = ComplianceRuntime.of(crawler)
        self.policy: NetworkPolicy = self.runtime.config.allow_networks
        self._guard: _GuardedNameResolver | None = None
        self._reactor: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ResolverGuard:
        return cls(crawler)

    def _ensure_guard(self) -> _GuardedNameResolver:
        # Checked on every request: Scrapy installs its resolver when the
        # reactor starts (after the middlewares are built), and anything may
        # install another later. One attribute read when nothing changed.
        guard = self._guard
        if guard is None or self._reactor.nameResolver is not guard:
            from twisted.internet import reactor

            self._reactor = reactor
            guard = self._guard = guarded_resolver()
            if self.policy not in guard.policies:
                guard.policies.append(self.policy)
        return guard

    def process_request(self, request: Request) -> None:
        guard = self._ensure_guard()
        proxy = request.meta.get("proxy")
        if proxy:
            from urllib.parse import urlsplit

            proxy_host = urlsplit(proxy if "://" in proxy else f"http://{proxy}").hostname
            if proxy_host:
                guard.proxies.add(normalize_host(proxy_host))

    def process_exception(self, request: Request, exception: BaseException) -> None:
        guard = self._guard
        if guard is None or not guard.refused or request.meta.get("proxy"):
            return None
        host = normalize_host(urlparse_cached(request).hostname or "")
        decision = guard.refused.get(host)
        if decision is not None:
            self.runtime.refuse_request(decision, "connect", request)
        return None
