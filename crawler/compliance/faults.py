"""Fault points: where crash-safety tests kill this process (``COMPLIANCE_FAULT=name``).

A fault point does nothing unless the environment variable names it; then it
sends this process SIGKILL, the crash nothing can catch or clean up after.

Points: purge ``started``, ``store-chunk``, ``cache-trashed``, ``cache-counted``,
``file-prepared``, ``file-counted``, ``file-replaced``, ``queue-counted``,
``queue-swapped``, ``dbm-counted``, ``dbm-swapping``, ``before-receipt``;
crawl ``items-stored`` (a batch committed, its leases not yet released).
"""

from __future__ import annotations

import os


def fault_point(name: str) -> None:
    """SIGKILL this process here when ``COMPLIANCE_FAULT`` is ``name``."""
    if os.environ.get("COMPLIANCE_FAULT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str, timeout: float = 60.0) -> None:
    """Wait here while a test holds this process (``COMPLIANCE_PAUSE=name:PATH``).

    The process writes ``PATH.reached`` and waits until ``PATH`` exists (at
    most ``timeout`` seconds): a test can then act while this process is at
    a known point (another process runs, say) and release it. Points:
    ``retention-locked`` (the retention lock is held, nothing purged yet).
    """
    setting = os.environ.get("COMPLIANCE_PAUSE", "")
    point, _, path = setting.partition(":")
    if point != name or not path:
        return
    import time
    from pathlib import Path

    Path(path + ".reached").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + timeout
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
