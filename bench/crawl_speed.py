"""Crawl speed of the compliance stack against stock Scrapy, on one local site.

    .venv/bin/python bench/crawl_speed.py [--pages 5000] [--pairs 2] [--json FILE]

(``make bench`` runs it with the defaults; see bench/README.md.)

What it does:

1. Serves ``bench.test``, ``--pages`` HTML pages each linking to the next ten
   (``crawler.testing.sites.linked_site``; 5,000 pages is the project's
   ``bench_sites()``), from the test web (``python -m crawler.testing.web``)
   in a separate process on 127.0.0.1. The crawls reach it as their HTTP
   proxy, so no name is resolved and nothing leaves 127.0.0.1 (the crawls
   also load crawler/testing/netguard/sitecustomize.py when it exists, which refuses
   any other address).
2. Crawls the whole site from ``http://bench.test/page/0``, alternately:

   * ``stock``: ``scrapy runspider bench/stock_spider.py``, run outside the
     project (no scrapy.cfg, so none of the project's settings, add-on or
     components), with ``ROBOTSTXT_OBEY=True`` and a JSON-lines feed; the
     spider does the site spider's per-page work with its own helpers;
   * ``compliance``: ``scrapy crawl site`` from the project directory, with
     the whole compliance stack and a fresh SQLite store;

   both with the same concurrency and logging settings (``COMMON_SETTINGS``).
3. Reads each crawl's own stats dump and reports
   ``response_received_count / elapsed_time_seconds`` (spider open to
   spider close, so interpreter start-up is not counted), the median of
   each kind and the ratio compliance/stock against the target of 0.90.

Each crawl must fetch exactly ``--pages`` pages plus robots.txt, all 200,
scrape one item per page (checked in the feed / the store) and finish
without errors; otherwise the benchmark stops and exits 1. The ratio never
changes the exit status: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crawler.testing.runner import policy_dir_with_pace

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
STOCK_SPIDER = BENCH_DIR / "stock_spider.py"
NETGUARD_DIR = PROJECT_DIR / "crawler" / "testing" / "netguard"

HOST = "bench.test"
START_URL = f"http://{HOST}/page/0"
CONTACT = "mailto:bench@example.invalid"
TARGET_RATIO = 0.90
#: How the server process learns the number of pages (load_sites takes no arguments).
PAGES_ENV = "CRAWL_SPEED_PAGES"

#: Given to both crawls with -s, so they differ only in the compliance stack.
COMMON_SETTINGS: dict[str, Any] = {
    "CONCURRENT_REQUESTS": 16,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
    "DOWNLOAD_DELAY": 0,
    "DOWNLOAD_TIMEOUT": 30,
    "AUTOTHROTTLE_ENABLED": False,
    "HTTPCACHE_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    # Scrapy 2.19's localhost debugging endpoint, the telnet console's sibling.
    "REMOTE_CONTROL_ENABLED": False,
    "LOG_LEVEL": "INFO",
    "STATS_DUMP": True,
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    "FEED_EXPORT_ENCODING": "utf-8",
}
STOCK_SETTINGS: dict[str, Any] = {"ROBOTSTXT_OBEY": True}
#: Each round runs one crawl of each kind, in this order:
#:
#: * ``plain`` and ``addon``: the same spider (bench/stock_spider.py) in the same
#:   project, without and with ``ADDONS = {"crawler.addon.Compliance": 0}``, both
#:   writing a JSON-lines feed (the add-on also its store): what a user pays for
#:   the add-on. Their ratio is the figure the 0.90 target is about.
#: * ``stock`` and ``site``: the stock spider outside any project, and the project's
#:   own ``site`` spider with the whole stack: the spider's own parsing shows here.
KINDS = ("plain", "addon", "stock", "site")
#: (numerator, denominator) of each reported ratio; the first is held to the target.
RATIOS = (("addon", "plain"), ("site", "stock"))
#: Kinds that run the compliance stack.
COMPLIANCE_KINDS = ("addon", "site")


def sites() -> dict[str, Any]:
    """The benchmark site, for ``python -m crawler.testing.web --sites crawl_speed:sites``."""
    from crawler.testing.sites import linked_site

    return {HOST: linked_site(int(os.environ.get(PAGES_ENV, "5000")))}


# --------------------------------------------------------------------------
# The test web in its own process
# --------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The benchmark could not measure (a crawl failed, the server died...)."""


