"""The live line of progress: its rendering from recorded numbers, and real crawls and commands in a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crawler.progress_display import CrawlSnapshot, RateMeter, crawl_line, refusals_by_gate, task_line, wanted
from crawler.testing.runner import policy_dir_with_pace, scrapy_command, site_crawl_command
from crawler.testing.sites import page, robots
from crawler.testing.web import StaticSite, TestWeb

from conftest import GUARD_ENV

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


# -- the lines, from recorded numbers ------------------------------------------------------


def test_a_recorded_crawl_renders_line_by_line() -> None:
    """A sequence of snapshots, as the crawl's timer takes them, gives these lines."""
    meter = RateMeter(window=5.0)
    events = [(0.5, 0, {}, {}, 0), (1.0, 10, {}, {"crawl-delay": 1}, 8), (2.0, 30, {"robots": 2}, {}, 28),
              (8.0, 90, {"robots": 2, "image": 5, "notice": 1, "content": 1, "network": 1}, {}, 80)]  # fmt: skip
    lines = [crawl_line(CrawlSnapshot(elapsed=at, pages=pages, rate=meter.add(at, pages), stored=stored, refused=refused, waiting=waiting))
             for at, pages, refused, waiting, stored in events]  # fmt: skip
    assert lines == [
        "0 pages · 0.0 pages/s · stored 0 · refused 0 · 0:00",
        "10 pages · 20.0 pages/s · stored 8 · refused 0 · waiting 1 host (crawl-delay 1) · 0:01",
        "30 pages · 20.0 pages/s · stored 28 · refused 2 (robots 2) · 0:02",
        # The window keeps the last 5 s: (90 - 30) pages over (8 - 2) s.
        "90 pages · 10.0 pages/s · stored 80 · refused 10 (image 5, robots 2, content 1, network 1, +1 more) · 0:08",
    ]
    done = crawl_line(CrawlSnapshot(elapsed=3725, pages=12_345, rate=3.3, stored=12_000, finished="finished"))
    assert done == "12,345 pages · 3.3 pages/s · stored 12,000 · refused 0 · 1:02:05 · done: finished"


def test_task_lines_count_against_a_total_when_there_is_one() -> None:
    """A command's line shows done/total and a percentage, or just the count without a total."""
    assert task_line("purge", 12_000, 40_000, 5.0) == "purge: 12,000/40,000 items (30%) · 2,400/s · 0:05"
    assert task_line("purge", 1, 3, 2.0, "locations", "done", detail="80 deleted", rate=False) == "purge: 1/3 locations (33%) · 80 deleted · 0:02 · done"
    assert task_line("items export", 7, None, 0.0, unit="items") == "items export: 7 items · 0/s · 0:00"
    assert task_line("policy audit", 3, 3, 2.0, unit="platforms", finished="done").endswith("(100%) · 2/s · 0:02 · done")


def test_refusals_are_summed_per_gate_from_the_stats() -> None:
    """compliance/refused/<reason> counters become one figure per gate; other stats are ignored."""
    stats = {"compliance/refused": 9, "compliance/refused/robots.disallow": 4, "compliance/refused/robots.unreachable": 1,
             "compliance/refused/notice.cd-1": 3, "compliance/refused/image.magic": 1, "downloader/response_count": 50}  # fmt: skip
    assert refusals_by_gate(stats) == {"robots": 5, "notice": 3, "image": 1}


def test_a_display_only_on_a_terminal_and_never_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe gets nothing; a terminal gets the display unless COMPLIANCE_PROGRESS is false or TERM is dumb."""
    monkeypatch.setenv("TERM", "xterm")
    read_end, write_end = os.pipe()
    leader, follower = pty.openpty()
    with os.fdopen(write_end, "w") as pipe, os.fdopen(follower, "w") as terminal:
        assert not wanted(None, pipe)
        assert wanted(None, terminal) and wanted("auto", terminal) and wanted("1", terminal)
        assert not wanted("0", terminal) and not wanted("false", terminal)
        monkeypatch.setenv("TERM", "dumb")
        assert not wanted(None, terminal)
    os.close(read_end)
    os.close(leader)


# -- real crawls and commands in a pseudo-terminal ----------------------------------------------


class Terminal:
    """A process whose stdout and stderr are a pseudo-terminal; everything it writes is kept."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        leader, follower = pty.openpty()
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=cwd,
                                        env={**env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "40"})  # fmt: skip
        os.close(follower)
        self.leader = leader
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.leader, 65536)
            except OSError:  # the process closed the terminal
                return
            if not data:
                return
            self.chunks.append(data)

    @property
    def raw(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.raw)
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} on the terminal; it showed:\n{self.raw[-3000:]}")

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout)
        self.reader.join(10)
        os.close(self.leader)
        return code


