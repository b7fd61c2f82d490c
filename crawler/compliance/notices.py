"""Cease-and-desist and takedown notices, and the decision they make for a URL.

A notice is a YAML file in ``policies/notices/`` using the Lumen database's
field names (``id``, ``type``, ``title``, ``sender_name``, ...; Lumen has no
cease-and-desist type, so such a letter is ``type: Other`` with the tag
``cease-and-desist``) plus this project's own fields: the ``scope`` it covers
(a platform id, registered domains, URL patterns), its ``demands``
(``stop_collection``, ``delete_existing``), ``effective_at`` and ``status``.

The store keeps the registry every crawl reads (``scrapy notice add`` writes
both); a notice file that is not in the store yet still blocks the crawls
that read the directory, so hand-filing a notice fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from protego._utils import _quote_path, _quote_pattern  # the robots.txt normalisation; Protego is pinned
from pydantic import AwareDatetime, Field, ValidationInfo, model_validator

from crawler.compliance.decision import ALLOW, Decision
from crawler.compliance.domains import ascii_host, host_problem, is_public_suffix, registered_domain, registered_domain_problem
from crawler.compliance.modelfile import Strict, parse_model_file, yaml_files
from crawler.compliance.patterns import matches

if TYPE_CHECKING:
    from crawler.compliance.policy import PolicySet

#: Lumen's notice types (lumendatabase.org); there is no cease-and-desist type.
NoticeType = Literal[
    "DMCA", "CourtOrder", "DataProtection", "Defamation", "PrivateInformation", "Trademark",
    "LawEnforcementRequest", "GovernmentRequest", "LocalLaw", "Other",
]  # fmt: skip
NOTICE_TYPES: tuple[str, ...] = NoticeType.__args__  # type: ignore[attr-defined]
CEASE_AND_DESIST = "cease-and-desist"
#: Tag of a notice filed by a site owner through the portal (crawler/portal).
OBJECTION_TAG = "site-owner-objection"
#: Tag of the pause a pending objection puts in the registry: stop, do not delete, expires.
PAUSE_TAG = "objection-pending"
#: The spider that fetches a site owner's proof of control (crawler/portal/proof.py); the only
#: one in which that objection's own pause is lifted, for the proof file (see ComplianceRuntime).
PROOF_SPIDER = "ownership-proof"
NOTICE_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
#: How far another machine's clock may be ahead of ours without a notice being enforced late.
CLOCK_SKEW = timedelta(seconds=60)

UrlPattern = Annotated[
    str,
    Field(
        pattern=r"^https?://[^/*?#\s]+/[^\s#]*$",
        description="a URL with robots.txt pattern syntax in its path ('*' any characters, '$' end); "
        "the scheme and port are ignored when matching, so an objection to https://x/p also covers http://x/p",
    ),
]


def url_pattern_problem(pattern: str) -> str | None:
    """Why a URL pattern (already of the form ``http(s)://HOST/PATH``) could never match what it names, or None."""
    try:
        parts = urlsplit(pattern)
    except ValueError as exc:  # unbalanced brackets of an IPv6 address
        return str(exc)
    if "@" in parts.netloc:
        return "a URL pattern names a host, not user information ('user@'); write https://HOST/PATH"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        return "the port is not a number from 0 to 65535"
    if not parts.hostname:
        return "no host"
    problem = host_problem(parts.hostname, in_url=True)
    if problem is not None:
        return f"host {parts.hostname!r}: {problem}"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
        return "control characters are not accepted"
    return None


class Work(Strict):
    """One work the notice is about, as in Lumen (``problematic_urls`` is Lumen's name)."""

    description: str = ""
    problematic_urls: list[str] = Field(default_factory=list)


#: Validation context key: registered domains a caller vouches for, which skip
#: the suffix-list checks (the syntax checks still run). ``notice list`` passes,
#: for each notice the ledger records as filed, the domains of that notice:
#: they were checked in full when it was filed, and loading the suffix list
#: costs a listing about 130 ms (issue #13). A crawl and every command that
#: files or enforces pass none.
FILED_DOMAINS = "filed_domains"


class Scope(Strict):
    """What the notice covers: a platform's domains, registered domains, URL patterns (any mix)."""

    platform: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$", description="a platform policy id")
    domains: list[str] = Field(default_factory=list, description="registered domains; subdomains are covered")
    url_patterns: list[UrlPattern] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _ascii_domains(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("domains"), list):
            data = {**data, "domains": [ascii_host(d).strip("[]") if isinstance(d, str) else d for d in data["domains"]]}
        return data

    @model_validator(mode="after")
    def _something_in_scope(self, info: ValidationInfo) -> Scope:
        if self.platform is None and not self.domains and not self.url_patterns:
            raise ValueError("give at least one of platform, domains or url_patterns")
        # Domains the caller vouches for (``notice list``: those of notices the
        # ledger records as filed, checked against the suffix list when they
        # were filed) skip the suffix-list checks, which load the whole list.
        filed = (info.context or {}).get(FILED_DOMAINS, ())
        for domain in self.domains:
            if not domain:
                raise ValueError("domains: an empty domain covers nothing; name a registered domain")
            syntax = host_problem(domain)
            if syntax is not None:
                raise ValueError(f"domains: {domain!r} is not a domain name: {syntax}")
            if domain in filed:
                continue
            if is_public_suffix(domain):
                raise ValueError(
                    f"domains: {domain!r} is a public suffix, not a registered domain: it would name every site under it "
                    "and match none of them; name each registered domain"
                )
            expected = registered_domain(domain)
            if domain != domain.lower() or expected != domain:
                raise ValueError(f"domains: {domain!r} is not a registered domain; write {expected!r} (subdomains are covered)")
            problem = registered_domain_problem(domain)
            if problem is not None:
                raise ValueError(f"domains: {domain!r} {problem}")
        for pattern in self.url_patterns:
            problem = url_pattern_problem(pattern)
            if problem is not None:
                raise ValueError(f"url_patterns: {pattern!r}: {problem}")
        return self

    def describe(self) -> str:
        parts = []
        if self.platform:
            parts.append(f"platform {self.platform}")
        parts += [f"domain {d}" for d in self.domains]
        parts += [f"URLs {p}" for p in self.url_patterns]
        return ", ".join(parts)


class Demands(Strict):
    stop_collection: bool = Field(default=True, description="refuse every request in scope from effective_at on")
    delete_existing: bool = Field(default=True, description="purge what is held in scope")


class Notice(Strict):
    """A legal notice in Lumen's vocabulary, with the scope and demands this crawler acts on."""

    id: str = Field(pattern=NOTICE_ID_RE, description="unique; refusals are reported as notice.<id>")
    type: NoticeType = "Other"
    title: str = ""
    sender_name: str = Field(min_length=1)
    principal_name: str = ""
    recipient_name: str = ""
    date_sent: date | None = None
    date_received: date
    jurisdictions: list[str] = Field(default_factory=list)
    works: list[Work] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    action_taken: Literal["Yes", "No", "Partial", "Unspecified"] = "Unspecified"
    # -- ours
    scope: Scope
    demands: Demands = Field(default_factory=Demands)
    effective_at: AwareDatetime = Field(description="when blocking starts (an ISO 8601 time with its zone)")
    purge_deadline: date | None = Field(default=None, description="the date the sender set for deletion, if any")
    status: Literal["active", "withdrawn"] = "active"
    withdrawn_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="when blocking ends by itself (a site owner's objection pending verification: a pause, "
        "COMPLIANCE_OBJECTION_PENDING_DAYS); none for a notice, which blocks until withdrawn",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Notice:
        if self.status == "withdrawn" and self.withdrawn_at is None:
            raise ValueError("a withdrawn notice needs withdrawn_at")
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise ValueError(f"expires_at ({self.expires_at.isoformat()}) is not after effective_at ({self.effective_at.isoformat()})")
        if self.date_sent is not None and self.date_sent > self.date_received:
            raise ValueError(f"date_sent ({self.date_sent}) is after date_received ({self.date_received})")
        # A day of slack for time zones; later than that is a typo, not a notice.
        if self.date_received > datetime.now(UTC).date() + timedelta(days=1):
            raise ValueError(f"date_received ({self.date_received}) is in the future")
        return self

    @property
    def is_cease_and_desist(self) -> bool:
        return self.type == "Other" and CEASE_AND_DESIST in self.tags

    def as_record(self) -> dict[str, Any]:
        """The notice as plain JSON-ready data, Lumen fields first (the file's and the store's form)."""
        return self.model_dump(mode="json", exclude_none=True)


def notice_type(value: str) -> tuple[str, list[str]]:
    """``--type`` as given -> (Lumen type, tags): ``cease-and-desist`` is ``Other`` with that tag."""
    if value.lower() == CEASE_AND_DESIST:
        return "Other", [CEASE_AND_DESIST]
    for known in NOTICE_TYPES:
        if value.lower() == known.lower():
            return known, []
    raise ValueError(f"unknown notice type {value!r}; use one of: {CEASE_AND_DESIST}, {', '.join(NOTICE_TYPES)}")


# -- matching ----------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledScope:
    """A scope ready for matching: one dict look-up per URL.

    Used by the gates (is this request covered?) and by the purge (is this
    stored record covered?), so both agree by construction.
    """

    domains: frozenset[str]
    patterns: tuple[tuple[str, str, str], ...]  # (host, path pattern, pattern as written)

    @classmethod
    def build(cls, scope: Scope, policies: PolicySet | None, extra_domains: Iterable[str] = ()) -> CompiledScope:
        domains = set(scope.domains) | set(extra_domains)
        if scope.platform:
            # Every policy with that id: a project's replacement and the shipped
            # policy's domains it did not claim.
            for loaded in policies.platforms if policies else ():
                if loaded.policy.id == scope.platform:
                    domains.update(loaded.policy.domains)
        patterns = []
        for written in scope.url_patterns:
            parts = urlsplit(written)
            # Normalised as robots.txt paths are (Protego's quoting): %7E and ~,
            # %c3%a9 and é, all compare equal, in the pattern and in the URL.
            path = _quote_pattern(written.split(parts.netloc, 1)[1] or "/")
            patterns.append((ascii_host(parts.hostname or ""), path, written))
        return cls(frozenset(ascii_host(d) for d in domains), tuple(patterns))

    def match(self, url: str) -> str | None:
        """The rule that covers ``url`` (``domain D`` or the URL pattern), or None."""
        parts = urlsplit(url)
        host = ascii_host(parts.hostname or "")
        domain = registered_domain(host)
        if domain in self.domains:
            return f"domain {domain}"
        if self.patterns:
            target = _quote_path(url)
            for pattern_host, path, written in self.patterns:
                if host == pattern_host and matches(path, target):
                    return f"URLs {written}"
        return None

    @property
    def hosts(self) -> frozenset[str]:
        """Every registered domain a URL in scope can have (for indexing)."""
        return self.domains | {registered_domain(host) for host, _, _ in self.patterns}

    @property
    def pattern_domains(self) -> frozenset[str]:
        """Registered domains of the URL patterns' hosts (candidates are selected by domain, then matched)."""
        return frozenset(registered_domain(host) for host, _, _ in self.patterns) - self.domains


@dataclass(frozen=True)
class ActiveNotice:
    notice: Notice
    source: str  # where the notice lives: FILE:LINE, or "store" for one filed on another machine
    scope: CompiledScope


@dataclass(frozen=True)
class NoticeSet:
    """The notices that block requests, indexed by registered domain."""

    version: str
    notices: tuple[ActiveNotice, ...] = ()
    by_domain: Mapping[str, tuple[ActiveNotice, ...]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, notices: Iterable[ActiveNotice], version: str) -> NoticeSet:
        blocking = tuple(n for n in notices if n.notice.status == "active" and n.notice.demands.stop_collection)
        index: dict[str, list[ActiveNotice]] = {}
        for active in blocking:
            for domain in active.scope.hosts:
                index.setdefault(domain, []).append(active)
        return cls(version, blocking, {k: tuple(v) for k, v in index.items()})

    def _candidates(self, url: str) -> Any:
        host = urlsplit(url).hostname or ""
        if host.endswith(".") or not host.isascii():
            host = ascii_host(host)
        return self.by_domain.get(registered_domain(host))

    def timeless(self, url: str) -> bool:
        """Whether :meth:`decide` answers the same for ``url`` at any moment: no notice names its domain.

        (A notice can take effect later, and a pause expire: a URL of its domain is decided anew each time.)
        """
        return not self.by_domain or not self._candidates(url)

    def decide(self, url: str, now: datetime | None = None) -> Decision:
        if not self.by_domain:
            return ALLOW
        candidates = self._candidates(url)
        if not candidates:
            return ALLOW
        now = now or datetime.now(UTC)
        for active in candidates:
            notice = active.notice
            # The filer's clock set effective_at; this machine's may be behind.
            # Enforcing up to CLOCK_SKEW early fails closed; later is a breach.
            if notice.effective_at > now + CLOCK_SKEW:
                continue
            # A pause that expired (an objection never verified). Enforced up
            # to CLOCK_SKEW past its end on this machine's clock: fail closed.
            if notice.expires_at is not None and notice.expires_at < now - CLOCK_SKEW:
                continue
            rule = active.scope.match(url)
            if rule is not None:
                kind = "cease-and-desist" if notice.is_cease_and_desist else f"{notice.type} notice"
                return Decision.refuse(
                    f"notice.{notice.id}",
                    rule=f"{kind} from {notice.sender_name} received {notice.date_received}: stop collecting {rule}",
                    source=active.source,
                )
        return ALLOW


# -- files -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedNotice:
    notice: Notice
    path: str
    line: int  # of the ``scope`` key: the part a refusal is about


def notice_files(directory: Path | None) -> list[Path]:
    """The notice files in ``DIR/notices``; OSError when that folder cannot be listed (see ``yaml_files``)."""
    return yaml_files(directory / "notices") if directory is not None else []


def load_notice_files(
    directory: str | Path | None, platform_ids: Iterable[str] | None = None,
    filed_domains: Mapping[str, Iterable[str]] | None = None,
) -> tuple[list[LoadedNotice], list[str]]:
    """Every valid notice file in ``DIR/notices``, and every error of every file.

    With ``platform_ids``, a scope naming an unknown platform is an error
    (it would block nothing, which must not pass silently). ``filed_domains``
    maps a notice id to the domains its filing already checked against the
    suffix list (see :data:`FILED_DOMAINS`): they vouch for that notice's own
    file only.
    """
    filed = filed_domains or {}
    errors: list[str] = []
    loaded_notices: list[LoadedNotice] = []
    seen: dict[str, LoadedNotice] = {}
    known = set(platform_ids) if platform_ids is not None else None
    try:
        paths = notice_files(Path(directory) if directory is not None else None)
    except OSError as exc:
        return [], [f"{Path(directory) / 'notices'}:1: (folder): cannot be read ({exc.strerror or exc}); notices in it cannot be known"]
    for path in paths:
        parsed = parse_model_file(path, Notice, errors, "missing", {FILED_DOMAINS: frozenset(filed.get(path.stem, ()))})
        if parsed is None:
            continue
        notice, loaded = parsed
        if path.stem != notice.id:
            errors.append(f"{path}:{loaded.line_of(('id',))}: id: {notice.id!r} must match the file name ({path.stem}.yaml)")
            continue
        if known is not None and notice.scope.platform and notice.scope.platform not in known:
            errors.append(
                f"{path}:{loaded.line_of(('scope', 'platform'))}: scope.platform: unknown platform "
                f"{notice.scope.platform!r}; known: {', '.join(sorted(known)) or '(none)'}"
            )
            continue
        other = seen.get(notice.id)
        if other is not None:
            errors.append(f"{path}:1: id: {notice.id!r} is already used by {other.path}")
            continue
        entry = LoadedNotice(notice, str(path), loaded.line_of(("scope",)))
        seen[notice.id] = entry
        loaded_notices.append(entry)
    return loaded_notices, errors


def merge_notices(
    from_files: Iterable[LoadedNotice], from_store: Iterable[tuple[Notice, list[str]]], policies: PolicySet | None
) -> list[ActiveNotice]:
    """The registry a crawl enforces: the store's notices, and the files' that the store lacks.

    The store wins for an id it holds (a withdrawal there ends blocking even
    if a stale copy of the file still says active).
    """
    merged: dict[str, ActiveNotice] = {}
    files = {n.notice.id: n for n in from_files}
    for notice, resolved_domains in from_store:
        loaded = files.get(notice.id)
        source = f"{loaded.path}:{loaded.line}" if loaded is not None else f"store: notice {notice.id}"
        merged[notice.id] = ActiveNotice(notice, source, CompiledScope.build(notice.scope, policies, resolved_domains))
    for notice_id, loaded in files.items():
        if notice_id not in merged:
            merged[notice_id] = ActiveNotice(
                loaded.notice, f"{loaded.path}:{loaded.line}", CompiledScope.build(loaded.notice.scope, policies)
            )
    return list(merged.values())