class Server:
    """``python -m crawler.testing.web`` serving :func:`sites` on 127.0.0.1."""

    def __init__(self, pages: int, workdir: Path) -> None:
        self.pages = pages
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self._stderr = workdir / "server.stderr"

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env[PAGES_ENV] = str(self.pages)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH", "")]))
        with open(self._stderr, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crawler.testing.web", "--port", "0", "--sites", "crawl_speed:sites"],
                cwd=PROJECT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY "):
                    self.port = int(line.split()[1])
                    return
                if not line:  # EOF: the server exited
                    break
            elif self.proc.poll() is not None:
                break
        raise BenchError(f"the test web did not start within {timeout:g}s: {self.tail()}")

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"the test web process has exited: {self.tail()}")

    def cpu_seconds(self) -> float | None:
        """User+system CPU time the server has used so far (Linux only)."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def tail(self) -> str:
        try:
            text = self._stderr.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text[-2000:] or "(no output)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# --------------------------------------------------------------------------
# One crawl
# --------------------------------------------------------------------------


@dataclass
class Run:
    index: int
    pair: int
    kind: str
    responses: int = 0
    elapsed_s: float = 0.0
    pages_per_s: float = 0.0
    items: int = 0
    wall_s: float = 0.0
    crawler_cpu_s: float = 0.0
    #: CPU seconds from spider open to close, per page (ms) (bench/crawl_profile.py CrawlCpu).
    cpu_ms_per_page: float = 0.0
    server_cpu_s: float | None = None
    log: str = ""
    #: The project's components the crawl enabled (none for stock).
    components: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


_STATS_ENTRY = re.compile(r"'([^'\n]+)':\s*('(?:[^'\\\n]|\\.)*'|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
_ENABLED_LIST = re.compile(r"INFO: Enabled (addons|extensions|downloader middlewares|spider middlewares|item pipelines):\n(\[.*?\])", re.S)
_COMPONENT = re.compile(r"'([\w.]+)'|<([\w.]+) object")


def parse_stats(log: str) -> dict[str, Any]:
    """The numbers and strings of the last "Dumping Scrapy stats" block of a log."""
    marker = log.rfind("Dumping Scrapy stats:")
    if marker == -1:
        return {}
    block = log[marker:]
    end = block.find("\n}")
    block = block[: end + 2] if end != -1 else block
    return {key: ast.literal_eval(value) for key, value in _STATS_ENTRY.findall(block)}


def enabled_components(log: str) -> set[str]:
    """Every component named in the "Enabled ...:" lists of a log."""
    names: set[str] = set()
    for _, listing in _ENABLED_LIST.findall(log):
        # Classes are listed as 'pkg.mod.Class'; add-ons as <pkg.mod.Class object at 0x...>.
        names.update(quoted or instance for quoted, instance in _COMPONENT.findall(listing))
    return names


def crawl_env(proxy: str) -> dict[str, str]:
    """The environment of a crawl: everything through the test web, no project hints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPY_")}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = proxy
    env["no_proxy"] = env["NO_PROXY"] = ""
    # bench/ for the profiling extension of --gate-shares (crawl_profile.py).
    paths = [str(NETGUARD_DIR)] if (NETGUARD_DIR / "sitecustomize.py").is_file() else []
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, str(BENCH_DIR), env.get("PYTHONPATH", "")]))
    return env


#: ``--freeze-plain``: the plain runs freeze the start-up objects as the add-on does (COMPLIANCE_GC_FREEZE).
FREEZE_PLAIN = False

#: ``--compliance-setting NAME=VALUE``: extra settings of the compliance runs only
#: (e.g. ``COMPLIANCE_SIGNING=False`` to measure what request signing costs).
COMPLIANCE_EXTRA: dict[str, str] = {}