def held_site(pages: int, gate: threading.Event) -> StaticSite:
    """A home page linking ``pages`` pages, each answered only once ``gate`` is set."""
    content: dict[str, object] = {"/robots.txt": robots("User-agent: *\nAllow: /\n"),
                                  "/": page("home", [f"/p/{i}" for i in range(pages)])}  # fmt: skip
    for i in range(pages):
        content[f"/p/{i}"] = lambda request, body=page(f"p{i}", [], "text " * 20): (gate.wait(60), body)[1]
    return StaticSite(content)  # type: ignore[arg-type]


def shown(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw`` (a tall VT100 screen, so nothing scrolls away)."""
    import pyte

    screen = pyte.Screen(200, 3000)
    pyte.Stream(screen).feed(raw)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def page_counts(raw: str) -> list[int]:
    """Every page count the line showed, in order (from the raw redraws)."""
    return [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) pages · ", ANSI.sub("", raw))]


def check_screen(raw: str, reason: str) -> list[str]:
    """What the terminal shows: every log line whole, and the line's last state at the very end, with ``reason``."""
    lines = shown(raw)
    for line in lines:
        if "pages/s" in line:
            assert re.match(r"^[\d,]+ pages · ", line), f"the progress line was drawn into another line: {line!r}"
        if re.search(r"\[(scrapy|crawler)[\w.]*\] (INFO|WARNING|ERROR|DEBUG)", line):
            assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", line), f"a log line was cut by the display: {line!r}"
    progress = [n for n, line in enumerate(lines) if "pages/s" in line]
    assert len(progress) == 1, f"the terminal shows {len(progress)} progress lines, not one: {[lines[n] for n in progress]}"
    assert lines[progress[0]].endswith(f"done: {reason}"), lines[progress[0]]
    assert raw.rfind(SHOW_CURSOR) > raw.rfind(HIDE_CURSOR), "the cursor was left hidden"
    return lines


def crawl_on_terminal(tmp_path: Path, web: TestWeb, settings: dict[str, object] | None = None, extra_args: tuple[str, ...] = ()) -> Terminal:
    policies = policy_dir_with_pace(tmp_path / "policies")
    command, env = site_crawl_command(web, ["http://progress.test/"], f"sqlite:///{tmp_path / 'store.sqlite3'}",
                                      settings={"COMPLIANCE_POLICY_DIR": str(policies), **(settings or {})}, env=GUARD_ENV)  # fmt: skip
    from crawler.testing.runner import project_dir

    return Terminal([*command[:4], *extra_args, *command[4:]], env, cwd=project_dir())


def test_a_crawl_on_a_terminal_updates_its_line_and_ends_it_cleanly(tmp_path: Path) -> None:
    """The line appears while pages are held, counts up once they are answered, and ends with the finish reason."""
    gate = threading.Event()
    with TestWeb({"progress.test": held_site(20, gate)}) as web:
        term = crawl_on_terminal(tmp_path, web)
        try:
            term.wait_for(r"pages/s")  # drawn while every page is still held
            gate.set()
            code = term.finish()
        finally:
            gate.set()
    assert code == 0, term.raw[-3000:]
    counts = page_counts(term.raw)
    assert len(set(counts)) >= 2 and counts == sorted(counts), f"the line did not count up: {counts}"
    lines = check_screen(term.raw, "finished")
    final = next(line for line in lines if "pages/s" in line)
    # 23 responses (robots.txt, tdmrep.json, the home page, 20 pages); 21 items.
    assert final.startswith("23 pages · ") and " · stored 21 · " in final, final
    assert any("Spider closed (finished)" in line for line in lines)


def test_ctrl_c_ends_the_line_with_the_shutdown(tmp_path: Path) -> None:
    """SIGINT mid-crawl: Scrapy shuts down, the line says so and the terminal is left clean."""
    gate = threading.Event()
    with TestWeb({"progress.test": held_site(20, gate)}) as web:
        term = crawl_on_terminal(tmp_path, web)
        try:
            term.wait_for(r"pages/s")
            term.process.send_signal(signal.SIGINT)
            term.wait_for(r"shutting down gracefully|Received SIGINT")
            gate.set()  # let the requests in flight end, as a graceful shutdown waits for them
            term.finish()
        finally:
            gate.set()
    check_screen(term.raw, "shutdown")


def test_a_failing_crawl_ends_the_line_with_its_reason(tmp_path: Path) -> None:
    """A notice file broken mid-crawl stops the crawl (fail closed); the line ends with that reason."""
    gate = threading.Event()
    with TestWeb({"progress.test": held_site(20, gate)}) as web:
        term = crawl_on_terminal(tmp_path, web, {"COMPLIANCE_NOTICE_POLL_INTERVAL": 0.1})
        try:
            term.wait_for(r"pages/s")
            notices = tmp_path / "policies" / "notices"
            notices.mkdir(exist_ok=True)
            (notices / "broken.yaml").write_text("id: [unclosed\n", encoding="utf-8")
            term.wait_for(r"notice_file_invalid|notice file")
            gate.set()
            code = term.finish()
        finally:
            gate.set()
    assert code != 0
    lines = check_screen(term.raw, "notice_file_invalid")
    assert any("broken.yaml" in line for line in lines)


def test_no_display_without_a_terminal_or_when_turned_off(tmp_path: Path) -> None:
    """Output to a pipe carries no progress line; COMPLIANCE_PROGRESS=0 turns it off on a terminal too."""
    gate = threading.Event()
    gate.set()
    with TestWeb({"progress.test": held_site(3, gate)}) as web:
        command, env = site_crawl_command(web, ["http://progress.test/"], f"sqlite:///{tmp_path / 'a.sqlite3'}",
                                          settings={"COMPLIANCE_POLICY_DIR": str(policy_dir_with_pace(tmp_path / "p"))}, env=GUARD_ENV)  # fmt: skip
        piped = subprocess.run(command, env={**env, "TERM": "xterm"}, capture_output=True, text=True, timeout=120, check=False)
        term = crawl_on_terminal(tmp_path, web, {"COMPLIANCE_PROGRESS": 0})
        code = term.finish()
        flagged = crawl_on_terminal(tmp_path, web, extra_args=("--no-progress",))
        flagged_code = flagged.finish()
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "Spider closed (finished)" in piped.stderr and "pages/s" not in piped.stderr + piped.stdout
    assert code == 0 and "Spider closed (finished)" in term.raw and "pages/s" not in term.raw
    assert flagged_code == 0 and "Spider closed (finished)" in flagged.raw and "pages/s" not in flagged.raw


def test_a_bad_progress_setting_is_one_line(tmp_path: Path) -> None:
    """COMPLIANCE_PROGRESS=sometimes: the crawl refuses to start, with one line naming the setting."""
    done = scrapy_command(["crawl", "site", "-a", "url=http://progress.test/"],
                          settings={"COMPLIANCE_PROGRESS": "sometimes", "COMPLIANCE_CONTACT": "ops@example.org",
                                    "COMPLIANCE_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}"})  # fmt: skip
    assert done.returncode == 2
    assert "COMPLIANCE_PROGRESS: expected auto, 1 or 0, got 'sometimes'" in done.stderr
    assert "Traceback" not in done.stderr


# -- commands on a terminal -------------------------------------------------------------------


def fill_store(url: str, count: int, host: str = "held.test") -> None:
    from crawler.compliance.store import Store, item_row

    rows = [item_row({"url": f"http://{host}/{n}", "host": host, "domain": host, "crawl_id": "c1", "title": str(n)}) for n in range(count)]
    Store(url).write(rows, [])


def command_on_terminal(args: list[str], store_url: str, tmp_path: Path) -> Terminal:
    from crawler.testing.runner import project_dir

    policies = policy_dir_with_pace(tmp_path / "policies")
    command = [sys.executable, "-m", "scrapy", *args, "-s", f"COMPLIANCE_STORE={store_url}", "-s", f"COMPLIANCE_POLICY_DIR={policies}"]
    return Terminal(command, dict(os.environ), cwd=project_dir())


def command_screen(raw: str, description: str, outcome: str) -> str:
    """The one progress line a command leaves on the terminal, ending with ``outcome``."""
    lines = shown(raw)
    progress = [line for line in lines if line.startswith(f"{description}: ")]
    assert len(progress) == 1, f"expected one {description} line, the terminal shows: {lines}"
    assert progress[0].endswith(f" · {outcome}"), progress[0]
    assert raw.rfind(SHOW_CURSOR) > raw.rfind(HIDE_CURSOR), "the cursor was left hidden"
    assert "Traceback" not in raw
    return progress[0]


def test_an_export_and_a_purge_on_a_terminal_end_with_their_totals(tmp_path: Path) -> None:
    """items export counts against the stored total; purge counts its locations and what it deleted; the output stays whole."""
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    fill_store(store_url, 40)
    export = command_on_terminal(["items", "export", "-o", str(tmp_path / "out.jsonl")], store_url, tmp_path)
    assert export.finish() == 0, export.raw[-2000:]
    line = command_screen(export.raw, "items export", "done")
    assert line.startswith("items export: 40/40 items (100%) · ")
    assert "wrote 40 items to" in "\n".join(shown(export.raw))
    purge = command_on_terminal(["purge", "--domain", "held.test", "--reason", "objection"], store_url, tmp_path)
    assert purge.finish() == 0, purge.raw[-2000:]
    line = command_screen(purge.raw, "purge", "done")
    # Two locations: the store and the export just written (a copy of stored data); 40 items each.
    assert re.match(r"purge: 2/2 locations \(100%\) · 80 deleted \([\d,]+/s\) · feed:.*out\.jsonl · \d+:\d\d · done$", line), line
    screen = "\n".join(shown(purge.raw))
    assert '"total_deleted": 80' in screen  # the receipt, printed whole once the line is done


def test_a_failing_command_ends_its_line_with_the_failure(tmp_path: Path) -> None:
    """An export to a path it cannot write: the line ends 'failed', the error is one line, exit 1."""
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    fill_store(store_url, 5)
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    export = command_on_terminal(["items", "export", "-o", str(tmp_path / "a-file" / "out.jsonl")], store_url, tmp_path)
    assert export.finish() == 1
    command_screen(export.raw, "items export", "failed: FileExistsError")
    assert any(line.startswith("error: cannot write") for line in shown(export.raw))


def test_ctrl_c_stops_a_command_with_its_line_ended(tmp_path: Path) -> None:
    """SIGINT while an export waits on a locked PostgreSQL table: 'interrupted', exit 130, no traceback."""
    import sqlalchemy as sa

    from conftest import postgres_schema_url

    schema_urls = postgres_schema_url()
    store_url = next(schema_urls)
    try:
        fill_store(store_url, 5)
        engine = sa.create_engine(store_url)
        with engine.connect() as locker:
            locker.exec_driver_sql("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # held until this block ends
            export = command_on_terminal(["items", "export", "-o", str(tmp_path / "out.jsonl")], store_url, tmp_path)
            export.wait_for(r"items export: ")  # drawn, then blocked on the table
            export.process.send_signal(signal.SIGINT)
            code = export.finish()
            locker.rollback()
        engine.dispose()
    finally:
        schema_urls.close()
    assert code == 130, export.raw[-2000:]
    command_screen(export.raw, "items export", "interrupted")
    assert "interrupted" in shown(export.raw)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_paused_host_shows_as_waiting_with_its_cause(tmp_path: Path) -> None:
    """A host answering 503 Retry-After: 5 shows on the line as waiting for retry-after while its pause lasts."""
    from crawler.testing.web import WebResponse

    answers: list[int] = []

    def home(request: object) -> WebResponse:
        answers.append(1)
        if len(answers) == 1:
            return WebResponse(status=503, headers=[("Retry-After", "5"), ("Content-Type", "text/html")], body=b"busy")
        return WebResponse(headers=[("Content-Type", "text/html; charset=utf-8")], body=page("home", []).encode())

    site = StaticSite({"/robots.txt": robots("User-agent: *\nAllow: /\n"), "/": home})  # type: ignore[dict-item]
    with TestWeb({"progress.test": site}) as web:
        term = crawl_on_terminal(tmp_path, web, {"RETRY_ENABLED": True, "RETRY_TIMES": 1})
        term.wait_for(r"waiting 1 host \(retry-after 1\)")
        code = term.finish()
    assert code == 0, term.raw[-3000:]
    check_screen(term.raw, "finished")
    assert len(answers) == 2


def test_retention_apply_and_erase_show_their_purge_on_a_terminal(tmp_path: Path) -> None:
    """retention apply and erase purge through the same path as purge: their lines count locations and deletions."""
    from datetime import UTC, datetime, timedelta

    from crawler.compliance.store import Store, item_row

    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    old = datetime.now(UTC) - timedelta(days=400)
    rows = [item_row({"title": str(n), "text": f"page {n}" + (" write to jane.doe@owner.test" if n < 3 else "")},
                     {"url": f"http://held.test/{n}", "host": "held.test", "domain": "held.test", "crawl_id": "c1",
                      "fetched_at": old if n >= 10 else datetime.now(UTC)}) for n in range(30)]  # fmt: skip
    Store(store_url).write(rows, [])
    retention = command_on_terminal(["retention", "apply"], store_url, tmp_path)
    assert retention.finish() == 0, retention.raw[-2000:]
    line = command_screen(retention.raw, "retention apply", "done")
    assert re.match(r"retention apply: (\d+)/\1 locations \(100%\) · 20 deleted ", line), line  # the 20 past the shipped P180D
    erase = command_on_terminal(["erase", "--email", "Jane.Doe@owner.test", "--reason", "request 7"], store_url, tmp_path)
    assert erase.finish() == 0, erase.raw[-2000:]
    line = command_screen(erase.raw, "erase", "done")
    assert re.match(r"erase: (\d+)/\1 locations \(100%\) · 3 deleted ", line), line
