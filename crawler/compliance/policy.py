"""Platform terms as policy files, and the decision they make for a URL.

The package ships the platforms whose terms forbid automated collection
(``crawler/shipped/platforms/*.yaml``) and a polite default; they are always
in force. A compliance person adds or replaces them in the project's
``policies/platforms/*.yaml`` (one platform each) and
``policies/default.yaml`` (every host without a platform policy). The
models are strict (unknown fields forbidden, values frozen); the JSON Schema
editors use is generated from them (``scrapy policy schema``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, model_validator

from crawler.compliance.decision import Decision
from crawler.compliance.domains import registered_domain
from crawler.compliance.patterns import matches
from crawler.compliance.modelfile import Strict, parse_model_file, yaml_files
from crawler.compliance.yamlfile import LoadedYaml

Purpose = Literal["search", "train-ai", "archive"]
Collection = Literal["forbidden", "consent-required", "allowed-per-robots", "allowed"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the terms document as reviewed (hex)")]
PathPattern = Annotated[
    str, Field(pattern=r"^/", description="robots.txt pattern syntax: a path prefix, '*' any characters, '$' end")
]



def _retention(text: str) -> str:
    from crawler.dataprotection.durations import parse_duration

    parse_duration(text)  # ValueError with what is accepted
    return text


Retention = Annotated[
    str,
    Field(
        description="how long items are kept after they were fetched: an ISO 8601 duration such as P180D, P3Y, P1Y6M "
        "(GDPR Art. 5(1)(e); the published schedule BIPA §15(a) asks for: scrapy retention show)",
        json_schema_extra={"pattern": r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?$"},
    ),
    AfterValidator(_retention),
]


_Strict = Strict


class Terms(_Strict):
    """The platform's terms on automated collection, as a person reviewed them."""

    url: str = Field(pattern=r"^https?://", description="where the terms are published")
    clause: str = Field(min_length=1, description="the clause quoted verbatim")
    reviewed: date = Field(description="the day a person last read the terms")
    sha256: Sha256 | None = Field(
        default=None, description="sha256 of the document as reviewed; null until recorded (scrapy policy audit)"
    )


class Consent(_Strict):
    """Written permission from the platform, limited in scope and time."""

    granted_by: str = Field(min_length=1)
    reference: str = Field(min_length=1, description="letter, contract id, ticket")
    paths: list[PathPattern] = Field(default_factory=lambda: ["/"], min_length=1)
    purposes: list[Purpose] = Field(default_factory=list, description="empty: any purpose")
    valid_from: date
    valid_until: date

    def state(self, today: date) -> Literal["valid", "expired", "not yet valid"]:
        if today > self.valid_until:
            return "expired"
        return "valid" if today >= self.valid_from else "not yet valid"

    @model_validator(mode="after")
    def _dates_in_order(self) -> Consent:
        if self.valid_until < self.valid_from:
            raise ValueError(f"valid_until ({self.valid_until}) is before valid_from ({self.valid_from})")
        return self


class PathRule(_Strict):
    """Allow or deny paths on the platform (longest match wins, allow on a tie)."""

    allow: PathPattern | None = None
    deny: PathPattern | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PathRule:
        if (self.allow is None) == (self.deny is None):
            raise ValueError("give exactly one of 'allow' or 'deny'")
        return self


class Rate(_Strict):
    """A pace the crawler keeps even when robots.txt asks for less."""

    min_delay: float = Field(ge=0, le=3600, description="seconds between requests to one host (0: no delay)")
    max_concurrency: int = Field(default=1, ge=1, le=64, description="requests in flight per host")


