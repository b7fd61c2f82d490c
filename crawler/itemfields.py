"""An item's fields as a plain dict, for any item type (through ItemAdapter)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from itemadapter import ItemAdapter

#: Values that are never items (answered without asking ItemAdapter).
PLAIN = (str, bytes, int, float, bool, type(None), datetime, date)


def _plain(value: Any) -> Any:
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if ItemAdapter.is_item(value):
        return {k: _plain(v) for k, v in ItemAdapter(value).items()}
    return value


def item_fields(item: Any) -> dict[str, Any]:
    """Like ``ItemAdapter(item).asdict()``, several times faster on typical items.

    ``asdict()`` asks every adapter class whether each value, down to every
    string, is itself an item: about 0.25 ms per page item, more than all the
    compliance gates together. Strings, numbers and dates are answered here
    without asking; only other objects go through ItemAdapter.
    """
    return {key: _plain(value) for key, value in ItemAdapter(item).items()}
