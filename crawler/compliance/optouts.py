"""Machine-readable opt-outs on a page, and what they mean for a crawl's purposes.

GDPR Art. 21(5): people may object "by automated means using technical
specifications". These signals are such objections, not hints:

* X-Robots-Tag headers and ``<meta name="robots">`` / ``<meta name="<token>">``
  (Google Search Central): ``noindex``/``none`` -> not stored; ``nofollow``/
  ``none`` -> links not followed; ``noarchive`` -> not stored for ``archive``;
  ``noai``/``noimageai`` (DeviantArt's, not standardised) -> not stored for
  ``train-ai``. Comma lists, case-insensitive, optionally scoped to one bot
  (``otherbot: noindex``). The most restrictive directive wins.
* IETF AI Preferences (draft-ietf-aipref-vocab, -attach-05): the
  ``Content-Usage`` header and robots.txt rule, an RFC 9651 dictionary with
  ``y``/``n`` tokens for the categories ``train-ai`` and ``search``. Other
  labels and all parameters are ignored; a duplicated key keeps its last
  value; any other value is *unknown*, and a parse error makes the whole
  statement unknown. When statements combine, any ``n`` wins, then ``y``.
* Cloudflare's ``Content-Signal: search=yes, ai-train=no, ai-input=no``.
* W3C TDMRep (2024): ``tdm-reservation`` 1 reserves text and data mining
  (-> not stored for ``train-ai``); the well-known file, overridden by the
  header, overridden by HTML meta; a layer with no valid value (0 or 1) does
  not reset the one before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import http_sf

from crawler.compliance.decision import ALLOW, Decision

PURPOSES = ("search", "train-ai", "archive")

#: Which purposes each page directive restricts ("*" = every purpose).
_ROBOTS_DIRECTIVES: dict[str, tuple[str, ...]] = {
    "noindex": ("*",),
    "none": ("*",),
    "noarchive": ("archive",),
    "noai": ("train-ai",),
    "noimageai": ("train-ai",),
}
_NOFOLLOW = {"nofollow", "none"}

#: The aipref vocabulary's categories (vocab section 4, labels in section 6.1),
#: which are also purposes of ours. Any other label is ignored (section 6.4),
#: including labels of earlier revisions such as ``all``, ``bots``, ``ai-use``.
AIPREF_CATEGORIES = ("train-ai", "search")
#: Cloudflare Content-Signal keys onto our purposes. ``ai-input`` (using the
#: content as input to an AI answer) has no purpose of its own here; the
#: strict reading files it under train-ai.
_CONTENT_SIGNAL_KEYS = {"search": "search", "ai-train": "train-ai", "ai-input": "train-ai"}


def parse_content_usage(value: str, problems: list[str] | None = None) -> dict[str, str | None]:
    """A statement of preference as {category: 'y' | 'n' | None (unknown)}.

    The processing algorithm of the aipref vocabulary (section 6.5): the bytes
    are parsed as an RFC 9651 Dictionary; for each category of the vocabulary
    the Token ``y`` allows, the Token ``n`` disallows, anything else (a
    string, a boolean, another token) is unknown. Parameters are disregarded.
    A key that appears twice keeps its last value, as RFC 9651 parsing does
    (section 6.5.1); a parse error, uppercase keys included, makes every
    preference unknown (an empty result). Categories the statement does not
    mention are absent. Why a value was not understood is appended to
    ``problems``.
    """
    notes = problems if problems is not None else []
    duplicates: list[str] = []

    def note_duplicate(key: str, kind: str) -> None:
        if kind == "dictionary" and key in AIPREF_CATEGORIES:
            duplicates.append(key)

    try:
        # Bytes, not text (vocab section 6.3): any non-ASCII byte is a parse error.
        parsed = http_sf.parse(value.encode("utf-8", "replace"), tltype="dictionary", on_duplicate_key=note_duplicate)
    except (http_sf.StructuredFieldError, ValueError) as exc:
        notes.append(f"not an RFC 9651 dictionary ({exc}): every preference is unknown")
        return {}
    ignored = [key for key in parsed if key not in AIPREF_CATEGORIES]  # type: ignore[union-attr]
    if ignored:
        notes.append(f"not in the vocabulary, ignored: {_clip(', '.join(ignored))}")
    for key in dict.fromkeys(duplicates):
        notes.append(f"{key} appears more than once: its last value applies")
    result: dict[str, str | None] = {}
    for key in AIPREF_CATEGORIES:
        if key not in parsed:  # type: ignore[operator]
            continue
        member = parsed[key]  # type: ignore[index]
        item = member[0] if isinstance(member, tuple) else member
        token = str(item) if isinstance(item, http_sf.Token) and str(item) in ("y", "n") else None
        if token is None:
            shown = _clip(http_sf.ser(item)) if not isinstance(item, list) else "an inner list"
            notes.append(f"{key}: {shown} is not y or n, so unknown")
        result[key] = token
    return result


def parse_content_signal(value: str, problems: list[str] | None = None) -> dict[str, str]:
    """``Content-Signal`` as {purpose: 'y' | 'n'}; anything but yes/no is ignored, with a reason in ``problems``."""
    notes = problems if problems is not None else []
    result: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        key, _, raw = part.partition("=")
        purpose = _CONTENT_SIGNAL_KEYS.get(key.strip().lower())
        answer = {"yes": "y", "no": "n"}.get(raw.strip().lower())
        if purpose is None:
            notes.append(f"{_clip(key.strip())}: not a Content-Signal we know (search, ai-train, ai-input), ignored")
        elif answer is None:
            notes.append(f"{key.strip().lower()}={_clip(raw.strip())}: not yes or no, ignored")
        else:
            # Two keys on one purpose (ai-train, ai-input): any "no" wins.
            result[purpose] = "n" if "n" in (answer, result.get(purpose)) else answer
    return result


def _clip(text: str, limit: int = 80) -> str:
    """``text`` cut for a log line or provenance: hostile values must not bloat either."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