class PlatformPolicy(_Strict):
    """One platform's terms and how this crawler treats it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="short id, used in notices and reports")
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    domains: list[str] = Field(min_length=1, description="registered domains; subdomains are covered")
    terms: Terms
    collection: Collection
    consents: list[Consent] = Field(default_factory=list)
    paths: list[PathRule] = Field(default_factory=list)
    rate: Rate | None = None
    purposes: list[Purpose] = Field(default_factory=list, description="purposes the platform allows; empty: any")
    retention: Retention | None = Field(default=None, description="this platform's items are kept this long; null: the default policy's")

    @model_validator(mode="after")
    def _registered_domains(self) -> PlatformPolicy:
        for domain in self.domains:
            expected = registered_domain(domain)
            if domain != domain.lower() or expected != domain:
                raise ValueError(
                    f"domains: {domain!r} is not a registered domain; write {expected!r} (subdomains are covered)"
                )
        return self


class DefaultPolicy(_Strict):
    """What applies to every host without a platform policy."""

    collection: Literal["allowed-per-robots"] = "allowed-per-robots"
    rate: Rate
    retention: Retention | None = Field(
        default=None, description="items without a platform retention are kept this long; null: the shipped default's"
    )


# -- loading -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedPolicy:
    policy: PlatformPolicy
    path: str
    lines: dict[tuple[str | int, ...], int] = field(repr=False, hash=False, compare=False)

    def source(self, *loc: str | int) -> str:
        return f"{self.path}:{LoadedYaml(self.path, None, self.lines).line_of(loc)}"


@dataclass(frozen=True)
class PolicySet:
    """Every valid policy, indexed by registered domain: one dict look-up per URL."""

    directory: str
    default: DefaultPolicy
    default_path: str
    platforms: tuple[LoadedPolicy, ...]
    version: str
    by_domain: dict[str, LoadedPolicy] = field(repr=False, hash=False, compare=False)

    def platform_for(self, host: str) -> LoadedPolicy | None:
        return self.by_domain.get(registered_domain(host))

    def rate_for(self, host: str) -> Rate:
        platform = self.platform_for(host)
        if platform is not None and platform.policy.rate is not None:
            return platform.policy.rate
        return self.default.rate

    def decide(self, url: str, today: date, purposes: frozenset[str] = frozenset()) -> Decision:
        parts = urlsplit(url)
        loaded = self.platform_for(parts.hostname or "")
        if loaded is None:
            return _DEFAULT_ALLOW
        return _decide_platform(loaded, parts.path or "/", parts.query, today, purposes)


_DEFAULT_ALLOW = Decision.allow("terms.default", rule="no platform policy: robots.txt and opt-outs decide")


def _decide_platform(loaded: LoadedPolicy, path: str, query: str, today: date, purposes: frozenset[str]) -> Decision:
    policy = loaded.policy
    target = f"{path}?{query}" if query else path
    name = f"{policy.name} ({policy.owner})"
    if policy.collection == "forbidden":
        return Decision.refuse(
            "terms.forbidden",
            rule=f"{name} forbids automated collection: {policy.terms.clause!r} ({policy.terms.url})",
            source=loaded.source("collection"),
        )
    if policy.purposes and purposes and not purposes <= set(policy.purposes):
        return Decision.refuse(
            "terms.purpose",
            rule=f"{name} allows only {', '.join(policy.purposes)}; this crawl is for {', '.join(sorted(purposes))}",
            source=loaded.source("purposes"),
        )
    # Path rules: longest pattern wins, allow wins a tie (as in robots.txt).
    best: tuple[int, bool, int] | None = None
    for index, rule in enumerate(policy.paths):
        pattern = rule.allow if rule.allow is not None else rule.deny
        assert pattern is not None
        if matches(pattern, target):
            candidate = (len(pattern), rule.allow is not None, index)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
    if best is not None and not best[1]:
        rule = policy.paths[best[2]]
        return Decision.refuse(
            "terms.path-denied", rule=f"{name}: deny {rule.deny}", source=loaded.source("paths", best[2])
        )
    if policy.collection == "consent-required":
        expired: tuple[int, Consent] | None = None
        for index, consent in enumerate(policy.consents):
            in_scope = any(matches(p, target) for p in consent.paths) and (
                not consent.purposes or not purposes or purposes <= set(consent.purposes)
            )
            if not in_scope:
                continue
            state = consent.state(today)
            if state == "valid":
                return Decision.allow(
                    "terms.consent",
                    rule=f"consent {consent.reference!r} from {consent.granted_by}, valid {consent.valid_from} to {consent.valid_until}",
                    source=loaded.source("consents", index),
                )
            if state == "expired" and (expired is None or consent.valid_until > expired[1].valid_until):
                expired = (index, consent)
        if expired is not None:
            index, consent = expired
            return Decision.refuse(
                "terms.consent-expired",
                rule=f"{name} requires consent; consent {consent.reference!r} from {consent.granted_by} expired on {consent.valid_until}",
                source=loaded.source("consents", index),
            )
        return Decision.refuse(
            "terms.consent-required",
            rule=f"{name} requires written consent, none valid on {today}: {policy.terms.clause!r} ({policy.terms.url})",
            source=loaded.source("collection"),
        )
    return Decision.allow(f"terms.{policy.collection}", rule=f"{name}: {policy.collection}", source=loaded.source("collection"))


#: The policies shipped with the package: the platforms whose terms forbid
#: automated collection, and a polite default. Always in force as a floor.
SHIPPED = Path(__file__).resolve().parent.parent / "shipped"


def shipped_label(path: str | Path) -> str:
    """How a shipped file is named in decisions and errors: ``shipped/platforms/venmo.yaml``."""
    text = str(path)
    root = str(SHIPPED)
    return "shipped" + text[len(root):] if text.startswith(root) else text


def load_policies(
    directory: str | Path | None, fallback: PolicySet | None = None, *, required: bool = True, shipped: Path = SHIPPED
) -> tuple[PolicySet | None, list[str]]:
    """Load and validate every policy file: the set, and every error of every file.

    The shipped policies are always loaded first. ``directory`` (the
    project's policy folder, or None for a project without one) may add
    platforms, replace a shipped platform (a valid file with the same id, or
    claiming the same domains), and replace the default with its own
    ``default.yaml``. A replaced shipped policy keeps the domains no project
    file claims, so leaving a domain out of a replacement never opens it up.

    Without ``fallback`` any error means no set (fail closed at start-up).
    With ``fallback`` (a reload during a crawl), a file that fails keeps its
    last valid version from ``fallback``, and a new file that fails is left
    out, so a broken edit never opens anything up while valid edits to other
    files still apply.
    """
    errors: list[str] = []
    floor_default, floor_platforms = _load_shipped(shipped, errors)
    root = Path(directory) if directory is not None else None
    if root is None or (not required and not root.exists() and not root.is_symlink()):
        return _assemble(root, floor_default, floor_platforms, [], errors, lenient=fallback is not None)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "not found"
        return None, [f"{root}: policy directory {what} (COMPLIANCE_POLICY_DIR)"]
    default: DefaultPolicy | None = floor_default
    platforms: list[LoadedPolicy] = []
    previous = {p.path: p for p in fallback.platforms} if fallback is not None else {}
    try:
        paths = yaml_files(root / "platforms")
    except OSError as exc:
        return None, [f"{root / 'platforms'}:1: (folder): cannot be read ({exc.strerror or exc}); its policies cannot be known"]
    own_default = root / "default.yaml"
    if own_default.exists() or own_default.is_symlink():
        parsed = _parse_file(own_default, True, errors)
        if parsed is not None:
            if parsed.retention is None and floor_default is not None:
                # No retention written: the shipped default's (finite) period, never "forever".
                parsed = parsed.model_copy(update={"retention": floor_default.retention})
            default = parsed
        elif fallback is not None:
            default = fallback.default
        else:
            default = None
    for path in paths:
        parsed = _parse_file(path, False, errors)
        if parsed is not None:
            platforms.append(parsed)
        elif str(path) in previous:
            platforms.append(previous[str(path)])
    return _assemble(root, default, floor_platforms, platforms, errors, lenient=fallback is not None)


_SHIPPED_CACHE: dict[Path, tuple[DefaultPolicy | None, list[LoadedPolicy], list[str]]] = {}


def _load_shipped(shipped: Path, errors: list[str]) -> tuple[DefaultPolicy | None, list[LoadedPolicy]]:
    """The package's own policies (read once per process: package data does not change)."""
    if shipped not in _SHIPPED_CACHE:
        found: list[str] = []
        default = _parse_file(shipped / "default.yaml", True, found)
        platforms = [p for p in (_parse_file(path, False, found) for path in yaml_files(shipped / "platforms")) if p]
        platforms = [LoadedPolicy(p.policy, shipped_label(p.path), p.lines) for p in platforms]
        _SHIPPED_CACHE[shipped] = (default, platforms, [shipped_label(e) for e in found])
    default, platforms, found = _SHIPPED_CACHE[shipped]
    errors.extend(found)
    return default, list(platforms)


def _parse_file(path: Path, is_default: bool, errors: list[str]) -> Any:
    """One file's DefaultPolicy or LoadedPolicy, or None with its errors appended."""
    model: type[BaseModel] = DefaultPolicy if is_default else PlatformPolicy
    parsed = parse_model_file(path, model, errors, "missing")
    if parsed is None:
        return None
    instance, loaded = parsed
    return instance if is_default else LoadedPolicy(instance, str(path), loaded.lines)


def policy_files(directory: Path | None) -> list[Path]:
    """The project's ``default.yaml`` and platform policies (what a running crawl watches for edits).

    OSError when ``platforms/`` exists but cannot be listed.
    """
    if directory is None:
        return []
    return [directory / "default.yaml", *yaml_files(directory / "platforms")]


def _floor(shipped: list[LoadedPolicy], own: list[LoadedPolicy]) -> list[LoadedPolicy]:
    """The shipped policies, each without the domains a project file claims (dropped when none is left)."""
    claimed = {domain for loaded in own for domain in loaded.policy.domains}
    kept = []
    for loaded in shipped:
        left = [d for d in loaded.policy.domains if d not in claimed]
        if len(left) == len(loaded.policy.domains):
            kept.append(loaded)
        elif left:
            kept.append(LoadedPolicy(loaded.policy.model_copy(update={"domains": left}), loaded.path, loaded.lines))
    return kept


def _assemble(
    root: Path | None, default: DefaultPolicy | None, shipped: list[LoadedPolicy], own: list[LoadedPolicy],
    errors: list[str], *, lenient: bool,
) -> tuple[PolicySet | None, list[str]]:  # fmt: skip
    by_domain: dict[str, LoadedPolicy] = {}
    ids: dict[str, LoadedPolicy] = {}
    for loaded_policy in own:
        other = ids.get(loaded_policy.policy.id)
        if other is not None:
            errors.append(
                f"{loaded_policy.source('id')}: id: {loaded_policy.policy.id!r} is already used by {other.source('id')}"
            )
        ids.setdefault(loaded_policy.policy.id, loaded_policy)
        for index, domain in enumerate(loaded_policy.policy.domains):
            claimed = by_domain.get(domain)
            if claimed is not None:
                position = claimed.policy.domains.index(domain)
                errors.append(
                    f"{loaded_policy.source('domains', index)}: domains.{index}: {domain!r} is also claimed by "
                    f"{claimed.source('domains', position)} (one platform policy per domain)"
                )
                continue
            by_domain[domain] = loaded_policy
    floor = _floor(shipped, own)
    for loaded_policy in floor:
        for domain in loaded_policy.policy.domains:
            by_domain[domain] = loaded_policy
    platforms = [*own, *floor]
    conflicts = any("is also claimed by" in e or "is already used by" in e for e in errors)
    if default is None or conflicts or (errors and not lenient):
        return None, errors
    digest = hashlib.sha256(default.model_dump_json().encode())
    for loaded_policy in platforms:
        digest.update(loaded_policy.path.encode() + b"\0" + loaded_policy.policy.model_dump_json().encode())
    version = digest.hexdigest()[:16]
    own_default = root / "default.yaml" if root is not None else None
    default_path = str(own_default) if own_default is not None and own_default.is_file() else shipped_label(SHIPPED / "default.yaml")
    return PolicySet(str(root) if root is not None else shipped_label(SHIPPED), default, default_path, tuple(platforms), version, by_domain), errors


def json_schema() -> dict[str, Any]:
    """The JSON Schema of policy files (platform or default), from the models."""
    from pydantic.json_schema import models_json_schema

    from crawler.compliance.notices import Notice

    _, defs = models_json_schema(
        [(PlatformPolicy, "validation"), (DefaultPolicy, "validation"), (Notice, "validation")], title="Compliance policy file"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Compliance policy file",
        "description": "policies/default.yaml (DefaultPolicy), policies/platforms/*.yaml (PlatformPolicy) "
        "or policies/notices/*.yaml (Notice)",
        "anyOf": [{"$ref": "#/$defs/PlatformPolicy"}, {"$ref": "#/$defs/DefaultPolicy"}, {"$ref": "#/$defs/Notice"}],
        **defs,
    }