def crawl_command(kind: str, rundir: Path, settings: dict[str, Any], profile: Path | None) -> tuple[list[str], Path]:
    """The command line and working directory of one crawl (see :data:`KINDS`)."""
    command = [sys.executable, "-m", "scrapy"]
    if kind == "site":
        command += ["crawl", "site"]
    else:
        command += ["runspider", str(STOCK_SPIDER), "-O", str(rundir / "items.jsonl")]
    if kind == "stock":
        merged = {**settings, **STOCK_SETTINGS}
        # Outside the project: Scrapy must not find scrapy.cfg (and so the add-on).
        cwd = rundir
    elif kind == "plain":
        # The project's settings (ROBOTSTXT_OBEY = True: Scrapy's own robots.txt middleware), add-on off.
        merged = {**settings, "ADDONS": "{}"}
        if FREEZE_PLAIN:  # the add-on's gc.freeze() at spider open, without the add-on (bench/crawl_profile.py)
            extensions = json.loads(merged.get("EXTENSIONS", "{}"))
            merged["EXTENSIONS"] = json.dumps({**extensions, "crawl_profile.FreezeStartup": 0})
        cwd = PROJECT_DIR
    else:
        # The default policy's polite pace would throttle the crawl; give it
        # the same concurrency and no delay, as stock gets.
        policies = policy_dir_with_pace(
            rundir / "policies", min_delay=0, max_concurrency=int(settings.get("CONCURRENT_REQUESTS_PER_DOMAIN", 16))
        )
        merged = {
            **settings,
            "COMPLIANCE_CONTACT": CONTACT,
            "COMPLIANCE_STORE": f"sqlite:///{rundir / 'bench.sqlite3'}",
            "COMPLIANCE_POLICY_DIR": str(policies),
            # The signing key of the project (var/signing-key.json) would do
            # as well; a key per run keeps the benchmark from writing there.
            "COMPLIANCE_SIGNING_KEY": str(rundir / "signing-key.json"),
            **COMPLIANCE_EXTRA,
        }
        cwd = PROJECT_DIR
    command += ["-a", f"url={START_URL}"]
    # Every kind measures its CPU time from spider open to close (bench/crawl_profile.py).
    extensions = json.loads(merged.get("EXTENSIONS", "{}"))
    merged["EXTENSIONS"] = json.dumps({**extensions, "crawl_profile.CrawlCpu": 0})
    for name, value in merged.items():
        command += ["-s", f"{name}={value}"]
    if profile is not None:
        command += ["--profile", str(profile)]
    return command, cwd


def run_crawl(
    run: Run, server: Server, workdir: Path, settings: dict[str, Any], pages: int, timeout: float, profile_dir: Path | None
) -> Run:
    rundir = workdir / f"{run.index:02d}-{run.kind}"
    rundir.mkdir()
    profile = profile_dir / f"{run.index:02d}-{run.kind}.prof" if profile_dir else None
    command, cwd = crawl_command(run.kind, rundir, settings, profile)
    log_path = rundir / "crawl.log"
    server.check_alive()
    server_cpu = server.cpu_seconds()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(log_path, "w") as log_fp:
        try:
            done = subprocess.run(
                command,
                cwd=cwd,
                env=crawl_env(f"http://127.0.0.1:{server.port}"),
                stdin=subprocess.DEVNULL,
                stdout=log_fp,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"run {run.index} ({run.kind}) did not finish within {timeout:g}s; log: {log_path}") from None
    run.wall_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.crawler_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if server_cpu is not None:
        now = server.cpu_seconds()
        run.server_cpu_s = None if now is None else now - server_cpu
    run.log = str(log_path)
    log = log_path.read_text(errors="replace")
    if done.returncode != 0:
        raise BenchError(f"run {run.index} ({run.kind}) exited {done.returncode}; log: {log_path}\n{log[-3000:]}")
    run.stats = stats = parse_stats(log)
    if not stats:
        raise BenchError(f"run {run.index} ({run.kind}): no stats dump in the log {log_path}\n{log[-3000:]}")
    check_run(run, log, rundir, pages)
    run.responses = int(stats["response_received_count"])
    run.elapsed_s = float(stats["elapsed_time_seconds"])
    run.items = int(stats["item_scraped_count"])
    run.pages_per_s = run.responses / run.elapsed_s
    run.cpu_ms_per_page = float(stats.get("bench/crawl_cpu_s", 0.0)) / run.responses * 1000
    server.check_alive()
    return run


