"""A third-party Scrapy project that adopts the compliance stack."""
