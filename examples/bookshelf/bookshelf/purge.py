"""Purge reaches the project's own table: registered with COMPLIANCE_PURGE_LOCATIONS in settings.py."""

from bookshelf.db import connect
from crawler.compliance.purge import PurgeLocation


class ShelfTable(PurgeLocation):
    name = "bookshelf-db"

    def __init__(self, path):
        self.path = path

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.get("BOOKSHELF_DB"))

    @staticmethod
    def _in_scope(db, scope):
        # The table knows only the site of each book, so a URL pattern inside
        # a site selects the whole site: more is deleted, never less.
        return [(rowid,) for rowid, site in db.execute("SELECT rowid, site FROM books") if scope.matches(f"http://{site}/")
                or any(f"//{site}/" in pattern for pattern in scope.url_patterns)]

    def count(self, scope):
        db = connect(self.path)
        try:
            return len(self._in_scope(db, scope))
        finally:
            db.close()

    def delete(self, scope):
        db = connect(self.path)
        try:
            doomed = self._in_scope(db, scope)
            db.executemany("DELETE FROM books WHERE rowid = ?", doomed)
            db.commit()  # durable before it is counted in the receipt
            return len(doomed)
        finally:
            db.close()
