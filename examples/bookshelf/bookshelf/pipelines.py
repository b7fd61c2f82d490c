from urllib.parse import urlsplit

from bookshelf.db import connect


class ShelfPipeline:
    """Keeps every book in the project's own SQLite table, under the site it was collected from."""

    def __init__(self, path):
        self.db = connect(path)

    @classmethod
    def from_crawler(cls, crawler):
        pipeline = cls(crawler.settings.get("BOOKSHELF_DB"))
        pipeline.crawler = crawler
        return pipeline

    def process_item(self, item):
        site = urlsplit(self.crawler.spider.start_urls[0]).hostname
        self.db.execute("INSERT INTO books VALUES (?, ?, ?)", (site, item["title"], item["price"]))
        self.db.commit()
        return item

    def close_spider(self):
        self.db.close()