#: Page-level directives that search engines and AI crawlers document
#: (Google Search Central, Bing, DeviantArt's noai). A ``name:`` prefix is a
#: bot scope only when a directive follows it; ``max-snippet: 20`` and
#: ``unavailable_after: <date>`` are directives with values.
_KNOWN_DIRECTIVES = frozenset({
    "all", "index", "follow", "noindex", "nofollow", "none", "noarchive", "nocache", "nosnippet", "notranslate",
    "noimageindex", "indexifembedded", "noodp", "noydir", "unavailable_after", "max-snippet", "max-image-preview",
    "max-video-preview", "noai", "noimageai",
})  # fmt: skip
_MAX_DIRECTIVES = 64  # per page; a hostile header cannot bloat provenance
_MAX_PROBLEMS = 20  # likewise for the reasons values were ignored


def _directive_name(text: str) -> str:
    return text.strip().lower().split(":", 1)[0].strip()


def robots_directives(values: Iterable[str], token: str) -> list[str]:
    """Directives that apply to ``token`` from X-Robots-Tag values or robots meta contents.

    ``otherbot: noindex`` applies only to otherbot; an unscoped list applies
    to every crawler. A value may mix scopes (``googlebot: nofollow, noai``
    keeps applying to googlebot until the next ``name:``). ``name:`` is a
    scope only when a known directive follows it, so directives with values
    (``max-snippet: 20``, ``unavailable_after: Wed, 03 Dec 2030 ...``) and the
    pieces of a date never hide the directives after them.
    """
    token = token.lower()
    found: list[str] = []
    for value in values:
        scope: str | None = None
        for raw_part in value.split(","):
            part = raw_part.strip()
            name, colon, rest = part.partition(":")
            name = name.strip().lower()
            if colon and name not in _KNOWN_DIRECTIVES and _directive_name(rest) in _KNOWN_DIRECTIVES and " " not in name:
                scope, part = name, rest.strip()
            directive = " ".join(part.lower().split())[:100]
            if _directive_name(directive) not in _KNOWN_DIRECTIVES:
                continue  # a date fragment, or a directive nobody defined: nothing to honour
            if scope is None or scope == token:
                found.append(directive)
    return found[:_MAX_DIRECTIVES]


