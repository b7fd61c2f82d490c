"""A live line of progress for long work, shown on a terminal only.

A crawl of an hour, a purge of a million items, an export or an audit used
to print nothing until they ended. With this module they keep one line up to
date at the bottom of the terminal (stderr), above which Scrapy's log lines
scroll as usual:

    1,204 pages · 38.2 pages/s · stored 1,180 · refused 24 (robots 20, image 4) · waiting 2 hosts (crawl-delay 2) · 0:31

The line is built from plain numbers by the pure functions below
(:func:`crawl_line`, :func:`task_line`), so it is tested without a terminal.
The display itself is `rich` (its ``Live``: one redrawn region, a refresh
thread of its own, and a proxy that prints writes to stderr above the region
so log lines are never cut by the redraw). ``tqdm`` draws one bar per loop
and would need its own ``write()`` for every log line; a crawl's status is a
line of several counters, not a bar, so rich fits better. rich is imported
only when a display is actually shown.

Nothing is shown when stderr is not a terminal (logs, pipes and CI stay
clean), with ``COMPLIANCE_PROGRESS = 0`` or ``--no-progress``, or when
``TERM=dumb``. The crawl's numbers are read from Scrapy's stats twice a
second by a timer, never per request, so the display costs the crawl
nothing it does per page.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: Seconds between two readings of the crawl's counters.
SAMPLE_INTERVAL = 0.5
#: The pages/s figure is taken over this many seconds (a moving window).
RATE_WINDOW = 5.0


def wanted(setting: Any = None, stream: TextIO | None = None) -> bool:
    """Whether to show a live display: ``setting`` (COMPLIANCE_PROGRESS) allows it and ``stream`` is a terminal.

    ``setting`` is ``None``/``"auto"`` (the default: on a terminal), a false
    value (``0``, ``false``, ``off``, ``no``: never) or a true value (on a
    terminal; a display is never drawn into a file or a pipe).
    """
    if setting is not None and str(setting).strip().lower() in ("0", "false", "off", "no"):
        return False
    stream = stream if stream is not None else sys.stderr
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def progress_setting(value: str | None) -> str:
    """Validate COMPLIANCE_PROGRESS (``auto``, or a boolean); a one-line error otherwise."""
    text = "auto" if value is None else str(value).strip().lower()
    if text in ("auto", "", "0", "1", "true", "false", "on", "off", "yes", "no"):
        return text or "auto"
    raise ValueError(f"COMPLIANCE_PROGRESS: expected auto, 1 or 0, got {value!r}")


# -- the lines (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class CrawlSnapshot:
    """What a crawl has done so far, as the line shows it."""

    elapsed: float
    pages: int = 0
    rate: float = 0.0
    stored: int = 0
    refused: Mapping[str, int] = field(default_factory=dict)
    waiting: Mapping[str, int] = field(default_factory=dict)
    finished: str | None = None  # the finish reason, on the last line


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _breakdown(counts: Mapping[str, int], limit: int = 4) -> str:
    """``robots 20, image 4`` (largest first; the rest as ``+N more``)."""
    ranked = sorted(((n, name) for name, n in counts.items() if n), key=lambda pair: (-pair[0], pair[1]))
    shown = ", ".join(f"{name} {n:,}" for n, name in ranked[:limit])
    if len(ranked) > limit:
        shown += f", +{len(ranked) - limit} more"
    return shown


def crawl_line(snapshot: CrawlSnapshot) -> str:
    """The crawl's one line of progress."""
    parts = [f"{snapshot.pages:,} pages", f"{snapshot.rate:.1f} pages/s", f"stored {snapshot.stored:,}"]
    refused = sum(snapshot.refused.values())
    parts.append(f"refused {refused:,} ({_breakdown(snapshot.refused)})" if refused else "refused 0")
    hosts = sum(snapshot.waiting.values())
    if hosts:
        parts.append(f"waiting {hosts:,} host{'s' if hosts != 1 else ''} ({_breakdown(snapshot.waiting)})")
    parts.append(_duration(snapshot.elapsed))
    if snapshot.finished:
        parts.append(f"done: {snapshot.finished}")
    return " · ".join(parts)


def task_line(description: str, done: int, total: int | None, elapsed: float, unit: str = "items",
              finished: str | None = None, *, detail: str = "", rate: bool = True) -> str:  # fmt: skip
    """A command's one line of progress: ``purge: 12,000/40,000 items (30%) · 2,400/s · 0:05``.

    ``detail`` comes before the time; ``rate=False`` leaves out the per-second figure of ``unit``.
    """
    if total is not None and total > 0:
        parts = [f"{description}: {done:,}/{total:,} {unit} ({min(done * 100 // total, 100)}%)"]
    else:
        parts = [f"{description}: {done:,} {unit}"]
    if rate:
        parts.append(f"{done / elapsed if elapsed > 0 else 0.0:,.0f}/s")
    if detail:
        parts.append(detail)
    parts.append(_duration(elapsed))
    if finished:
        parts.append(finished)
    return " · ".join(parts)


def gate_of(reason: str) -> str:
    """The gate a refusal reason belongs to: ``robots.disallow`` -> ``robots``."""
    return reason.split(".", 1)[0] or reason


