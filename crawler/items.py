"""The item the generic spider stores: one per HTML page, and nothing visual.

There is deliberately no image, media or file field (see docs/images.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class PageItem:
    url: str
    host: str
    domain: str
    title: str
    text: str
    fetched_at: datetime
    crawl_id: str
    provenance: dict[str, object] = field(default_factory=dict)