def tdm_value(raw: str | None) -> int | None:
    """A TDMRep ``tdm-reservation`` value: 0, 1, or None (unset or invalid)."""
    return {"0": 0, "1": 1}.get((raw or "").strip())


@dataclass(frozen=True)
class PageSignals:
    """Every opt-out signal seen on one response, with where it came from."""

    robots: tuple[tuple[str, str], ...] = ()  # (directive, source) applying to us
    content_usage: Mapping[str, str | None] = field(default_factory=dict)
    content_usage_source: str = ""
    content_signal: Mapping[str, str] = field(default_factory=dict)
    content_signal_source: str = ""
    #: Per purpose, the statements that said n (the ones a refusal names).
    content_usage_denied_by: Mapping[str, str] = field(default_factory=dict)
    content_signal_denied_by: Mapping[str, str] = field(default_factory=dict)
    tdm_reservation: int | None = None
    tdm_source: str = ""
    tdm_policy: str = ""
    #: Malformed values seen, each with why it was ignored (logged by the adapter).
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The signals that were present (empty ones left out, to keep provenance small)."""
        full = {
            "robots": [list(pair) for pair in self.robots],
            "content_usage": dict(self.content_usage),
            "content_usage_source": self.content_usage_source,
            "content_signal": dict(self.content_signal),
            "content_signal_source": self.content_signal_source,
            "content_usage_denied_by": dict(self.content_usage_denied_by),
            "content_signal_denied_by": dict(self.content_signal_denied_by),
            "tdm_reservation": self.tdm_reservation,
            "tdm_source": self.tdm_source,
            "tdm_policy": self.tdm_policy,
            "problems": list(self.problems),
        }
        return {key: value for key, value in full.items() if value not in (None, "", [], {})}

    @property
    def follow(self) -> bool:
        return not any(directive in _NOFOLLOW for directive, _ in self.robots)


def describe_signals(signals: Mapping[str, Any]) -> str:
    """One line for people from a ``PageSignals.as_dict()`` (as kept in provenance)."""
    parts: list[str] = []
    by_source: dict[str, list[str]] = {}
    for directive, source in signals.get("robots", []):
        by_source.setdefault(source, []).append(directive)
    parts += [f"{source}: {', '.join(directives)}" for source, directives in by_source.items()]
    if signals.get("content_usage"):
        prefs = ", ".join(f"{k}={v if v else 'unknown'}" for k, v in sorted(signals["content_usage"].items()))
        parts.append(f"Content-Usage {prefs} ({signals.get('content_usage_source') or 'not understood'})")
    if signals.get("content_signal"):
        prefs = ", ".join(f"{k}={v}" for k, v in sorted(signals["content_signal"].items()))
        parts.append(f"Content-Signal {prefs} ({signals.get('content_signal_source', '')})")
    if signals.get("tdm_reservation") is not None:
        parts.append(f"tdm-reservation {signals['tdm_reservation']} ({signals.get('tdm_source', '')})")
    understood = "; ".join(parts) or "none"
    if signals.get("problems"):
        return f"{understood if parts else 'none understood'}; notes: {'; '.join(signals['problems'])}"
    return understood


def collect_signals(
    headers: Mapping[str, list[str]], metas: Iterable[tuple[str, str]], token: str, *, tdm_well_known: int | None = None,
    tdm_well_known_source: str = "", tdm_well_known_policy: str = "",
    robots_usage: Mapping[str, list[tuple[str, str]]] | None = None,
) -> PageSignals:
    """Gather the signals from lower-cased ``headers``, ``(name, content)`` meta
    pairs and the robots.txt group rules (``{"content-usage": [(value, source), ...]}``)."""
    token_l = token.lower()
    problems: list[str] = []
    robots: list[tuple[str, str]] = [(d, "X-Robots-Tag header") for d in robots_directives(headers.get("x-robots-tag", []), token)]
    meta_tdm: int | None = None
    meta_tdm_policy = ""
    for name, content in metas:
        name = name.strip().lower()
        if name in ("robots", token_l):
            robots += [(d, f'<meta name="{name}">') for d in robots_directives([content], token)]
        elif name == "tdm-reservation":
            if tdm_value(content) is None:
                problems.append(f'<meta name="tdm-reservation" content={_clip(repr(content))}>: not 0 or 1, counts as unset')
            meta_tdm = tdm_value(content) if tdm_value(content) is not None else meta_tdm
        elif name == "tdm-policy":
            meta_tdm_policy = _clip(content.strip(), 300)
    robots_usage = robots_usage or {}
    # Several Content-Usage field lines are one field (RFC 9651 section 4.2):
    # joined with commas and parsed as one dictionary. Each robots.txt rule
    # that applies is a statement of its own.
    usage_statements = [(", ".join(headers["content-usage"]), "Content-Usage header")] if headers.get("content-usage") else []
    usage_statements += [(v, f"Content-Usage in {source}") for v, source in robots_usage.get("content-usage", [])]
    usage, usage_sources, usage_denied = _combine(usage_statements, parse_content_usage, problems)
    signal_statements = [(v, "Content-Signal header") for v in headers.get("content-signal", [])]
    signal_statements += [(v, f"Content-Signal in {source}") for v, source in robots_usage.get("content-signal", [])]
    signal, signal_sources, signal_denied = _combine(signal_statements, parse_content_signal, problems)
    # TDMRep layering: well-known file < header < meta; an unset layer keeps
    # the one before, and tdm-policy comes from the layer that decided.
    tdm, tdm_source, tdm_policy = tdm_well_known, tdm_well_known_source, tdm_well_known_policy
    header_tdm = next((tdm_value(v) for v in headers.get("tdm-reservation", []) if tdm_value(v) is not None), None)
    problems += [f"tdm-reservation header {_clip(repr(v))}: not 0 or 1, counts as unset"
                 for v in headers.get("tdm-reservation", []) if tdm_value(v) is None]  # fmt: skip
    if header_tdm is not None:
        tdm, tdm_source, tdm_policy = header_tdm, "tdm-reservation header", _clip(next(iter(headers.get("tdm-policy", [])), "").strip(), 300)
    if meta_tdm is not None:
        tdm, tdm_source, tdm_policy = meta_tdm, '<meta name="tdm-reservation">', meta_tdm_policy
    return PageSignals(
        robots=tuple(robots),
        content_usage=usage, content_usage_source="; ".join(usage_sources), content_usage_denied_by=usage_denied,
        content_signal=signal, content_signal_source="; ".join(signal_sources), content_signal_denied_by=signal_denied,
        tdm_reservation=tdm, tdm_source=tdm_source if tdm is not None else "",
        tdm_policy=tdm_policy if tdm is not None else "", problems=tuple(problems[:_MAX_PROBLEMS]),
    )  # fmt: skip


def _combine(
    statements: list[tuple[str, str]], parse: Any, problems: list[str]
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Combine statements of preference: any n wins, then any y, else unknown (aipref vocab section 5.1).

    Returns the preferences, the sources that said anything, and per purpose
    the sources that said n.
    """
    combined: dict[str, Any] = {}
    sources: list[str] = []
    denied: dict[str, list[str]] = {}
    for value, source in statements:
        notes: list[str] = []
        parsed = parse(value, notes)
        problems += [f"{source} {_clip(repr(value))}: {note}" for note in notes]
        if any(answer is not None for answer in parsed.values()) and source not in sources:
            sources.append(source)
        for purpose, answer in parsed.items():
            combined[purpose] = "n" if "n" in (answer, combined.get(purpose)) else (answer or combined.get(purpose))
            if answer == "n" and source not in denied.setdefault(purpose, []):
                denied[purpose].append(source)
    return combined, sources, {purpose: "; ".join(names) for purpose, names in denied.items() if names}


