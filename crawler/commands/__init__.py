"""Project commands (``scrapy <name>``); each file is one command."""
