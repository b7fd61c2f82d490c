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