def check_run(run: Run, log: str, rundir: Path, pages: int) -> None:
    """Raise BenchError unless the crawl fetched and scraped every page, cleanly."""
    stats = run.stats
    problems: list[str] = []
    expected = {
        "finish_reason": "finished",
        # Every page plus robots.txt, all 200.
        "response_received_count": pages + 1,
        "downloader/response_status_count/200": pages + 1,
        "item_scraped_count": pages,
    }
    if run.kind not in COMPLIANCE_KINDS:
        expected["robotstxt/request_count"] = 1
    else:
        expected["compliance/robots/request_count"] = 1
        expected["compliance/store/items_written"] = pages
        # The TDMRep well-known file, once (the bench site has none: 404).
        expected["compliance/tdmrep/request_count"] = 1
        expected["response_received_count"] = pages + 2
    for key, want in expected.items():
        if stats.get(key) != want:
            problems.append(f"{key} is {stats.get(key)!r}, expected {want!r}")
    for key in ("log_count/ERROR", "log_count/CRITICAL", "compliance/refused"):
        if stats.get(key):
            problems.append(f"{key} is {stats[key]}, expected none")
    if not stats.get("elapsed_time_seconds"):
        problems.append("no elapsed_time_seconds in the stats")

    components = enabled_components(log)
    ours = sorted(name for name in components if name.startswith("crawler."))
    run.components = ours
    if run.kind != "site":
        urls, empty = _feed_urls(rundir / "items.jsonl")
        if len(urls) != pages or len(set(urls)) != pages or empty:
            problems.append(f"the feed has {len(urls)} items, {len(set(urls))} distinct URLs, {empty} without text; expected {pages}")
    if run.kind not in COMPLIANCE_KINDS:
        if ours:
            problems.append(f"the {run.kind} crawl ran project components {ours} (is there a scrapy.cfg above {rundir}?)")
        if "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware" not in components:
            problems.append(f"the {run.kind} crawl did not enable Scrapy's RobotsTxtMiddleware")
    else:
        for needed in ("crawler.middlewares.robots.RobotsTxtMiddleware", "crawler.pipelines.store.StorePipeline"):
            if needed not in components:
                problems.append(f"the compliance crawl did not enable {needed}")
        crawl_id = stats.get("compliance/crawl_id")
        count, distinct, empty = _store_counts(rundir / "bench.sqlite3", str(crawl_id))
        if count != pages or distinct != pages or empty:
            problems.append(f"the store holds {count} items, {distinct} distinct URLs, {empty} without text for crawl {crawl_id}; expected {pages}")
    if problems:
        raise BenchError(f"run {run.index} ({run.kind}) did not crawl the site as expected (log: {run.log}):\n  - " + "\n  - ".join(problems))


def _feed_urls(path: Path) -> tuple[list[str], int]:
    urls: list[str] = []
    empty = 0
    try:
        with open(path, encoding="utf-8") as fp:
            for line in fp:
                if line.strip():
                    item = json.loads(line)
                    urls.append(item.get("url", ""))
                    empty += not item.get("text")
    except (OSError, ValueError):
        pass
    return urls, empty


def _store_counts(path: Path, crawl_id: str) -> tuple[int, int, int]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            count, distinct, empty = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT url), SUM(text = '') FROM items WHERE crawl_id = ?", (crawl_id,)
            ).fetchone()
        return int(count), int(distinct), int(empty or 0)
    except sqlite3.Error:
        return -1, -1, -1


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def print_run(run: Run) -> None:
    server = "-" if run.server_cpu_s is None else f"{run.server_cpu_s:.1f}"
    print(
        f"{run.index:>3}  {run.pair:>4}  {run.kind:<10}  {run.responses:>9}  {run.elapsed_s:>9.2f}  "
        f"{run.pages_per_s:>7.1f}  {run.crawler_cpu_s:>10.1f}  {run.cpu_ms_per_page:>10.2f}  {server:>10}",
        flush=True,
    )