def refusals_by_gate(stats: Mapping[str, Any]) -> dict[str, int]:
    """``compliance/refused/<reason>`` counters summed per gate."""
    prefix = "compliance/refused/"
    by_gate: dict[str, int] = {}
    for key, value in stats.items():
        if key.startswith(prefix) and isinstance(value, int):
            gate = gate_of(key[len(prefix) :])
            by_gate[gate] = by_gate.get(gate, 0) + value
    return by_gate


class RateMeter:
    """Pages per second over the last :data:`RATE_WINDOW` seconds, from (time, count) samples."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.samples: list[tuple[float, int]] = []

    def add(self, at: float, count: int) -> float:
        self.samples.append((at, count))
        while len(self.samples) > 2 and at - self.samples[1][0] >= self.window:
            self.samples.pop(0)
        first_at, first_count = self.samples[0]
        return (count - first_count) / (at - first_at) if at > first_at else 0.0


# -- the display (rich, on a terminal) -----------------------------------------------


class LiveLine:
    """One line redrawn at the bottom of stderr; log lines and stderr writes print above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self.console = Console(stderr=True, highlight=False, soft_wrap=False)
        # stdout is redirected too only when it is the same terminal: a crawl
        # writing its feed to a pipe (-o - | jq) must get its bytes unchanged.
        both_terminal = wanted(None, sys.stdout)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False,
                         redirect_stdout=both_terminal, redirect_stderr=True)  # fmt: skip
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def start(self, line: str) -> None:
        original = sys.stderr
        self.live.start()
        self.live.update(self._text(line, no_wrap=True, overflow="ellipsis"))
        # Logging handlers (Scrapy's among them) hold the stderr they were
        # created with; point them at the proxy so each record is printed
        # above the line instead of into it.
        for handler in logging.root.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is original and sys.stderr is not original:
                self._handlers.append((handler, handler.setStream(sys.stderr)))

    def update(self, line: str) -> None:
        self.live.update(self._text(line, no_wrap=True, overflow="ellipsis"))

    def stop(self, line: str | None = None) -> None:
        """Draw the last line and leave it on the screen; restore stderr and the log handlers."""
        if line is not None:
            self.update(line)
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()
        self.live.stop()


class TaskProgress:
    """Progress of a command's long loop (export, audit): ``advance(n)`` as work is done.

    Shown through :func:`task_progress`; without a display it only counts.
    """

    def __init__(self, description: str, total: int | None = None, unit: str = "items") -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self.live: LiveLine | None = None
        self._drawn = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.redraw()

    def redraw(self) -> None:
        if self.live is not None:
            now = time.monotonic()
            if now - self._drawn >= 0.1:  # the refresh thread draws 4 times a second; keep updates cheap
                self._drawn = now
                self.live.update(self.line())

    #: Whether the line shows ``unit`` per second (a purge shows records deleted per second instead).
    rated = True

    def detail(self, elapsed: float) -> str:
        return ""

    def line(self, finished: str | None = None) -> str:
        done = self.total if finished == "done" and self.total is not None else self.done
        elapsed = time.monotonic() - self.started
        return task_line(self.description, done, self.total, elapsed, self.unit, finished, detail=self.detail(elapsed), rate=self.rated)


class PurgeLine(TaskProgress):
    """A purge's line: locations done of those planned, records deleted so far, the location now.

    It is the :class:`crawler.compliance.purge.PurgeProgress` that ``run_purge`` reports to.
    """

    def __init__(self, description: str = "purge") -> None:
        super().__init__(description, None, "locations")
        self.removed = 0
        self.current = ""

    def planned(self, locations: int) -> None:
        self.total = locations
        self.redraw()

    def location(self, name: str) -> None:
        if self.current:
            self.done += 1
        self.current = name
        self.redraw()

    def deleted(self, count: int) -> None:
        self.removed += count
        self.redraw()

    rated = False

    def detail(self, elapsed: float) -> str:
        deleted = f"{self.removed:,} deleted ({self.removed / elapsed if elapsed > 0 else 0.0:,.0f}/s)"
        return f"{deleted} · {self.current}" if self.current else deleted


P = TypeVar("P", bound=TaskProgress)


@contextmanager
def task_progress(progress: P, setting: Any = None) -> Iterator[P]:
    """``with task_progress(TaskProgress("items export", total)) as p: ... p.advance()``; drawn only on a terminal.

    ``setting`` is COMPLIANCE_PROGRESS (``"0"`` for ``--no-progress``). The
    last line stays on the screen, ending ``done``, ``interrupted`` (Ctrl-C)
    or ``failed: <error type>``; the error itself propagates unchanged.
    """
    if not wanted(setting):
        yield progress
        return
    progress.live = LiveLine()
    progress.live.start(progress.line())
    outcome = "done"
    try:
        yield progress
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except BaseException as exc:
        outcome = f"failed: {type(exc).__name__}"
        raise
    finally:
        progress.live.stop(progress.line(outcome))
        progress.live = None


def tracked(items: Iterable[T], progress: TaskProgress) -> Iterator[T]:
    """``items``, advancing ``progress`` by one as each is done (when the next is asked for)."""
    for item in items:
        yield item
        progress.advance()