def storage_decision(signals: PageSignals, purposes: frozenset[str]) -> Decision:
    """May the page be stored for ``purposes``? The most restrictive signal wins."""
    # Directives that forbid storing for every purpose come first: the most
    # restrictive signal is the one reported.
    ordered = sorted(signals.robots, key=lambda pair: "*" not in _ROBOTS_DIRECTIVES.get(pair[0], ()))
    for directive, source in ordered:
        restricted = _ROBOTS_DIRECTIVES.get(directive)
        if restricted and ("*" in restricted or purposes & set(restricted)):
            reason = "optout.noindex" if directive in ("noindex", "none") else f"optout.{directive}"
            return Decision.refuse(reason, rule=directive, source=source)
    for purpose in sorted(purposes):
        if signals.content_usage.get(purpose) == "n":
            return Decision.refuse(
                "optout.content-usage", rule=f"{purpose}=n", source=signals.content_usage_denied_by.get(purpose, "")
            )
        if signals.content_signal.get(purpose) == "n":
            return Decision.refuse(
                "optout.content-signal", rule=f"{purpose}=no", source=signals.content_signal_denied_by.get(purpose, "")
            )
    if signals.tdm_reservation == 1 and "train-ai" in purposes:
        policy = f" (tdm-policy {signals.tdm_policy})" if signals.tdm_policy else ""
        return Decision.refuse("optout.tdmrep", rule=f"tdm-reservation: 1{policy}", source=signals.tdm_source)
    return ALLOW


