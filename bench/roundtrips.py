"""A Scrapy extension for ``bench/cluster_speed.py``: this process's Redis and PostgreSQL round trips.

Machine-independent figures: what a crawl asks of Redis and PostgreSQL per
page does not depend on how fast this machine is.

- Redis: every send on a connection is one round trip (one command, or one
  pipeline of many); the commands are counted by name, a script call
  (``EVALSHA``) by the name of the constant in ``crawler.cluster`` or
  ``crawler.clusterqueue`` holding its Lua source.
- PostgreSQL: every statement SQLAlchemy sends, every BEGIN, COMMIT and
  ROLLBACK, and every pool ping (``pool_pre_ping``) is one round trip.

The counts cover the whole process (start-up included) and are written as
JSON to ``ROUNDTRIPS_FILE`` when the process exits. Enable with
``-s EXTENSIONS={"roundtrips.RoundTrips": 0}`` and ``bench/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import time
from collections import Counter
from typing import Any

_redis: Counter[str] = Counter()
_postgres: Counter[str] = Counter()
_installed = False


def _script_names() -> dict[str, str]:
    import crawler.cluster
    import crawler.clusterqueue

    names = {}
    for module in (crawler.cluster, crawler.clusterqueue):
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value:
                names[hashlib.sha1(value.encode()).hexdigest()] = name.strip("_").lower()
    return names


def _name(args: tuple[Any, ...], scripts: dict[str, str]) -> str:
    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    name = name.upper()
    if name in ("EVALSHA", "EVAL") and len(args) > 1:
        sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return f"{name} {scripts.get(sha, sha[:8])}"
    return name


def install() -> None:
    """Count from now on (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    import redis.connection
    import sqlalchemy as sa
    from sqlalchemy.pool import Pool

    scripts = _script_names()
    connection = redis.connection.Connection
    send_packed, send_command, pack_commands = connection.send_packed_command, connection.send_command, connection.pack_commands

    def counted_send_packed(self: Any, command: Any, check_health: bool = True) -> Any:
        _redis["round trips"] += 1
        return send_packed(self, command, check_health)

    def counted_send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        _redis[_name(args, scripts)] += 1
        return send_command(self, *args, **kwargs)

    def counted_pack_commands(self: Any, commands: Any) -> Any:
        commands = list(commands)
        for args in commands:
            _redis[_name(args, scripts)] += 1
        return pack_commands(self, commands)

    connection.send_packed_command = counted_send_packed  # type: ignore[method-assign]
    connection.send_command = counted_send_command  # type: ignore[method-assign]
    connection.pack_commands = counted_pack_commands  # type: ignore[method-assign]

    def statement(conn: Any, cursor: Any, text: str, params: Any, context: Any, executemany: bool) -> None:
        if conn.dialect.name == "postgresql":
            _postgres["round trips"] += 1
            _postgres[text.split(None, 1)[0].upper()] += 1

    def event(name: str) -> Any:
        def count(conn: Any, *args: Any) -> None:
            # In autocommit (the registry poll's connection) psycopg sends no BEGIN, COMMIT or ROLLBACK.
            if conn.dialect.name == "postgresql" and not getattr(conn.connection.dbapi_connection, "autocommit", False):
                _postgres["round trips"] += 1
                _postgres[name] += 1

        return count

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if type(dbapi_connection).__module__.startswith("psycopg"):
            _postgres["round trips"] += 1  # pool_pre_ping
            _postgres["PING"] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", statement)
    for name in ("begin", "commit", "rollback"):
        sa.event.listen(sa.engine.Engine, name, event(name.upper()))
    sa.event.listen(Pool, "checkout", checkout)


def counts() -> dict[str, dict[str, int]]:
    return {"redis": dict(_redis), "postgres": dict(_postgres)}


class RoundTrips:
    """Also the process's CPU time from spider open to close (``crawl_cpu_s``), the span pages/s is measured over."""

    def __init__(self) -> None:
        self.cpu = [0.0, 0.0]

    @classmethod
    def from_crawler(cls, crawler: Any) -> RoundTrips:
        from scrapy import signals

        install()
        extension = cls()
        crawler.signals.connect(extension.opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.closed, signal=signals.spider_closed)
        path = crawler.settings.get("ROUNDTRIPS_FILE")
        stats = crawler.stats

        def write() -> None:
            figures = {**counts(), "pages": stats.get_value("response_received_count", 0),
                       "crawl_cpu_s": extension.cpu[1] - extension.cpu[0]}  # fmt: skip
            with open(path, "w") as out:
                json.dump(figures, out)

        if path:
            atexit.register(write)
        return extension

    def opened(self, spider: Any) -> None:
        self.cpu[0] = time.process_time()

    def closed(self, spider: Any) -> None:
        self.cpu[1] = time.process_time()