def summarise(runs: list[Run]) -> dict[str, Any]:
    medians = {kind: statistics.median(r.pages_per_s for r in runs if r.kind == kind) for kind in KINDS}
    ratios: dict[str, Any] = {}
    for top, bottom in RATIOS:
        per_pair = []
        for pair in sorted({r.pair for r in runs}):
            by_kind = {r.kind: r.pages_per_s for r in runs if r.pair == pair}
            if top in by_kind and bottom in by_kind:
                per_pair.append(by_kind[top] / by_kind[bottom])
        cpu = {kind: statistics.median(r.cpu_ms_per_page for r in runs if r.kind == kind) for kind in (top, bottom)}
        ratios[f"{top}/{bottom}"] = {"ratio": medians[top] / medians[bottom], "pair_ratios": per_pair,
                                     # pages per CPU second, top against bottom: the same ratio, measured in CPU time
                                     "cpu_ratio": cpu[bottom] / cpu[top] if cpu[top] else 0.0,
                                     "cpu_ms_per_page": cpu}  # fmt: skip
    first = ratios[f"{RATIOS[0][0]}/{RATIOS[0][1]}"]["ratio"]
    return {"median_pages_per_s": medians, "ratios": ratios, "ratio": first, "meets_target": first >= TARGET_RATIO}


def verdict_line(summary: dict[str, Any]) -> str:
    ratio = summary["ratio"]
    word = "MEETS TARGET" if summary["meets_target"] else "BELOW TARGET"
    return (f"verdict: {word} - the same spider crawls at {ratio:.0%} of its speed without the add-on "
            f"(target >= {TARGET_RATIO:.0%})")  # fmt: skip


def gate_shares(profile: Path, pages: int) -> dict[str, Any]:
    """Each part of the stack's time per page, from a cProfile of one ``addon`` crawl.

    A part is a module of the package (``middlewares/robots``, ``pipelines/store``,
    ``extensions/notices``...). Its time is its functions' own time plus the time of
    what they call outside the package (SQLAlchemy under the store, Protego under
    robots.txt, the standard library), except Scrapy and Twisted: a gate that wraps
    Scrapy's download or calls back into the engine would otherwise be charged for
    the whole download. The spider (bench/stock_spider.py) is not part of the stack.
    The profile covers spider open to spider close (bench/crawl_profile.py), the
    span pages/s is measured over: start-up is not in it. cProfile slows
    call-heavy code more than C code: read the shares, not the microseconds.
    """
    import pstats
    from collections import defaultdict

    package = str(PROJECT_DIR / "crawler") + os.sep
    outside_parts = tuple(package + name for name in ("testing", "spiders", "commands", "cli.py", "settings.py"))
    machinery = (f"{os.sep}scrapy{os.sep}", f"{os.sep}twisted{os.sep}")

    def part(filename: str) -> str | None:
        if not filename.startswith(package) or filename.startswith(outside_parts):
            return None
        return filename[len(package):].removesuffix(".py")

    raw = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())  # every function's own time: the whole profiled crawl
    parts: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, callers) in raw.items():
        name = part(filename)
        if name is not None:
            parts[name] += own
        elif filename.startswith(package) or any(m in filename for m in machinery):
            continue
        else:  # a library function: charged to the parts that called it
            for caller, timing in callers.items():
                calling = part(caller[0])
                if calling is not None:
                    parts[calling] += timing[3]
    stack = sum(parts.values())
    return {
        "pages": pages, "profiled_s": round(total, 3), "stack_s": round(stack, 3),
        "stack_share": round(stack / total, 4) if total else 0.0,
        "parts": [{"part": name, "us_per_page": round(seconds / pages * 1e6, 1), "share_of_crawl": round(seconds / total, 4)}
                  for name, seconds in sorted(parts.items(), key=lambda pair: -pair[1]) if seconds / total >= 0.001],
    }  # fmt: skip


