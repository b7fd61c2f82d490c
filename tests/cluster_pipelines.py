"""A project pipeline for the cluster tests, loaded by the crawl subprocess (``tests.cluster_pipelines``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from crawler.itemfields import item_fields


class HoldItemPipeline:
    """Holds the item of the page ``COMPLIANCE_TEST_HOLD_URL`` for good, as a slow pipeline would.

    When it takes that item it writes ``COMPLIANCE_TEST_HOLD_MARK``, so the
    test knows the item is in a pipeline (and so not stored) while the rest
    of the crawl goes on. Without the variable it passes every item on.
    """

    def __init__(self) -> None:
        self.url = os.environ.get("COMPLIANCE_TEST_HOLD_URL", "")
        self.mark = Path(os.environ.get("COMPLIANCE_TEST_HOLD_MARK", "held.mark"))

    async def process_item(self, item: Any) -> Any:
        if self.url and item_fields(item).get("url") == self.url:
            self.mark.write_text(self.url)
            await asyncio.Event().wait()  # never set: the worker is killed holding it
        return item
