"""An ethical crawler-compliance framework for Scrapy."""

__version__ = "0.1.0"