def by_library(profiled: dict[str, tuple[Path, int]]) -> list[dict[str, Any]]:
    """Own time per page by library, plain against addon: what the add-on makes Scrapy, Twisted and asyncio do.

    The parts above count the stack's own code; each middleware, pipeline and
    signal handler also costs a layer of Scrapy's (a coroutine or a Deferred per
    call), which shows here as Scrapy's, Twisted's and asyncio's own time growing.
    """
    import pstats
    from collections import defaultdict

    def library(filename: str) -> str:
        if filename.startswith(str(PROJECT_DIR / "crawler")):
            return "crawler (the stack)"
        if filename == "~":
            return "built-in functions"
        marker = "site-packages" + os.sep
        if marker in filename:
            return filename.split(marker, 1)[1].split(os.sep, 1)[0]
        return "standard library" if "python3" in filename else "other"

    per_page: dict[str, dict[str, float]] = {}
    for kind, (profile, pages) in profiled.items():
        totals: dict[str, float] = defaultdict(float)
        for (filename, _, _), entry in pstats.Stats(str(profile)).stats.items():  # type: ignore[attr-defined]
            totals[library(filename)] += entry[2] / pages * 1e6
        per_page[kind] = totals
    names = sorted(set(per_page["plain"]) | set(per_page["addon"]), key=lambda n: per_page["plain"].get(n, 0) - per_page["addon"].get(n, 0))
    rows = [{"library": n, "plain_us_per_page": round(per_page["plain"].get(n, 0), 1), "addon_us_per_page": round(per_page["addon"].get(n, 0), 1)}
            for n in names]  # fmt: skip
    rows.append({"library": "total", "plain_us_per_page": round(sum(per_page["plain"].values()), 1),
                 "addon_us_per_page": round(sum(per_page["addon"].values()), 1)})  # fmt: skip
    return rows


def extra_work(profiled: dict[str, tuple[Path, int]], top: int = 25) -> dict[str, Any]:
    """What the add-on adds to a crawl, function by function, priced at the plain crawl's speed.

    Two profiled crawls ran at different moments of a shared machine: the same
    work costs more in the slower one. The functions called exactly as often
    in both (Scrapy's own work on the same pages) give the load factor between
    the two profiles; every other function's time in the addon crawl, divided
    by it, less its time in the plain crawl, is work the add-on added (its own
    code, and the extra calls it causes in Scrapy, asyncio and the signal
    dispatcher). ``ratio``: plain's time over plain's plus the extra, the
    pages/s ratio this work predicts on a quiet machine.
    """
    import pstats
    from collections import defaultdict

    def totals(path: Path) -> dict[str, list[float]]:
        found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (filename, _, name), entry in pstats.Stats(str(path)).stats.items():  # type: ignore[attr-defined]
            where = filename.split("site-packages" + os.sep)[-1].split(os.sep + "lib" + os.sep)[-1]
            found[f"{where}:{name}"][0] += entry[2]
            found[f"{where}:{name}"][1] += entry[1]
        return found

    (plain_path, pages), (addon_path, _) = profiled["plain"], profiled["addon"]
    plain, addon = totals(plain_path), totals(addon_path)
    same = [k for k in plain if k in addon and plain[k][1] and abs(addon[k][1] - plain[k][1]) <= 0.02 * plain[k][1]]
    scale = sum(addon[k][0] for k in same) / (sum(plain[k][0] for k in same) or 1.0)
    extra = {k: (addon.get(k, [0.0, 0.0])[0] / scale - plain.get(k, [0.0, 0.0])[0]) / pages * 1e6
             for k in set(plain) | set(addon) if k not in same}  # fmt: skip
    plain_us = sum(v[0] for v in plain.values()) / pages * 1e6
    added = sum(extra.values())
    rows = sorted(extra.items(), key=lambda kv: -kv[1])[:top]
    return {"load_factor": round(scale, 3), "plain_us_per_page": round(plain_us, 1), "extra_us_per_page": round(added, 1),
            "ratio": round(plain_us / (plain_us + added), 3),
            "top": [{"function": k, "extra_us_per_page": round(v, 1), "calls_per_page_plain": round(plain.get(k, [0, 0])[1] / pages, 1),
                     "calls_per_page_addon": round(addon.get(k, [0, 0])[1] / pages, 1)} for k, v in rows]}  # fmt: skip