def parse_purposes(value: str | Iterable[str] | None) -> frozenset[str]:
    """``COMPLIANCE_PURPOSES``: a comma list or list of purposes; default every purpose."""
    if value is None or value == "" or value == []:
        return frozenset(PURPOSES)
    items = value.split(",") if isinstance(value, str) else list(value)
    purposes = frozenset(p.strip().lower() for p in items if p.strip())
    unknown = purposes - set(PURPOSES)
    if unknown or not purposes:
        raise ValueError(
            f"COMPLIANCE_PURPOSES: unknown purpose(s) {', '.join(sorted(unknown)) or '(none given)'}; "
            f"choose from {', '.join(PURPOSES)}"
        )
    return purposes


# -- TDMRep well-known file -------------------------------------------------------

TDMREP_PATH = "/.well-known/tdmrep.json"


@dataclass(frozen=True)
class TdmRule:
    location: str
    reservation: int | None  # None: the entry's value is not 0 or 1, so unset
    policy: str
    index: int


#: A tdmrep.json larger than this is refused unread (the file lists path patterns).
MAX_TDMREP_BYTES = 512 * 1024


def parse_tdmrep(body: bytes, problems: list[str] | None = None) -> tuple[TdmRule, ...]:
    """The rules of a ``/.well-known/tdmrep.json`` file, or ValueError saying what is wrong.

    A JSON array of ``{"location": pattern, "tdm-reservation": 0|1,
    "tdm-policy": URL?}``. An entry without a string location can match
    nothing and is skipped; an entry whose reservation is not 0 or 1 is kept
    with an unset value, so that the first matching entry still decides
    (and decides "unset"). Each such entry is named in ``problems``.
    """
    import json

    notes = problems if problems is not None else []
    if len(body) > MAX_TDMREP_BYTES:
        raise ValueError(f"larger than {MAX_TDMREP_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not JSON we can read (nested too deeply)") from None
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array, got {type(data).__name__}")
    rules = []
    for index, entry in enumerate(data):
        location = entry.get("location") if isinstance(entry, dict) else None
        if not isinstance(location, str) or not location:
            notes.append(f"entry {index}: no location, skipped")
            continue
        reservation = entry.get("tdm-reservation")
        if reservation not in (0, 1) or isinstance(reservation, bool):
            notes.append(f"entry {index} ({_clip(location)}): tdm-reservation {_clip(repr(reservation))} is not 0 or 1, so unset")
            reservation = None
        policy = entry.get("tdm-policy")
        rules.append(TdmRule(location if location.startswith("/") else "/" + location, reservation,
                             _clip(policy, 300) if isinstance(policy, str) else "", index))  # fmt: skip
    return tuple(rules)


def tdmrep_lookup(rules: tuple[TdmRule, ...], path: str) -> TdmRule | None:
    """The first rule whose location matches ``path`` (TDMRep: first match wins, not longest)."""
    from crawler.compliance.patterns import matches

    for rule in rules:
        if matches(rule.location, path):
            return rule
    return None
