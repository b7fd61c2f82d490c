"""The project's own table of books, where its pipeline writes and its purge location deletes."""

import sqlite3
from pathlib import Path

from scrapy.utils.conf import closest_scrapy_cfg


def connect(path: str) -> sqlite3.Connection:
    target = Path(path)
    if not target.is_absolute():
        target = Path(closest_scrapy_cfg()).parent / target
    target.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(target)
    db.execute("CREATE TABLE IF NOT EXISTS books (site TEXT NOT NULL, title TEXT, price TEXT)")
    return db