def print_gate_shares(shares: dict[str, Any]) -> None:
    print(f"\nthe stack's share of one profiled addon crawl (spider open to close): {shares['stack_share']:.1%} of "
          f"{shares['profiled_s']:.1f} s ({shares['pages']} responses); by part (library callees included), under cProfile:")  # fmt: skip
    print(f"  {'part':<32} {'us/page':>9} {'share':>7}")
    for row in shares["parts"]:
        print(f"  {row['part']:<32} {row['us_per_page']:>9.1f} {row['share_of_crawl']:>7.1%}")
    for kind, figures in shares["collector"].items():
        print(f"garbage collector in the profiled {kind} crawl: {sum(figures['gc_seconds']):.2f} s "
              f"(full passes: {figures['gc_runs'][2]}, {figures['gc_seconds'][2]:.2f} s); {figures['objects_at_open']:,} objects "
              f"at spider open, {figures['frozen']:,} frozen")  # fmt: skip
    extra = shares["extra_work"]
    print(f"\nwork the add-on adds, priced at the plain crawl's speed (load factor between the two profiles "
          f"{extra['load_factor']:.2f}): {extra['extra_us_per_page']:.0f} us/page on {extra['plain_us_per_page']:.0f}, "
          f"which predicts a ratio of {extra['ratio']:.3f}; the largest:")  # fmt: skip
    for row in extra["top"]:
        print(f"  {row['function'][:72]:<72} {row['extra_us_per_page']:>+8.1f} us  calls/page {row['calls_per_page_plain']:>6.1f} -> {row['calls_per_page_addon']:.1f}")
    print("\nown time per page by library, the same spider without and with the add-on (profiled; largest growth first):")
    print(f"  {'library':<32} {'plain us':>9} {'addon us':>9} {'growth':>8}")
    for row in shares["by_library"][:12] + shares["by_library"][-1:]:
        growth = row["addon_us_per_page"] - row["plain_us_per_page"]
        print(f"  {row['library']:<32} {row['plain_us_per_page']:>9.1f} {row['addon_us_per_page']:>9.1f} {growth:>+8.1f}")


