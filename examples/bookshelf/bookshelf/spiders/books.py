import scrapy


class BooksSpider(scrapy.Spider):
    """Follows the catalogue's pages and yields one item per book: no url field."""

    name = "books"
    start_urls = ["http://books.test/"]

    def parse(self, response):
        for book in response.css("li.book"):
            yield {"title": book.css("span.title::text").get(), "price": book.css("span.price::text").get()}
        for href in response.css("a.next::attr(href)").getall():
            yield response.follow(href, self.parse)