def write_json(path: Path, args: argparse.Namespace, settings: dict[str, Any], runs: list[Run], summary: dict[str, Any] | None, error: str | None) -> None:
    try:
        from importlib.metadata import version

        scrapy_version = version("scrapy")
    except Exception:  # noqa: BLE001 - informative only
        scrapy_version = "unknown"
    payload = {
        "benchmark": "crawl_speed",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "scrapy": scrapy_version,
        },
        "site": {"host": HOST, "start_url": START_URL, "pages": args.pages, "links_per_page": 10},
        "pairs": args.pairs,
        "settings": {"common": settings, "stock": STOCK_SETTINGS},
        "metric": "response_received_count / elapsed_time_seconds (from each crawl's stats)",
        "target_ratio": TARGET_RATIO,
        "runs": [{k: v for k, v in asdict(r).items() if k not in ("stats", "log")} for r in runs],
        "summary": summary,
        "error": error,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/crawl_speed.py",
        description="Pages/second of one spider with the compliance add-on against the same spider without it "
        "(and of `scrapy crawl site` against a stock spider), on a local linked site, in alternating rounds.",
    )
    parser.add_argument("--pages", type=positive_int, default=5000, help="pages in the site, all crawled (default 5000)")
    parser.add_argument("--pairs", type=positive_int, default=5, help="rounds of one crawl of each kind (default 5)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--concurrency", type=positive_int, default=16, help="CONCURRENT_REQUESTS and ..._PER_DOMAIN for both (default 16)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one crawl may take before it counts as failed (default 600)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile every crawl with cProfile into DIR/NN-KIND.prof (slows them: figures not comparable)")
    parser.add_argument("--compliance-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra -s setting for the compliance runs only (repeatable), e.g. COMPLIANCE_SIGNING=False")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, feeds, stores)")
    parser.add_argument("--freeze-plain", action="store_true",
                        help="the plain runs also gc.freeze() at spider open, as the add-on does: the ratio without the collector's share")
    parser.add_argument("--gate-shares", action="store_true",
                        help="after the pairs, one profiled addon crawl: each gate's share of the cost per page")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the server.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for pair in args.compliance_setting:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser_error = f"--compliance-setting: expected NAME=VALUE, got {pair!r}"
            print(f"error: {parser_error}", file=sys.stderr)
            return 2
        COMPLIANCE_EXTRA[name] = value
    global FREEZE_PLAIN
    FREEZE_PLAIN = args.freeze_plain
    settings = {**COMMON_SETTINGS, "CONCURRENT_REQUESTS": args.concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency}
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="crawl-speed-"))
    server = Server(args.pages, workdir)
    runs: list[Run] = []
    summary: dict[str, Any] | None = None
    error: str | None = None
    keep = args.keep
    try:
        server.start()
        print(
            f"crawl_speed: {args.pages} linked pages on {HOST}, test web at 127.0.0.1:{server.port} (pid {server.proc.pid if server.proc else '?'}); "
            f"{args.pairs} round(s) of {'/'.join(KINDS)}; CONCURRENT_REQUESTS={args.concurrency}, "
            f"CONCURRENT_REQUESTS_PER_DOMAIN={args.concurrency}, DOWNLOAD_DELAY=0; {os.cpu_count()} CPU(s)",
            flush=True,
        )
        if args.profile:
            print(f"note: profiling into {args.profile}; pages/s under cProfile are not comparable to normal runs", flush=True)
        print(f"{'run':>3}  {'pair':>4}  {'kind':<10}  {'responses':>9}  {'elapsed s':>9}  {'pages/s':>7}  {'crawl CPU s':>10}  {'CPU ms/page':>10}  {'web CPU s':>10}", flush=True)
        index = 0
        for pair in range(1, args.pairs + 1):
            for kind in KINDS:
                index += 1
                run = run_crawl(Run(index, pair, kind), server, workdir, settings, args.pages, args.timeout, args.profile)
                runs.append(run)
                print_run(run)
        summary = summarise(runs)
        medians = summary["median_pages_per_s"]
        print("median pages/s: " + ", ".join(f"{kind} {medians[kind]:.1f}" for kind in KINDS))
        for name, figures in summary["ratios"].items():
            print(f"ratio {name}: {figures['ratio']:.3f} (per pair: " + ", ".join(f"{r:.3f}" for r in figures["pair_ratios"]) + ")")
            cpu = figures["cpu_ms_per_page"]
            print(f"  in CPU time (spider open to close, medians): {figures['cpu_ratio']:.3f} "
                  f"(" + ", ".join(f"{kind} {ms:.2f} ms/page" for kind, ms in cpu.items()) + ")")  # fmt: skip
        print(verdict_line(summary))
        if args.gate_shares:
            shares_dir = workdir / "gate-shares"
            shares_dir.mkdir()
            profiled: dict[str, tuple[Path, int]] = {}
            for kind in ("plain", "addon"):
                index += 1
                profile = shares_dir / f"{kind}.prof"
                extra = {"EXTENSIONS": json.dumps({"crawl_profile.CrawlProfile": 0}), "CRAWL_PROFILE_FILE": str(profile)}
                run = run_crawl(Run(index, 0, kind), server, workdir, {**settings, **extra}, args.pages, args.timeout, None)
                profiled[kind] = (profile, run.responses)
            summary["gate_shares"] = gate_shares(*profiled["addon"])
            summary["gate_shares"]["by_library"] = by_library(profiled)
            summary["gate_shares"]["extra_work"] = extra_work(profiled)
            summary["gate_shares"]["collector"] = {kind: json.loads(Path(str(path) + ".gc.json").read_text()) for kind, (path, _) in profiled.items()}
            print_gate_shares(summary["gate_shares"])
        print("(pages/s = response_received_count / elapsed_time_seconds; 'crawl CPU s' includes interpreter start-up)")
        return 0
    except BenchError as exc:
        error = str(exc)
        keep = True
        print(f"crawl_speed: FAILED: {exc}", file=sys.stderr)
        print(f"crawl_speed: logs kept in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        error = "interrupted"
        print("crawl_speed: interrupted", file=sys.stderr)
        return 130
    finally:
        server.stop()
        if args.json:
            write_json(args.json, args, settings, runs, summary, error)
            print(f"figures written to {args.json}")
        if keep:
            if error is None:
                print(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
